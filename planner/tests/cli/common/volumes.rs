//! Volume contents: deterministic random and text-like bytes, written fast,
//! and comparisons that name the first difference.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::MIB;

/// A fast deterministic generator (splitmix64): /dev/urandom is too slow for
/// hundreds of MiB on a shared machine, and a seed makes failures reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `len` random bytes to `f` at `offset`, 4 MiB at a time.
pub fn write_random_at(f: &File, offset: u64, len: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; (4 * MIB).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all_at(&buf[..n], offset + done).expect("write volume");
        done += n as u64;
    }
}

/// A new file of `len` random bytes.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let f = File::create(path).expect("create volume");
    write_random_at(&f, 0, len, seed);
    f.sync_all().expect("fsync volume");
}

/// `len` bytes that look like a text file (log lines of a small vocabulary):
/// compressible, with repeats.
pub fn text_like(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "replica",
        "volume",
        "segment",
        "chunk",
        "commit",
        "point",
        "restore",
        "verify",
        "tenant",
        "group",
        "frozen",
        "thawed",
        "index",
        "object",
        "sealed",
        "repository",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 128);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:08} INFO ").as_bytes());
        for _ in 0..(4 + rng.next_u64() % 8) {
            out.extend_from_slice(WORDS[(rng.next_u64() % 16) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(format!("id={:x}\n", rng.next_u64() % 100_000).as_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts two files hold the same bytes, naming the first difference.
#[track_caller]
pub fn assert_same_content(expected: &Path, actual: &Path) {
    let a = fs::read(expected).unwrap_or_else(|e| panic!("read {}: {e}", expected.display()));
    let b = fs::read(actual).unwrap_or_else(|e| panic!("read {}: {e}", actual.display()));
    assert_eq!(
        a.len(),
        b.len(),
        "{} and {} differ in size",
        expected.display(),
        actual.display()
    );
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!(
            "{} and {} differ first at offset {i}",
            expected.display(),
            actual.display()
        );
    }
}

/// Bytes allocated on disk for `path`.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

/// Asserts that `restored` holds `expected`'s bytes in fewer than `max`
/// allocated bytes: a sparse copy (`data` says what the volume holds).
#[track_caller]
pub fn assert_sparse_copy(expected: &Path, restored: &Path, max: u64, data: &str) {
    assert_same_content(expected, restored);
    let alloc = allocated(restored);
    assert!(
        alloc < max,
        "restored volume is not sparse: {alloc} bytes allocated for {data}"
    );
}
