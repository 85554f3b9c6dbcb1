//! Real data: an ext4 image made with `mke2fs -d`, loop-mounted and being
//! written to, backed up through the testbed with `fsfreeze` hooks; the
//! restored image passes `e2fsck -fn`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lifeline_testbeds::{Flavour, SPARE_GROUP};

use lifeline_testkit::sh;

use crate::harness::*;

/// A loop mount, unmounted on drop (before the image's dir goes).
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // A frozen filesystem cannot be unmounted: thaw first (harmless if not frozen).
        let _ = sh("fsfreeze", &["-u", self.0.to_str().unwrap()]);
        if let Err(e) = sh("umount", &[self.0.to_str().unwrap()]) {
            eprintln!("warning: {e}");
            let _ = sh("umount", &["-l", self.0.to_str().unwrap()]);
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_live_ext4_image_backed_up_with_fsfreeze_restores_to_a_clean_filesystem() {
    if !lifeline_testbeds::is_root() {
        eprintln!("SKIP real-data case: needs root for a loop mount and fsfreeze");
        return;
    }
    for tool in ["mke2fs", "e2fsck", "fsfreeze", "mount"] {
        if !lifeline_testbeds::which(tool) {
            eprintln!("SKIP real-data case: `{tool}` is missing (e2fsprogs, util-linux)");
            return;
        }
    }
    let bed = Bed::up(Flavour::Local, |_| {});
    let work = bed.dir.path();
    // A source tree of text and binary files for mke2fs -d.
    let src = work.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    for i in 0..200u64 {
        let body: String = (0..(i % 37 + 1) * 40)
            .map(|j| format!("line {j} of file {i}\n"))
            .collect();
        std::fs::write(src.join(format!("docs/f{i}.txt")), body).unwrap();
    }
    let img = work.join("fs.img");
    if let Err(e) = sh("mke2fs", &["-q", "-F", "-t", "ext4", "-d", s(&src), s(&img), "48M"]) {
        eprintln!("SKIP real-data case: {e}");
        return;
    }
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if let Err(e) = sh("mount", &["-o", "loop", s(&img), s(&mnt)]) {
        eprintln!("SKIP real-data case: cannot loop-mount: {e}");
        return;
    }
    let mount = Mount(mnt.clone());
    // A writer that keeps modifying the filesystem during the backups.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, mnt) = (stop.clone(), written.clone(), mnt.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let p = mnt.join(format!("live-{}.dat", i % 50));
                // Writes block while the filesystem is frozen, which is the point.
                if let Ok(mut f) = std::fs::File::create(&p) {
                    let _ = f.write_all(&vec![(i % 251) as u8; 64 << 10]);
                    if i.is_multiple_of(10) {
                        let _ = f.sync_all();
                    }
                    written.fetch_add(1, Ordering::SeqCst);
                }
                if i.is_multiple_of(7) {
                    let _ = std::fs::remove_file(mnt.join(format!("live-{}.dat", (i + 25) % 50)));
                }
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let st = &bed.tb.state;
    let key = st.paths.key_file.display().to_string();
    let state = work.join("fs-state");
    let volume = format!("fs={}", s(&img));
    let freeze = format!("fsfreeze -f {}", s(&mnt));
    let thaw = format!("fsfreeze -u {}", s(&mnt));
    // `lifeline COMMAND` on `site` of the spare group through the receiver as
    // the agent, then `rest`.
    let spare = |site: &str, command: &str, rest: &[&str]| {
        let remote = bed.remote("app");
        let mut args = vec![command];
        args.extend(remote.iter().map(String::as_str));
        args.extend(["--key-file", &key, "--group", SPARE_GROUP]);
        args.extend_from_slice(rest);
        bed.lifeline(site, &args)
    };
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let r = spare(
            "primary",
            "backup",
            &[
                "--volume",
                &volume,
                "--state-dir",
                s(&state),
                "--freeze",
                &freeze,
                "--thaw",
                &thaw,
                "--json",
            ],
        )
        .ok();
        seqs.push(r.json()["seq"].as_u64().expect("seq"));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(mount);
    assert!(written.load(Ordering::SeqCst) > 0, "the writer wrote nothing");
    assert_eq!(seqs, vec![1, 2, 3]);
    for seq in [1, 3] {
        let out = work.join(format!("restored-{seq}.img"));
        spare(
            "secondary",
            "restore",
            &["--volume", "fs", "--point", &seq.to_string(), "--to", s(&out)],
        )
        .ok();
        let fsck = sh("e2fsck", &["-fn", s(&out)]);
        assert!(
            fsck.is_ok(),
            "point {seq}: e2fsck -fn failed on the restored image: {fsck:?}"
        );
        eprintln!("real data: point {seq} restored; e2fsck -fn clean");
    }
}
