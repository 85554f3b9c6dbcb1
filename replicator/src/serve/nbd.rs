//! The NBD wire protocol: constants and the framing of every message this
//! server reads or writes (newstyle fixed handshake, options, requests, simple
//! and structured replies), as the NBD project's `doc/proto.md` defines them.
//! Everything is big endian on the wire.
//!
//! Written here rather than taken from a crate: the Rust NBD server crates
//! available implement the oldstyle or a bare newstyle handshake without
//! structured replies or block status, which is what lets clients skip the holes
//! of a sparse point; and the protocol is small and fully specified. Do not
//! modify these values: they are the protocol's.

use std::io::{self, Read, Write};

/// "NBDMAGIC": first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": the newstyle magic, and the prefix of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Prefix of every request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Prefix of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Prefix of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) + 9;

// Info types of NBD_OPT_INFO / NBD_OPT_GO.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_SEND_DF: u16 = 1 << 7;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Commands and their flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

// Structured reply chunks.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

// Errors (the protocol's values, which are Linux's errno values).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;

/// The one metadata context served, and its id in replies.
pub const BASE_ALLOCATION: &str = "base:allocation";
pub const BASE_ALLOCATION_ID: u32 = 1;
/// `base:allocation` flags of a block status descriptor.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// Largest READ or WRITE payload served; also the maximum block size
/// advertised. A request above it gets an error reply.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted during the handshake (export names are at
/// most 4096 bytes; a meta context request holds a few of them).
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// The longest string the protocol allows (export names, queries).
pub const MAX_STRING: usize = 4096;

/// An option as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionRequest {
    pub option: u32,
    pub data: Vec<u8>,
}

/// A transmission-phase request header (the payload of a WRITE follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

pub const REQUEST_LEN: usize = 28;

impl Request {
    /// Decodes a request header; `None` when the magic is wrong (the stream is
    /// out of step and the connection must close).
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Option<Request> {
        if u32::from_be_bytes(b[0..4].try_into().expect("4")) != REQUEST_MAGIC {
            return None;
        }
        Some(Request {
            flags: u16::from_be_bytes(b[4..6].try_into().expect("2")),
            kind: u16::from_be_bytes(b[6..8].try_into().expect("2")),
            cookie: u64::from_be_bytes(b[8..16].try_into().expect("8")),
            offset: u64::from_be_bytes(b[16..24].try_into().expect("8")),
            length: u32::from_be_bytes(b[24..28].try_into().expect("4")),
        })
    }

    /// Encodes a request header (clients; tests).
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// Reads one option (`IHAVEOPT`, option, length, data). An option longer
/// than [`MAX_OPTION_LEN`] is read through and returned without its data, so
/// the caller can refuse it and carry on.
pub fn read_option(r: &mut impl Read) -> io::Result<(OptionRequest, bool)> {
    let mut h = [0u8; 16];
    r.read_exact(&mut h)?;
    if u64::from_be_bytes(h[0..8].try_into().expect("8")) != IHAVEOPT {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "option without IHAVEOPT"));
    }
    let option = u32::from_be_bytes(h[8..12].try_into().expect("4"));
    let len = u32::from_be_bytes(h[12..16].try_into().expect("4"));
    if len > MAX_OPTION_LEN {
        io::copy(&mut r.take(len as u64), &mut io::sink())?;
        return Ok((
            OptionRequest {
                option,
                data: Vec::new(),
            },
            false,
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok((OptionRequest { option, data }, true))
}

/// Writes an option reply.
pub fn write_option_reply(w: &mut (impl Write + ?Sized), option: u32, reply: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

/// The header of a simple reply.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// The header of a structured reply chunk whose payload is `len` bytes.
pub fn structured_header(flags: u16, kind: u16, cookie: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// A structured error chunk (the last of its reply): error, message.
pub fn structured_error(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    let msg = &message.as_bytes()[..message.len().min(MAX_STRING)];
    let mut b = Vec::with_capacity(26 + msg.len());
    b.extend_from_slice(&structured_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        6 + msg.len() as u32,
    ));
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

/// A cursor over an option's payload; every read is bounds-checked.
pub struct Payload<'a>(pub &'a [u8]);

impl<'a> Payload<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes(b.try_into().expect("2")))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().expect("4")))
    }
    /// A string prefixed by its u32 length, at most [`MAX_STRING`] bytes, UTF-8.
    pub fn string(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        if n > MAX_STRING {
            return None;
        }
        std::str::from_utf8(self.take(n)?).ok()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// NBD_OPT_INFO / NBD_OPT_GO: export name and the info types asked for.
pub fn parse_info_request(data: &[u8]) -> Option<(&str, Vec<u16>)> {
    let mut p = Payload(data);
    let name = p.string()?;
    let n = p.u16()? as usize;
    let infos = (0..n).map(|_| p.u16()).collect::<Option<Vec<_>>>()?;
    p.is_empty().then_some((name, infos))
}

/// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name and queries.
pub fn parse_meta_request(data: &[u8]) -> Option<(&str, Vec<&str>)> {
    let mut p = Payload(data);
    let name = p.string()?;
    let n = p.u32()? as usize;
    // Each query takes at least its 4-byte length: a count beyond that is a lie.
    if n > p.0.len() / 4 {
        return None;
    }
    let queries = (0..n).map(|_| p.string()).collect::<Option<Vec<_>>>()?;
    p.is_empty().then_some((name, queries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() {
        let r = Request {
            flags: CMD_FLAG_FUA,
            kind: CMD_WRITE,
            cookie: 0xdead_beef_0102_0304,
            offset: 1 << 40,
            length: 4096,
        };
        assert_eq!(Request::decode(&r.encode()), Some(r));
        let mut bad = r.encode();
        bad[0] ^= 1;
        assert_eq!(Request::decode(&bad), None);
    }

    #[test]
    fn info_and_meta_requests_parse() {
        let mut d = Vec::new();
        d.extend_from_slice(&2u32.to_be_bytes());
        d.extend_from_slice(b"db");
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(parse_info_request(&d), Some(("db", vec![INFO_BLOCK_SIZE])));
        assert_eq!(parse_info_request(&d[..d.len() - 1]), None, "short");
        let mut m = Vec::new();
        m.extend_from_slice(&2u32.to_be_bytes());
        m.extend_from_slice(b"db");
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
        m.extend_from_slice(BASE_ALLOCATION.as_bytes());
        assert_eq!(parse_meta_request(&m), Some(("db", vec![BASE_ALLOCATION])));
        m.push(0);
        assert_eq!(parse_meta_request(&m), None, "trailing bytes");
    }

    #[test]
    fn options_longer_than_the_limit_are_read_through() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&IHAVEOPT.to_be_bytes());
        wire.extend_from_slice(&OPT_GO.to_be_bytes());
        wire.extend_from_slice(&(MAX_OPTION_LEN + 1).to_be_bytes());
        wire.extend(std::iter::repeat_n(7u8, MAX_OPTION_LEN as usize + 1));
        wire.extend_from_slice(&IHAVEOPT.to_be_bytes());
        wire.extend_from_slice(&OPT_ABORT.to_be_bytes());
        wire.extend_from_slice(&0u32.to_be_bytes());
        let mut r = &wire[..];
        let (o, whole) = read_option(&mut r).unwrap();
        assert!(!whole && o.option == OPT_GO && o.data.is_empty());
        let (o, whole) = read_option(&mut r).unwrap();
        assert!(whole && o.option == OPT_ABORT);
    }

    proptest! {
        #[test]
        fn option_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_info_request(&data);
            let _ = parse_meta_request(&data);
            let mut r = &data[..];
            let _ = read_option(&mut r);
        }
    }
}
