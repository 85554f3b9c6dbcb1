//! `lifeline serve` with real NBD clients (nbdinfo, nbdcopy, qemu-img, qemu-io
//! from Debian's libnbd-bin and qemu-utils; each test skips with a message when
//! one is missing), and with a raw protocol client for the requests no real
//! client sends (past the end, oversized, a disconnect mid-request).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// True when every tool is on PATH; otherwise says which is missing.
pub(super) fn have(tools: &[&str]) -> bool {
    for t in tools {
        if !on_path(t) {
            eprintln!("skipped: `{t}` is not installed (Debian: apt-get install qemu-utils libnbd-bin nbdfuse)");
            return false;
        }
    }
    true
}

/// Runs a client tool; returns (success, stdout, stderr).
pub(super) fn tool(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", args[0]));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
pub(super) fn tool_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = tool(args);
    assert!(ok, "`{}` failed:\n{stdout}\n{stderr}", args.join(" "));
    stdout
}

/// A running `lifeline serve` and its address.
struct Served {
    bg: Background,
    addr: String,
}

impl Served {
    #[track_caller]
    fn start(sb: &Sandbox, group: &str, extra: &[&str]) -> Served {
        let mut args = sb.args("serve", group, &["--listen", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        let mut bg = Background::spawn(&args);
        let Some(line) = bg.wait_for_line(WAIT, |l| l.starts_with("listening on nbd://")) else {
            panic!("serve never said where it listens: {}", bg.describe());
        };
        assert!(
            bg.stdout().starts_with("listening on nbd://"),
            "the first stdout line is the address: {}",
            bg.describe()
        );
        let addr = line.trim_start_matches("listening on nbd://").to_string();
        Served { bg, addr }
    }

    /// `lifeline serve ARGS --listen 127.0.0.1:0` with any repository.
    #[track_caller]
    fn start_with(args: &[&str]) -> Served {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--listen", "127.0.0.1:0"]);
        let mut bg = Background::spawn(&all);
        let Some(line) = bg.wait_for_line(WAIT, |l| l.starts_with("listening on nbd://")) else {
            panic!("serve never said where it listens: {}", bg.describe());
        };
        let addr = line.trim_start_matches("listening on nbd://").to_string();
        Served { bg, addr }
    }

    fn url(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.addr)
    }

    /// The same address as a qemu `nbd:` spec (qemu-io, qemu-img).
    fn qemu(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.addr)
    }
}

/// A sparse volume of `size` bytes with random data in a few places spread
/// through it; returns the data ranges.
fn sparse_volume(path: &Path, size: u64, seed: u64) -> Vec<(u64, u64)> {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let ranges = vec![
        (0, 64 * KIB),
        (size / 3 + 12 * KIB, MIB + 4 * KIB),
        (size - 3 * MIB, 512 * KIB),
    ];
    for (i, (at, len)) in ranges.iter().enumerate() {
        write_random_at(&f, *at, *len, seed + i as u64);
    }
    f.sync_all().unwrap();
    ranges
}

/// Every file of the repository with its length and content hash, to show that
/// serving changed nothing.
pub(super) fn repo_snapshot(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                walk(&e, out);
            } else if !e.to_string_lossy().contains("/catalog/") {
                out.push((e.clone(), fs::read(&e).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join("tenants"), &mut out);
    out
}

#[test]
fn serve_exports_a_sparse_point_to_nbdinfo_nbdcopy_and_qemu_img() {
    if !have(&["nbdinfo", "nbdcopy", "qemu-img"]) {
        return;
    }
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    let size = 96 * MIB;
    let ranges = sparse_volume(&v, size, 1);
    let small = sb.path("small.bin");
    fs::write(&small, text_like(100_003, 2)).unwrap();
    sb.backup_json("g", &[("v", &v), ("small", &small)]);
    let before = repo_snapshot(&sb.repo);

    let mut srv = Served::start(&sb, "g", &[]);
    // Written before the listening line, but read from the pipe by a thread.
    poll_until(WAIT, || srv.bg.stderr().contains("temporary overlay"));
    let err = srv.bg.stderr();
    assert!(err.contains("temporary overlay"), "{}", srv.bg.describe());
    let tmp_overlay = err
        .split("temporary overlay in ")
        .nth(1)
        .and_then(|r| r.split(", removed at exit").next())
        .map(PathBuf::from)
        .expect("the temporary overlay's path");
    assert!(tmp_overlay.join("overlay.meta").exists());

    // Size, contexts and the allocation map.
    let info: serde_json::Value = serde_json::from_str(&tool_ok(&["nbdinfo", "--json", &srv.url("v")])).unwrap();
    assert_eq!(info["exports"][0]["export-size"], size, "{info}");
    let list = tool_ok(&["nbdinfo", "--list", &srv.url("")]);
    assert!(
        list.contains("export=\"v\"") && list.contains("export=\"small\""),
        "{list}"
    );
    let map: serde_json::Value =
        serde_json::from_str(&tool_ok(&["nbdinfo", "--map", "--json", &srv.url("v")])).unwrap();
    let mut data = 0u64;
    let mut covered = 0u64;
    for e in map.as_array().expect("extents") {
        let (off, len, ty) = (u(e, "offset"), u(e, "length"), u(e, "type"));
        assert_eq!(off, covered, "extents are contiguous: {map}");
        covered += len;
        if ty & 1 == 0 {
            data += len;
            // Every data extent lies in a range that was written.
            assert!(
                ranges.iter().any(|(a, l)| off < a + l && off + len > *a),
                "data extent {off}+{len} where nothing was written: {map}"
            );
        }
    }
    assert_eq!(covered, size, "{map}");
    let written: u64 = ranges.iter().map(|r| r.1).sum();
    assert!(
        data >= written && data <= written + 3 * 64 * KIB,
        "the map shows {data} data bytes for {written} written: {map}"
    );

    // Whole copies equal the volumes.
    let out = sb.path("copy.img");
    tool_ok(&["nbdcopy", &srv.url("v"), s(&out)]);
    assert_same_content(&v, &out);
    let out_small = sb.path("copy.small");
    tool_ok(&["nbdcopy", &srv.url("small"), s(&out_small)]);
    assert_same_content(&small, &out_small);
    let (same, stdout, stderr) = tool(&["qemu-img", "compare", "-f", "raw", "-F", "raw", s(&v), &srv.qemu("v")]);
    assert!(same && stdout.contains("Images are identical"), "{stdout}{stderr}");

    // An unknown export is refused and named.
    let (ok, _, stderr) = tool(&["nbdinfo", &srv.url("nosuch")]);
    assert!(!ok && stderr.contains("nosuch"), "{stderr}");

    srv.bg.signal("TERM");
    let r = srv.bg.finish(WAIT).ok();
    assert!(r.stdout.contains("stopped"), "{}", r.stdout);
    assert!(!tmp_overlay.exists(), "the temporary overlay was left behind");
    assert_eq!(repo_snapshot(&sb.repo), before, "serving changed the repository");
    sb.verify(true).ok();
}

/// Patterns written at (offset, length, byte).
const WRITES: [(u64, u64, u8); 5] = [
    (0, 4096, 0xa1),
    (5 * MIB + 100, 7000, 0xb2),
    (17 * MIB, 3 * MIB + 512, 0xc3),
    (40 * MIB - 4096, 8192, 0xd4),
    (48 * MIB - 10, 10, 0xe5),
];

#[test]
fn flushed_writes_survive_kill_9_and_another_points_overlay_is_refused() {
    if !have(&["qemu-io", "nbdcopy"]) {
        return;
    }
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    let size = 48 * MIB;
    sparse_volume(&v, size, 10);
    sb.backup_json("g", &[("v", &v)]);
    let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
    write_random_at(&f, 0, MIB, 11);
    drop(f);
    sb.backup_json("g", &[("v", &v)]);
    // The point served is 1: the volume as it was before the second backup.
    let point1 = sb.path("point1.img");
    sb.restore("g", "1", "v", &point1).ok();
    let before = repo_snapshot(&sb.repo);

    let overlay = sb.path("overlay");
    let srv = Served::start(&sb, "g", &["--point", "1", "--overlay-dir", s(&overlay)]);
    let mut cmds: Vec<String> = Vec::new();
    for (at, len, b) in WRITES {
        cmds.push("-c".into());
        cmds.push(format!("write -P {b} {at} {len}"));
    }
    cmds.push("-c".into());
    cmds.push("flush".into());
    let url = srv.qemu("v");
    let mut args: Vec<&str> = vec!["qemu-io", "-f", "raw"];
    args.extend(cmds.iter().map(String::as_str));
    args.push(&url);
    tool_ok(&args);
    let mut bg = srv.bg;
    bg.signal("KILL");
    bg.wait_exit(WAIT).expect("killed");

    // The expected volume: point 1 with the writes over it.
    let expected = sb.path("expected.img");
    fs::copy(&point1, &expected).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&expected).unwrap();
    for (at, len, b) in WRITES {
        f.write_all_at(&vec![b; len as usize], at).unwrap();
    }
    drop(f);

    // Another point with this overlay is refused, naming both.
    run(&sb.args(
        "serve",
        "g",
        &["--point", "2", "--listen", "127.0.0.1:0", "--overlay-dir", s(&overlay)],
    ))
    .fails(
        EXIT_ERROR,
        &["holds the writes of point 1", "not of point 2", "--overlay-dir"],
    );

    // The same point again: every flushed write is there.
    let mut srv = Served::start(&sb, "g", &["--point", "1", "--overlay-dir", s(&overlay)]);
    assert!(
        poll_until(WAIT, || srv.bg.stdout().contains("overlay blocks kept")),
        "{}",
        srv.bg.describe()
    );
    let url = srv.qemu("v");
    let mut args: Vec<String> = vec!["qemu-io".into(), "-f".into(), "raw".into(), "-r".into()];
    for (at, len, b) in WRITES {
        args.push("-c".into());
        args.push(format!("read -P {b} {at} {len}"));
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool_ok(&args);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let copy = sb.path("copy.img");
    tool_ok(&["nbdcopy", &srv.url("v"), s(&copy)]);
    assert_same_content(&expected, &copy);

    // Read-only: writes are refused and nothing changes.
    srv.bg.signal("TERM");
    srv.bg.finish(WAIT).ok();
    let ro = Served::start(&sb, "g", &["--point", "1", "--read-only"]);
    let url = ro.qemu("v");
    let (ok, stdout, stderr) = tool(&["qemu-io", "-f", "raw", "-c", "write -P 1 0 4096", &url]);
    assert!(
        !ok || stdout.contains("Operation not permitted")
            || stderr.contains("read-only")
            || stderr.contains("read only"),
        "{stdout}{stderr}"
    );
    ro.bg.signal("TERM");
    ro.bg.finish(WAIT).ok();
    assert_eq!(repo_snapshot(&sb.repo), before, "serving changed the repository");
}

/// A minimal NBD client for requests real clients never send.
struct RawClient {
    s: TcpStream,
}

impl RawClient {
    fn connect(addr: &str) -> RawClient {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..8], b"NBDMAGIC");
        assert_eq!(&hello[8..16], b"IHAVEOPT");
        // Fixed newstyle, no zeroes.
        s.write_all(&3u32.to_be_bytes()).unwrap();
        RawClient { s }
    }

    fn option(&mut self, opt: u32, data: &[u8]) {
        let mut b = b"IHAVEOPT".to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    /// Reads one option reply: (type, data).
    fn option_reply(&mut self) -> (u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        let ty = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        (ty, d)
    }

    /// NBD_OPT_GO; returns the replies up to the final one.
    fn go(&mut self, name: &str) -> Vec<(u32, Vec<u8>)> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        self.option(7, &d);
        let mut out = Vec::new();
        loop {
            let r = self.option_reply();
            let last = r.0 != 3; // NBD_REP_INFO comes before the ACK or error
            out.push(r);
            if last {
                return out;
            }
        }
    }

    fn request(&mut self, kind: u16, cookie: u64, offset: u64, length: u32) {
        let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        self.s.write_all(&b).unwrap();
    }

    /// A simple reply: (error, cookie).
    fn simple_reply(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(&h[..4], &0x6744_6698u32.to_be_bytes(), "simple reply magic");
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }
}

const EPERM: u32 = 1;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EOVERFLOW: u32 = 75;

#[test]
fn bad_requests_get_nbd_errors_and_the_server_keeps_serving() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    let size = 8 * MIB;
    write_random_file(&v, size, 20);
    sb.backup_json("g", &[("v", &v)]);
    let overlay = sb.path("overlay");
    let srv = Served::start(&sb, "g", &["--overlay-dir", s(&overlay)]);

    let mut c = RawClient::connect(&srv.addr);
    // An unknown export: NBD_REP_ERR_UNKNOWN with a message naming it.
    let r = c.go("nosuch");
    let (ty, msg) = r.last().unwrap();
    assert_eq!(*ty, (1 << 31) + 6, "NBD_REP_ERR_UNKNOWN");
    let msg = String::from_utf8_lossy(msg);
    assert!(msg.contains("no export `nosuch`") && msg.contains("exports v"), "{msg}");
    // An unsupported option, then the right export.
    c.option(5, &[]); // STARTTLS
    assert_eq!(c.option_reply().0, (1 << 31) + 1, "NBD_REP_ERR_UNSUP");
    let r = c.go("v");
    assert_eq!(r.last().unwrap().0, 1, "ACK: {r:?}");
    assert_eq!(
        u64::from_be_bytes(r[0].1[2..10].try_into().unwrap()),
        size,
        "NBD_INFO_EXPORT size"
    );

    // A read past the end, a read across the end, an oversized read.
    c.request(0, 1, size, 4096);
    assert_eq!(c.simple_reply(), (EINVAL, 1));
    c.request(0, 2, size - 100, 4096);
    assert_eq!(c.simple_reply(), (EINVAL, 2));
    c.request(0, 3, 0, 64 << 20);
    assert_eq!(c.simple_reply(), (EOVERFLOW, 3));
    c.request(0, 4, u64::MAX - 10, 4096);
    assert_eq!(c.simple_reply(), (EINVAL, 4));
    // An oversized write is read through and refused; the stream stays in step.
    c.request(1, 5, 0, 40 << 20);
    c.s.write_all(&vec![0x77u8; 40 << 20]).unwrap();
    assert_eq!(c.simple_reply(), (EOVERFLOW, 5));
    c.request(1, 6, size - 10, 4096);
    c.s.write_all(&[0x77u8; 4096]).unwrap();
    assert_eq!(c.simple_reply(), (ENOSPC, 6));
    // A good read still works, and returns the volume's bytes.
    c.request(0, 7, MIB, 4096);
    assert_eq!(c.simple_reply(), (0, 7));
    let mut got = vec![0u8; 4096];
    c.s.read_exact(&mut got).unwrap();
    let mut want = vec![0u8; 4096];
    File::open(&v).unwrap().read_exact_at(&mut want, MIB).unwrap();
    assert_eq!(got, want);
    // A write whose payload never comes: the client goes away mid-request.
    c.request(1, 8, 0, 1 << 20);
    c.s.write_all(&[1u8; 100]).unwrap();
    drop(c);

    // The server carries on, and nothing of the cut write landed.
    let mut c = RawClient::connect(&srv.addr);
    assert_eq!(c.go("v").last().unwrap().0, 1);
    c.request(0, 9, 0, 4096);
    assert_eq!(c.simple_reply(), (0, 9));
    c.s.read_exact(&mut got).unwrap();
    File::open(&v).unwrap().read_exact_at(&mut want, 0).unwrap();
    assert_eq!(got, want, "a write cut short changed the export");
    c.request(2, 10, 0, 0); // NBD_CMD_DISC
    drop(c);
    drop(srv);

    // Read-only: EPERM.
    let srv = Served::start(&sb, "g", &["--read-only"]);
    let mut c = RawClient::connect(&srv.addr);
    assert_eq!(c.go("").last().unwrap().0, 1, "the only export is the default one");
    c.request(1, 11, 0, 4096);
    c.s.write_all(&[0u8; 4096]).unwrap();
    assert_eq!(c.simple_reply(), (EPERM, 11));
    c.request(6, 12, 0, 4096); // WRITE_ZEROES
    assert_eq!(c.simple_reply(), (EPERM, 12));
}

#[test]
fn a_damaged_chunk_is_an_io_error_for_its_segment_never_wrong_bytes() {
    if !have(&["qemu-io", "nbdcopy"]) {
        return;
    }
    let sb = Sandbox::new();
    let o = sb.point_with_a_damaged_chunk();

    let srv = Served::start(&sb, "g", &["--read-only"]);
    let url = srv.qemu("v");
    // The damaged segment: an I/O error, however often it is asked for.
    for _ in 0..2 {
        let (_, stdout, stderr) = tool(&["qemu-io", "-f", "raw", "-r", "-c", "read 5M 4k", &url]);
        assert!(
            (stdout + &stderr).contains("Input/output error"),
            "a damaged chunk was read without an error"
        );
    }
    // The other segments read right.
    tool_ok(&[
        "qemu-io",
        "-f",
        "raw",
        "-r",
        "-c",
        "read -P 0 0 4M",
        "-c",
        &format!("read -P 0x5a 9M {}", 256 * KIB),
        "-c",
        "read -P 0 10M 2M",
        &url,
    ]);
    let (ok, _, _) = tool(&["nbdcopy", &srv.url("v"), s(&sb.path("copy.img"))]);
    assert!(!ok, "nbdcopy of a damaged export succeeded");
    let mut bg = srv.bg;
    let log = bg.stderr();
    assert!(
        log.contains(&o.id_hex) && log.contains("damaged"),
        "the damaged object is not named in the log: {}",
        bg.describe()
    );
}

#[test]
fn an_ext4_point_checks_clean_through_nbdfuse_and_a_loop_mount() {
    if !have(&["nbdfuse", "mkfs.ext4", "e2fsck", "mount", "umount"]) {
        return;
    }
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: a loop mount needs root");
        return;
    }
    let sb = Sandbox::new();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    let content = text_like(300_000, 40);
    fs::write(src.join("hello.txt"), &content).unwrap();
    let img = sb.path("fs.img");
    File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let (ok, o, e) = tool(&["mkfs.ext4", "-q", "-F", "-d", s(&src), s(&img)]);
    assert!(ok, "mkfs.ext4: {o}{e}");
    sb.backup_json("g", &[("fs", &img)]);
    let srv = Served::start(&sb, "g", &["--read-only"]);

    let fuse_dir = sb.path("fuse");
    fs::create_dir(&fuse_dir).unwrap();
    let mut fuse = Command::new("nbdfuse")
        .args(["--readonly", s(&fuse_dir), &srv.url("fs")])
        .spawn()
        .expect("start nbdfuse");
    let dev = fuse_dir.join("nbd");
    if !poll_until(WAIT, || fs::metadata(&dev).is_ok_and(|m| m.len() == 64 * MIB)) {
        let _ = fuse.kill();
        let _ = fuse.wait();
        eprintln!("skipped: nbdfuse could not mount here (no FUSE?)");
        return;
    }
    let (ok, o, e) = tool(&["e2fsck", "-fn", s(&dev)]);
    let mnt = sb.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = ok && tool(&["mount", "-o", "loop,ro", s(&dev), s(&mnt)]).0;
    let copied = mounted.then(|| fs::read(mnt.join("hello.txt")));
    if mounted {
        tool(&["umount", s(&mnt)]);
    }
    let _ = Command::new("umount").arg(s(&fuse_dir)).status();
    let _ = fuse.wait();
    assert!(ok, "e2fsck -fn over NBD: {o}{e}");
    assert!(mounted, "the loop mount failed");
    assert_eq!(copied.unwrap().unwrap(), content, "the file copied out differs");
}

#[test]
fn hydration_killed_midway_resumes_and_the_target_is_the_point_plus_overlay_writes() {
    if !have(&["qemu-io"]) {
        return;
    }
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    let size = 32 * MIB;
    write_random_file(&v, size, 50);
    // A hole, so the target stays sparse where the point is.
    let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
    f.write_all_at(&vec![0u8; 4 * MIB as usize], 12 * MIB).unwrap();
    drop(f);
    sb.backup_json("g", &[("v", &v)]);
    let overlay = sb.path("overlay");
    let target = sb.path("target.img");
    let spec = format!("v={}", s(&target));
    let slow = [
        "--overlay-dir",
        s(&overlay),
        "--hydrate",
        &spec,
        "--hydrate-rate",
        "2MiB",
    ];
    let mut srv = Served::start(&sb, "g", &slow);
    assert!(
        poll_until(WAIT, || {
            let e = srv.bg.stderr();
            e.contains("(20 %)") || e.contains("(30 %)")
        }),
        "no hydration progress: {}",
        srv.bg.describe()
    );
    // Writes below the cursor (copied: they go through to the target too) and
    // above it, flushed; then kill -9 in the middle of the copy.
    let writes = [
        (0u64, 65536u64, 0x11u8),
        (30 * MIB + 100, 5000, 0x22),
        (13 * MIB, 4096, 0x33),
    ];
    let url = srv.qemu("v");
    let mut args: Vec<String> = vec!["qemu-io".into(), "-f".into(), "raw".into()];
    for (at, len, b) in writes {
        args.push("-c".into());
        args.push(format!("write -P {b} {at} {len}"));
    }
    args.extend(["-c".into(), "flush".into(), url]);
    tool_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !srv.bg.stderr().contains("hydrated v"),
        "hydration ended before the kill"
    );
    srv.bg.signal("KILL");
    srv.bg.wait_exit(WAIT).expect("killed");
    drop(srv);

    let mut expected = fs::read(&v).unwrap();
    for (at, len, b) in writes {
        expected[at as usize..(at + len) as usize].fill(b);
    }
    let srv = Served::start(&sb, "g", &["--overlay-dir", s(&overlay), "--hydrate", &spec]);
    assert!(
        poll_until(WAIT, || srv.bg.stderr().contains("hydrated v into")),
        "hydration did not finish: {}",
        { srv.bg.stderr() }
    );
    let log = srv.bg.stderr();
    assert!(log.contains("hydrate v: resuming into"), "{log}");
    assert!(
        fs::read(&target).unwrap() == expected,
        "the hydrated target is not the point plus the writes"
    );
    // After hydration, writes still reach the target (after a FLUSH).
    let url = srv.qemu("v");
    tool_ok(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0x44 1M 8192",
        "-c",
        "flush",
        &url,
    ]);
    expected[MIB as usize..MIB as usize + 8192].fill(0x44);
    assert!(
        fs::read(&target).unwrap() == expected,
        "a write after hydration missed the target"
    );
    assert!(allocated(&target) < size, "the target's holes were filled");
}

/// `updated_at` of a hydration status.
fn at(st: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(st["updated_at"].as_str().unwrap()).unwrap()
}

/// One read of `hydration.json` (written atomically: always whole).
fn hydration_status(overlay: &Path) -> serde_json::Value {
    let bytes = fs::read(overlay.join("hydration.json")).expect("hydration.json");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("hydration.json is not JSON ({e})"))
}

/// Polls `hydration.json` every 50 ms until `stop` says so; asserts on each
/// read that `copied` and the bytes read from the repository never go back
/// and `updated_at` never goes back. Returns every status read.
#[track_caller]
fn poll_status(overlay: &Path, mut stop: impl FnMut(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let st = hydration_status(overlay);
        assert_eq!(st["schema"], "lifeline.hydration-status", "{st:#}");
        assert_eq!(st["version"], 1, "{st:#}");
        if let Some(prev) = seen.last() {
            let v = |x: &serde_json::Value, k: &str| x["volumes"][0][k].as_u64().unwrap();
            assert!(
                v(&st, "copied") >= v(prev, "copied"),
                "copied went back: {prev:#} then {st:#}"
            );
            assert!(
                st["repository_read_bytes"].as_u64() >= prev["repository_read_bytes"].as_u64(),
                "{prev:#} then {st:#}"
            );
            assert!(at(&st) >= at(prev), "updated_at went back: {prev:#} then {st:#}");
        }
        let done = stop(&st);
        seen.push(st);
        if done {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hydration status never got there: {:#}",
            seen.last().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serve --hydrate` keeps `hydration.json` in the overlay directory: read
/// while a throttled hydration runs, `copied` only grows, with a rate and the
/// bytes read from the repository; after a kill -9 midway the file is left
/// saying `running` under a dead pid, and the restarted server's status
/// resumes at (or past) the last `copied` the killed one wrote, never from 0,
/// then ends at the volume's size, `done`, the target equal to the volume.
#[test]
fn the_hydration_status_file_counts_up_to_the_size_and_shows_a_resume_after_kill_9() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    let size = 24 * MIB;
    write_random_file(&v, size, 61);
    sb.backup_json("g", &[("v", &v)]);
    let overlay = sb.path("overlay");
    let target = sb.path("target.img");
    let spec = format!("v={}", s(&target));
    let mut srv = Served::start(
        &sb,
        "g",
        &[
            "--overlay-dir",
            s(&overlay),
            "--hydrate",
            &spec,
            "--hydrate-rate",
            "4MiB",
        ],
    );
    // Written before the address was printed.
    let first = hydration_status(&overlay);
    assert_eq!(first["group"], "g", "{first:#}");
    assert_eq!(first["pid"], srv.bg.pid(), "{first:#}");
    let vol = &first["volumes"][0];
    assert_eq!(vol["volume"], "v", "{first:#}");
    assert_eq!(vol["target"], s(&target), "{first:#}");
    assert_eq!(vol["size"], size, "{first:#}");
    assert_eq!(vol["resumed_from"], 0, "{first:#}");
    assert_eq!(vol["rate_limit"], 4 * MIB, "{first:#}");
    let seen = poll_status(&overlay, |st| st["volumes"][0]["copied"].as_u64().unwrap() >= 8 * MIB);
    let last = seen.last().unwrap().clone();
    assert_eq!(last["volumes"][0]["state"], "running", "{last:#}");
    assert!(last["volumes"][0]["bytes_per_sec"].as_f64().unwrap() > 0.0, "{last:#}");
    assert!(last["volumes"][0]["eta_secs"].as_f64().unwrap() > 0.0, "{last:#}");
    assert!(last["repository_read_bytes"].as_u64().unwrap() > 0, "{last:#}");
    // Updated at least every second: the reads spanned seconds and saw several updates.
    let updates: std::collections::BTreeSet<&str> = seen.iter().map(|x| x["updated_at"].as_str().unwrap()).collect();
    assert!(updates.len() >= 2, "{} updates in {} reads", updates.len(), seen.len());
    srv.bg.signal("KILL");
    srv.bg.wait_exit(WAIT).expect("killed");
    drop(srv);
    // What the killed server left: its last status, still `running`.
    let left = hydration_status(&overlay);
    assert_eq!(left["volumes"][0]["state"], "running", "{left:#}");
    let left_copied = left["volumes"][0]["copied"].as_u64().unwrap();
    assert!(left_copied >= last["volumes"][0]["copied"].as_u64().unwrap());
    assert!(left_copied < size, "hydration ended before the kill: {left:#}");

    let srv = Served::start(&sb, "g", &["--overlay-dir", s(&overlay), "--hydrate", &spec]);
    let resumed = hydration_status(&overlay);
    assert_eq!(resumed["pid"], srv.bg.pid(), "{resumed:#}");
    let from = resumed["volumes"][0]["resumed_from"].as_u64().unwrap();
    assert!(
        from >= left_copied && from > 0,
        "resumed from {from}, but the killed server had copied {left_copied}: {resumed:#}"
    );
    assert!(resumed["volumes"][0]["copied"].as_u64().unwrap() >= from, "{resumed:#}");
    assert!(resumed["volumes"][0]["rate_limit"].is_null(), "{resumed:#}");
    let seen = poll_status(&overlay, |st| st["volumes"][0]["state"] != "running");
    let end = seen.last().unwrap();
    let vol = &end["volumes"][0];
    assert_eq!(vol["state"], "done", "{end:#}");
    assert_eq!(vol["copied"], size, "{end:#}");
    assert_eq!(vol["resumed_from"], from, "{end:#}");
    assert!(vol["ended_at"].is_string() && vol["eta_secs"].is_null(), "{end:#}");
    // Random data does not compress: what was copied after the resume was
    // read from the repository at least once, sealed.
    assert!(end["repository_read_bytes"].as_u64().unwrap() >= size - from, "{end:#}");
    assert!(
        fs::read(&target).unwrap() == fs::read(&v).unwrap(),
        "the target is not the volume"
    );
    // The file stays fresh while the server runs after hydration.
    let before = at(end);
    assert!(
        poll_until(WAIT, || at(&hydration_status(&overlay)) > before),
        "hydration.json stopped being updated"
    );
    drop(srv);
}

#[test]
fn serve_reads_a_point_through_a_receiver() {
    if !have(&["nbdcopy"]) {
        return;
    }
    let (site, _receiver, _key, c) = agent_a_site("a=app");
    let v = site.path("v.img");
    sparse_volume(&v, 24 * MIB, 60);
    c.backup_json("app", &[("v", &v)]);
    let srv = Served::start_with(&strs(&c.keyed("app", &["--read-only"])));
    let copy = site.path("copy.img");
    tool_ok(&["nbdcopy", &srv.url("v"), s(&copy)]);
    assert_same_content(&v, &copy);
}
