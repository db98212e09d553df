//! The on-disk format of WAL segments, and the scan that recovery runs over
//! one segment. Pure functions over byte slices; the I/O lives in `mod.rs`.
//!
//! ```text
//! segment  = header record* zero-fill
//! header   = "SYNODWAL" version:u32 flags:u32 first_index:u64 reserved:u32 crc:u32   (32 bytes)
//! record   = crc:u32 len:u32 type:u8 index:u64 payload[len]                          (17 + len bytes)
//! ```
//!
//! Integers are little-endian. The header crc is CRC32C of its first 28
//! bytes; a record's crc is CRC32C of everything after the crc field
//! (len, type, index, payload). Type 0 is never written, so an all-zero
//! record header is unambiguously preallocated space, not data.

use std::ops::Range;

/// File name prefix and suffix of a segment: `wal-<first index, 20 digits>.log`.
pub(crate) const SEGMENT_PREFIX: &str = "wal-";
pub(crate) const SEGMENT_SUFFIX: &str = ".log";

const MAGIC: &[u8; 8] = b"SYNODWAL";
/// Bumped on any incompatible change; readers refuse versions they do not know.
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const FRAME_HEADER_LEN: usize = 17;
/// A log entry: an opaque payload at an index.
pub(crate) const RECORD_ENTRY: u8 = 1;

pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_index:020}{SEGMENT_SUFFIX}")
}

/// The first index encoded in a segment's file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_header(first_index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one framed record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, index: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    // The caller has checked the length fits in a u32.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(RECORD_ENTRY);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// How the scan of a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// After the last record there are only zeros or the end of the file.
    Clean,
    /// A partially written record starts at `offset` and nothing valid
    /// follows it: the tail of a write that was cut off by a crash. Only
    /// reported for the last segment.
    Torn { offset: u64, reason: String },
}

/// A scanned segment.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Each valid record's index and the byte range of its payload.
    pub records: Vec<(u64, Range<usize>)>,
    /// The offset just past the last valid record: where appends continue.
    pub end_offset: u64,
    pub end: ScanEnd,
}

/// Corruption found by a scan: where, and what.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub offset: u64,
    pub reason: String,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks a segment header against the index its file name promises.
fn check_header(bytes: &[u8], first_index: u64) -> Result<(), Corrupt> {
    let bad = |reason: String| Corrupt { offset: 0, reason };
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!(
            "the segment header is cut short ({} bytes)",
            bytes.len()
        )));
    }
    if &bytes[0..8] != MAGIC {
        return Err(bad("this is not a Synod WAL segment (bad magic)".into()));
    }
    if crc32c::crc32c(&bytes[..28]) != u32_at(bytes, 28) {
        return Err(bad("the segment header checksum does not match".into()));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "segment format version {version} is not supported (this build reads version \
             {FORMAT_VERSION}); run the Synod version that wrote it"
        )));
    }
    let named = u64_at(bytes, 16);
    if named != first_index {
        return Err(bad(format!(
            "the header says the segment starts at index {named}, its file name says {first_index}"
        )));
    }
    Ok(())
}

/// Why a frame is not the record expected there.
#[derive(Debug)]
enum BadFrame {
    /// Damaged or partially written.
    Damaged(String),
    /// A checksummed, intact record with the wrong index: never the result
    /// of a torn write.
    OutOfOrder(String),
}

/// The total length of the valid record with index `expected` at `at`, or
/// why there is none.
fn check_frame(bytes: &[u8], at: usize, expected: u64) -> Result<usize, BadFrame> {
    let damaged = |s: String| Err(BadFrame::Damaged(s));
    let rest = bytes.len() - at;
    if rest < FRAME_HEADER_LEN {
        return damaged(format!(
            "a record header is cut short ({rest} bytes before end of file)"
        ));
    }
    let len = u32_at(bytes, at + 4) as usize;
    let kind = bytes[at + 8];
    if kind != RECORD_ENTRY {
        return damaged(format!("unknown record type {kind}"));
    }
    if len > rest - FRAME_HEADER_LEN {
        return damaged(format!(
            "the record claims {len} bytes but the file ends before that"
        ));
    }
    let total = FRAME_HEADER_LEN + len;
    if crc32c::crc32c(&bytes[at + 4..at + total]) != u32_at(bytes, at) {
        return damaged("record checksum mismatch".into());
    }
    let index = u64_at(bytes, at + 9);
    if index != expected {
        return Err(BadFrame::OutOfOrder(format!(
            "record has index {index} where {expected} was expected"
        )));
    }
    Ok(total)
}

/// Whether any valid record starts in `bytes[from..to]`, with an index a
/// record written after position `from` could plausibly have. Used to tell a
/// torn tail (nothing valid follows) from corruption followed by good data.
fn valid_record_after(bytes: &[u8], from: usize, to: usize, next_index: u64) -> bool {
    // Every record is at least a header long, so indexes beyond this bound
    // cannot occur between `from` and `to`.
    let max_index = next_index.saturating_add(((to - from) / FRAME_HEADER_LEN) as u64 + 1);
    let mut at = from;
    while at + FRAME_HEADER_LEN <= to {
        if bytes[at + 8] == RECORD_ENTRY {
            let index = u64_at(bytes, at + 9);
            if (next_index..=max_index).contains(&index) && check_frame(bytes, at, index).is_ok() {
                return true;
            }
        }
        at += 1;
    }
    false
}

/// The payload length a frame header claims.
pub(crate) fn frame_payload_len(header: &[u8; FRAME_HEADER_LEN]) -> usize {
    u32_at(header, 4) as usize
}

/// Checks a whole frame read back by itself: its checksum, type and
/// index.
pub(crate) fn check_read_back(frame: &[u8], index: u64) -> Result<(), String> {
    match check_frame(frame, 0, index) {
        Ok(total) if total == frame.len() => Ok(()),
        Ok(total) => Err(format!(
            "the record is {total} bytes where {} were read",
            frame.len()
        )),
        Err(BadFrame::Damaged(reason) | BadFrame::OutOfOrder(reason)) => Err(reason),
    }
}

/// Scans a whole segment. `is_last` allows a torn tail; anywhere else every
/// byte after the last record must be zero.
pub(crate) fn scan(bytes: &[u8], first_index: u64, is_last: bool) -> Result<Scan, Corrupt> {
    check_header(bytes, first_index)?;
    // Past this point nothing but zeros: preallocated or never written.
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    let mut next = first_index;
    loop {
        if at >= data_end {
            return Ok(Scan {
                records,
                end_offset: at as u64,
                end: ScanEnd::Clean,
            });
        }
        match check_frame(bytes, at, next) {
            Ok(total) => {
                records.push((next, at + FRAME_HEADER_LEN..at + total));
                at += total;
                next += 1;
            }
            Err(BadFrame::OutOfOrder(reason)) => {
                return Err(Corrupt {
                    offset: at as u64,
                    reason,
                });
            }
            Err(BadFrame::Damaged(reason)) => {
                let offset = at as u64;
                if !is_last {
                    return Err(Corrupt { offset, reason });
                }
                if valid_record_after(bytes, at + 1, data_end, next) {
                    return Err(Corrupt {
                        offset,
                        reason: format!("{reason}, and valid records follow it"),
                    });
                }
                return Ok(Scan {
                    records,
                    end_offset: offset,
                    end: ScanEnd::Torn { offset, reason },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, payloads: &[&[u8]], zeros: usize) -> Vec<u8> {
        let mut b = encode_header(first).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut b, first + i as u64, p);
        }
        b.resize(b.len() + zeros, 0);
        b
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("wal-42.log"), None);
        assert_eq!(parse_segment_name("wal-00000000000000000042.log.tmp"), None);
    }

    #[test]
    fn scans_records_and_stops_at_zero_fill() {
        let b = segment(7, &[b"a", b"", b"ccc"], 100);
        let s = scan(&b, 7, false).unwrap();
        let got: Vec<_> = s
            .records
            .iter()
            .map(|(i, r)| (*i, b[r.clone()].to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(7, b"a".to_vec()), (8, vec![]), (9, b"ccc".to_vec())]
        );
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(s.end_offset as usize, b.len() - 100);
    }

    #[test]
    fn torn_tail_only_in_last_segment() {
        let mut b = segment(1, &[b"hello", b"world"], 0);
        let cut = b.len() - 3;
        b.truncate(cut);
        b.resize(cut + 50, 0);
        let s = scan(&b, 1, true).unwrap();
        assert_eq!(s.records.len(), 1);
        assert!(
            matches!(s.end, ScanEnd::Torn { offset, .. } if offset == (HEADER_LEN + 22) as u64)
        );
        assert_eq!(
            scan(&b, 1, false).unwrap_err().offset,
            (HEADER_LEN + 22) as u64
        );
    }

    #[test]
    fn flip_followed_by_valid_records_is_corruption() {
        let mut b = segment(1, &[b"hello", b"world", b"again"], 10);
        b[HEADER_LEN + 22 + FRAME_HEADER_LEN + 1] ^= 0x10;
        let e = scan(&b, 1, true).unwrap_err();
        assert_eq!(e.offset, (HEADER_LEN + 22) as u64);
        // A flipped length field too.
        let mut b = segment(1, &[b"hello", b"world", b"again"], 10);
        b[HEADER_LEN + 22 + 6] ^= 0x01;
        assert_eq!(
            scan(&b, 1, true).unwrap_err().offset,
            (HEADER_LEN + 22) as u64
        );
    }

    #[test]
    fn header_checks() {
        let b = segment(5, &[], 0);
        assert!(scan(&b, 6, true).unwrap_err().reason.contains("file name"));
        let mut c = b.clone();
        c[9] ^= 1;
        assert!(scan(&c, 5, true).is_err());
        assert!(scan(&b[..10], 5, true).is_err());
    }
}
