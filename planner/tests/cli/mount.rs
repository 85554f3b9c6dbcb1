//! `lifeline mount` with the real kernel: a FUSE mount of a point, a loop
//! mount of an ext4 image inside it, a file copied out; every point of a group
//! as directories; a damaged chunk read as EIO. Root only, with /dev/fuse
//! (each test skips with a message otherwise).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::*;
use super::serve::{have, repo_snapshot, tool, tool_ok};

const WAIT: Duration = Duration::from_secs(30);

/// True when FUSE and loop mounts can run here; otherwise says why not.
fn fuse_here() -> bool {
    if !is_root() {
        eprintln!("skipped: FUSE and loop mounts need root");
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: there is no /dev/fuse (modprobe fuse, or give the container /dev/fuse)");
        return false;
    }
    have(&["mkfs.ext4", "mount", "umount", "losetup"])
}

/// True when `dir` is a mount point (from /proc/self/mountinfo).
fn is_mount_point(dir: &Path) -> bool {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == dir)
}

/// Lazily unmounts what a failed test left mounted (loop mounts first, then
/// the FUSE mount), so the sandbox can be removed. Declare it after the
/// sandbox and the `lifeline mount` process: it drops before both.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for d in &self.0 {
            if is_mount_point(d) {
                let _ = std::process::Command::new("umount").args(["-l", s(d)]).status();
            }
        }
    }
}

/// `lifeline mount --repo … --key-file … --group G EXTRA DIR`, once it says
/// `mounted at DIR` (its first stdout line).
#[track_caller]
fn start_mount(sb: &Sandbox, group: &str, extra: &[&str], dir: &Path) -> Background {
    let mut args = sb.args("mount", group, extra);
    args.push(s(dir));
    let mut bg = Background::spawn(&args);
    let want = format!("mounted at {}", s(dir));
    if bg.wait_for_line(WAIT, |l| l == want).is_none() {
        panic!("mount never said `{want}`: {}", bg.describe());
    }
    assert!(
        bg.stdout().starts_with(&want),
        "`mounted at` is the first stdout line: {}",
        bg.describe()
    );
    assert!(is_mount_point(dir), "{} is not a mount point", dir.display());
    bg
}

/// SIGINT, then exit 0 with `dir` unmounted.
#[track_caller]
fn interrupt(bg: Background, dir: &Path) -> Run {
    bg.signal("INT");
    let r = bg.finish(WAIT);
    assert_eq!(r.code, Some(0), "exit code after SIGINT: {}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("unmounted {}", s(dir))), "{}", r.stdout);
    assert!(!is_mount_point(dir), "{} is still a mount point", dir.display());
    r
}

/// A 64 MiB ext4 image holding `files`.
fn ext4_image(sb: &Sandbox, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let src = sb.path(&format!("{name}.src"));
    fs::create_dir(&src).unwrap();
    for (f, data) in files {
        fs::write(src.join(f), data).unwrap();
    }
    let img = sb.path(name);
    File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    tool_ok(&["mkfs.ext4", "-q", "-F", "-d", s(&src), s(&img)]);
    img
}

#[test]
fn a_file_is_copied_out_of_a_point_through_mount_and_a_loop_mount() {
    if !fuse_here() {
        return;
    }
    let sb = Sandbox::new();
    let content = random_bytes(700_001, 1);
    let img = ext4_image(&sb, "fs.img", &[("report.bin", &content)]);
    sb.backup_json("g", &[("db", &img)]);
    let before = repo_snapshot(&sb.repo);

    // A mount directory that is not empty, or not a directory: refused, nothing mounted.
    let full = sb.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep.txt"), "x").unwrap();
    let base = ["mount", "--repo", s(&sb.repo), "--key-file", s(&sb.key), "--group", "g"];
    let with = |dir: &Path| {
        let mut a = base.to_vec();
        a.push(s(dir));
        run(&a)
    };
    with(&full).fails(EXIT_ERROR, &["is not empty", "keep.txt", "empty directory"]);
    with(&img).fails(EXIT_ERROR, &["is not a directory"]);
    with(&sb.path("nosuch")).fails(EXIT_ERROR, &["does not exist", "mkdir"]);
    assert!(!is_mount_point(&full));

    let dir = sb.path("points");
    let mnt = sb.path("mnt");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    let mut bg = start_mount(&sb, "g", &[], &dir);
    let _cleanup = Unmount(vec![mnt.clone(), dir.clone()]);
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["db.img"]);
    let file = dir.join("db.img");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 64 * MIB, "the image has the volume's size");
    assert!(meta.permissions().readonly());
    assert!(
        fs::OpenOptions::new().write(true).open(&file).is_err(),
        "the image opened for writing"
    );

    // The recipe: loop mount read-only, copy the file out, unmount.
    tool_ok(&["mount", "-o", "loop,ro", s(&file), s(&mnt)]);
    let copied = sb.path("report.copy");
    fs::copy(mnt.join("report.bin"), &copied).unwrap();
    // Stopping while the loop mount holds the image: refused, still serving.
    bg.signal("INT");
    assert!(
        poll_until(WAIT, || bg.stderr().contains("is busy")),
        "no busy message: {}",
        bg.describe()
    );
    assert!(bg.try_status().is_none(), "mount ended while busy: {}", bg.describe());
    assert!(is_mount_point(&dir));
    assert_eq!(
        fs::read(mnt.join("report.bin")).unwrap(),
        content,
        "reads still work while busy"
    );
    tool_ok(&["umount", s(&mnt)]);
    assert_eq!(fs::read(&copied).unwrap(), content, "the file copied out differs");
    // The loop device lets go of the image a moment later, or later still if
    // a mount namespace made meanwhile (another test's drill) holds a copy of
    // the loop mount.
    assert!(
        poll_until(WAIT, || tool(&["losetup", "-j", s(&file)]).1.trim().is_empty()),
        "a loop device still holds the image: {}",
        tool(&["losetup", "-j", s(&file)]).1
    );

    interrupt(bg, &dir);
    assert_eq!(repo_snapshot(&sb.repo), before, "mounting changed the repository");
}

#[test]
fn all_points_shows_a_directory_per_point_with_its_images() {
    if !fuse_here() {
        return;
    }
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 9 * MIB + 123, 10);
    let small = sb.path("small.bin");
    fs::write(&small, text_like(100_003, 11)).unwrap();
    sb.backup_json("g", &[("v", &v), ("small", &small)]);
    let v1 = sb.path("v1.img");
    fs::copy(&v, &v1).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
    write_random_at(&f, 4 * MIB - 10, MIB, 12);
    drop(f);
    sb.backup_json("g", &[("v", &v), ("small", &small)]);
    let points = sb.points();
    assert_eq!(points.len(), 2);

    // `--point` and `--all-points` together: refused.
    let dir = sb.path("all");
    fs::create_dir(&dir).unwrap();
    run(&sb.args("mount", "g", &["--point", "1", "--all-points", s(&dir)])).code(EXIT_ERROR);

    let bg = start_mount(&sb, "g", &["--all-points"], &dir);
    let _cleanup = Unmount(vec![dir.clone()]);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // `<seq>-<taken_at to the second, UTC, `-` for `:`>`, as `points` shows it.
    let expected: Vec<String> = points
        .iter()
        .map(|p| {
            let t = p["taken_at"].as_str().unwrap();
            format!("{}-{}Z", u(p, "seq"), t[..19].replace(':', "-"))
        })
        .collect();
    assert_eq!(names, expected);
    for (name, want_v) in names.iter().zip([&v1, &v]) {
        let d = dir.join(name);
        let mut inside: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        assert_eq!(inside, ["small.img", "v.img"], "{name}");
        assert_same_content(want_v, &d.join("v.img"));
        assert_same_content(&small, &d.join("small.img"));
    }
    interrupt(bg, &dir);

    // One older point at the top.
    let bg = start_mount(&sb, "g", &["--point", "1"], &dir);
    let _cleanup = Unmount(vec![dir.clone()]);
    assert_same_content(&v1, &dir.join("v.img"));
    interrupt(bg, &dir);
}

#[test]
fn a_damaged_chunk_reads_as_eio_and_the_object_is_named_in_the_log() {
    if !fuse_here() {
        return;
    }
    let sb = Sandbox::new();
    let o = sb.point_with_a_damaged_chunk();

    let dir = sb.path("points");
    fs::create_dir(&dir).unwrap();
    let mut bg = start_mount(&sb, "g", &[], &dir);
    let _cleanup = Unmount(vec![dir.clone()]);
    let img = File::open(dir.join("v.img")).unwrap();
    let mut buf = vec![0u8; 4096];
    // The damaged segment: EIO, however often it is asked for.
    for _ in 0..2 {
        let e = img
            .read_exact_at(&mut buf, 5 * MIB)
            .expect_err("a damaged chunk was read without an error");
        assert_eq!(e.raw_os_error(), Some(5), "not EIO: {e}");
    }
    // The other segments read right.
    let mut seg0 = vec![1u8; 4 * MIB as usize];
    img.read_exact_at(&mut seg0, 0).unwrap();
    assert!(seg0.iter().all(|b| *b == 0));
    let mut seg2 = vec![0u8; 256 * KIB as usize];
    img.read_exact_at(&mut seg2, 9 * MIB).unwrap();
    assert!(seg2.iter().all(|b| *b == 0x5a));
    // A whole copy fails rather than hand out other bytes.
    let (ok, _, _) = tool(&["cp", s(&dir.join("v.img")), s(&sb.path("copy.img"))]);
    assert!(!ok, "a copy of a damaged image succeeded");
    drop(img);
    let log = bg.stderr();
    assert!(
        log.contains(&o.id_hex) && log.contains("damaged") && log.contains("EIO"),
        "the damaged object is not named in the log: {}",
        bg.describe()
    );
    interrupt(bg, &dir);
}

#[test]
fn mount_reads_a_point_through_a_receiver() {
    if !fuse_here() {
        return;
    }
    let (site, _receiver, _key, c) = agent_a_site("a=app");
    let v = site.path("v.img");
    write_random_file(&v, 6 * MIB + 5, 60);
    c.backup_json("app", &[("v", &v)]);
    let dir = site.path("points");
    fs::create_dir(&dir).unwrap();
    let args = c.keyed_args("mount", "app", &[s(&dir)]);
    let mut bg = Background::spawn(&strs(&args));
    let want = format!("mounted at {}", s(&dir));
    if bg.wait_for_line(WAIT, |l| l == want).is_none() {
        panic!("mount never said `{want}`: {}", bg.describe());
    }
    let _cleanup = Unmount(vec![dir.clone()]);
    assert_same_content(&v, &dir.join("v.img"));
    interrupt(bg, &dir);
}
