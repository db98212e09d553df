//! Snapshot files: their on-disk format, the writer, and the reader that
//! serves a file's bytes on demand.
//!
//! ```text
//! snapshot = "SYNODSNP" version:u32 reserved:u32 index:u64 len:u64 payload_crc:u32 header_crc:u32 payload[len]
//! ```
//!
//! The header is 40 bytes, little-endian; `header_crc` is CRC32C of its first
//! 36 bytes and `payload_crc` CRC32C of the payload. The file is named
//! `snap-<index, 20 digits>.snap`. It is written under a temporary name
//! (`snap-writing-<n>.tmp`, the payload a piece at a time as it is encoded,
//! then the header), fsynced, renamed and its directory fsynced, so a file
//! with the final name was complete when it was written: any mismatch on
//! read is damage, never a torn write. Neither the writer nor the check at
//! recovery ([`check`]) holds more than a piece of the payload in memory.
//!
//! A [`SnapshotReader`] keeps a snapshot file open, so that the node can send
//! its bytes to lagging peers, and decode them, without holding them in
//! memory. The writer hands one out for the file it wrote, and recovery for
//! the file it chose.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::fs::{FileSystem, StorageFile};
use super::{StorageError, io_err};

pub(crate) const SNAPSHOT_PREFIX: &str = "snap-";
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snap";

const MAGIC: &[u8; 8] = b"SYNODSNP";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 40;

pub(crate) fn snapshot_name(index: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{index:020}{SNAPSHOT_SUFFIX}")
}

/// The index encoded in a snapshot's file name.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The pieces the payload is read in to check it: memory held at once.
const CHECK_PIECE: usize = 1 << 20;

/// The header of a snapshot whose payload is `parts`, one after another.
#[cfg(test)]
pub(crate) fn encode_header(index: u64, parts: &[&[u8]]) -> [u8; HEADER_LEN] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let payload_crc = parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    header(index, len as u64, payload_crc)
}

/// The header of a snapshot at `index` whose payload of `len` bytes has
/// the CRC32C `payload_crc`.
fn header(index: u64, len: u64, payload_crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&len.to_le_bytes());
    h[32..36].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&h[..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
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

/// Checks the snapshot file `file` of `len` bytes named for `index`,
/// reading its payload a piece at a time: its payload's length, or what
/// is wrong with it (damage: the outer error is a failure to read).
pub(crate) fn check(
    file: &dyn StorageFile,
    len: u64,
    index: u64,
) -> io::Result<Result<u64, String>> {
    if len < HEADER_LEN as u64 {
        return Ok(Err(format!("the header is cut short ({len} bytes)")));
    }
    let mut h = [0u8; HEADER_LEN];
    file.read_exact_at(0, &mut h)?;
    if &h[0..8] != MAGIC {
        return Ok(Err("this is not a Synod snapshot (bad magic)".into()));
    }
    if crc32c::crc32c(&h[..36]) != u32_at(&h, 36) {
        return Ok(Err("the header checksum does not match".into()));
    }
    let version = u32_at(&h, 8);
    if version != FORMAT_VERSION {
        return Ok(Err(format!(
            "snapshot format version {version} is not supported (this build reads version \
             {FORMAT_VERSION}); run the Synod version that wrote it"
        )));
    }
    let named = u64_at(&h, 16);
    if named != index {
        return Ok(Err(format!(
            "the header says index {named}, the file name says {index}"
        )));
    }
    let payload_len = u64_at(&h, 24);
    let actual = len - HEADER_LEN as u64;
    if payload_len != actual {
        return Ok(Err(format!(
            "the header says {payload_len} payload bytes, the file holds {actual}"
        )));
    }
    let mut piece = vec![0u8; CHECK_PIECE.min(usize::try_from(payload_len).unwrap_or(CHECK_PIECE))];
    let mut crc = 0;
    let mut at = 0;
    while at < payload_len {
        let n = piece
            .len()
            .min(usize::try_from(payload_len - at).unwrap_or(usize::MAX));
        file.read_exact_at(HEADER_LEN as u64 + at, &mut piece[..n])?;
        crc = crc32c::crc32c_append(crc, &piece[..n]);
        at += n as u64;
    }
    if crc != u32_at(&h, 32) {
        return Ok(Err("the payload checksum does not match".into()));
    }
    Ok(Ok(payload_len))
}

/// Writes snapshot files (temporary file, fsync, rename, directory fsync).
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
}

/// A snapshot file on disk, durable and in place, not yet registered.
#[derive(Debug)]
pub struct WrittenSnapshot {
    pub(super) index: u64,
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
    reader: SnapshotReader,
}

impl WrittenSnapshot {
    /// The file, open to read its payload.
    pub fn reader(&self) -> SnapshotReader {
        self.reader.clone()
    }
}

/// Numbers the temporary files of snapshots being written: a data
/// directory is locked to one process, and several snapshots can be
/// written at once (one superseded by a snapshot installed from a peer).
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

impl SnapshotWriter {
    /// Writes the snapshot whose payload is `parts`, one after another, so
    /// that a caller never has to join a large payload into one buffer.
    /// The file stays open for its [`WrittenSnapshot::reader`].
    pub fn write(&self, index: u64, parts: &[&[u8]]) -> Result<WrittenSnapshot, StorageError> {
        let mut file = self.begin()?;
        for part in parts {
            file.append(part)?;
        }
        file.finish(index)
    }

    /// Starts a snapshot file whose payload is appended a piece at a time
    /// ([`PartialSnapshot::append`]), under a temporary name until it is
    /// finished.
    pub fn begin(&self) -> Result<PartialSnapshot, StorageError> {
        let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            "{SNAPSHOT_PREFIX}writing-{n:020}{}",
            super::TMP_SUFFIX
        ));
        let file = self.fs.create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(PartialSnapshot {
            writer: self.clone(),
            tmp,
            file: Some(file),
            len: 0,
            crc: 0,
        })
    }
}

/// A snapshot file being written: its payload so far, under a temporary
/// name. Dropped unfinished, it is removed.
#[derive(Debug)]
pub struct PartialSnapshot {
    writer: SnapshotWriter,
    tmp: PathBuf,
    /// `None` once finished.
    file: Option<Box<dyn StorageFile>>,
    /// Payload bytes written, and their CRC32C.
    len: u64,
    crc: u32,
}

impl PartialSnapshot {
    /// Appends `bytes` to the payload.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = &self.tmp;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io_err("write", tmp)(io::Error::other("the file is finished")))?;
        file.write_all_at(HEADER_LEN as u64 + self.len, bytes)
            .map_err(io_err("write", tmp))?;
        self.len += bytes.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        Ok(())
    }

    /// The payload bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the file the snapshot at log position `index`: writes the
    /// header, fsyncs, renames it to its final name and fsyncs the
    /// directory. The file stays open for its [`WrittenSnapshot::reader`];
    /// on failure it is removed.
    pub fn finish(mut self, index: u64) -> Result<WrittenSnapshot, StorageError> {
        let dir = &self.writer.dir;
        let fs = &self.writer.fs;
        let path = dir.join(snapshot_name(index));
        let tmp = &self.tmp;
        let Some(mut file) = self.file.take() else {
            return Err(io_err("write", tmp)(io::Error::other(
                "the file is finished",
            )));
        };
        let written = (|| {
            file.write_all_at(0, &header(index, self.len, self.crc))
                .map_err(io_err("write", tmp))?;
            file.sync_all().map_err(io_err("fsync", tmp))?;
            // Renaming keeps the open file: it is the one now in place.
            fs.rename(tmp, &path).map_err(io_err("rename", tmp))?;
            fs.sync_dir(dir).map_err(io_err("fsync directory", dir))?;
            Ok(())
        })();
        match written {
            Ok(()) => {
                let reader = SnapshotReader::new(file, path.clone(), index, self.len);
                Ok(WrittenSnapshot {
                    index,
                    path,
                    bytes: HEADER_LEN as u64 + self.len,
                    reader,
                })
            }
            Err(e) => {
                let _ = fs.remove(tmp);
                Err(e)
            }
        }
    }
}

impl Drop for PartialSnapshot {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.writer.fs.remove(&self.tmp);
        }
    }
}

/// A snapshot file held open to read its payload on demand. Cheap to clone
/// (the clones share one open file). Holding it keeps the bytes readable
/// after the purge removes the file's name: an open file lives until it is
/// closed, so a transfer in flight survives the purge.
#[derive(Debug, Clone)]
pub struct SnapshotReader {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    index: u64,
    payload_len: u64,
}

impl SnapshotReader {
    /// Opens the snapshot at `index` whose payload (checked already) is
    /// `payload_len` bytes long.
    pub(super) fn new(
        file: Box<dyn StorageFile>,
        path: PathBuf,
        index: u64,
        payload_len: u64,
    ) -> Self {
        SnapshotReader {
            file: Arc::from(file),
            path,
            index,
            payload_len,
        }
    }

    /// The snapshot's log index.
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Fills `buf` with the payload's bytes from `offset` on; bytes past
    /// the payload's end are an error, not the next file's.
    pub fn read_payload_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let in_payload = offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.payload_len);
        if !in_payload {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset} are past the end of the {}-byte payload of {}",
                    buf.len(),
                    self.payload_len,
                    self.path.display()
                ),
            ));
        }
        self.file.read_exact_at(HEADER_LEN as u64 + offset, buf)
    }
}

/// The same open file, not the same contents: a reader is compared only in
/// tests of what recovery found.
impl PartialEq for SnapshotReader {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }
}

impl Eq for SnapshotReader {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in memory.
    #[derive(Debug)]
    struct Held(Vec<u8>);

    impl StorageFile for Held {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let start = offset as usize;
            let bytes = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(bytes);
            Ok(())
        }
        fn write_all_at(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("read only"))
        }
        fn set_len(&mut self, _: u64) -> io::Result<()> {
            Err(io::Error::other("read only"))
        }
        fn allocate(&mut self, _: u64) -> io::Result<()> {
            Err(io::Error::other("read only"))
        }
        fn sync_data(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn sync_all(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn file(index: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = encode_header(index, &[payload]).to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn checked(f: Vec<u8>, index: u64) -> Result<u64, String> {
        let len = f.len() as u64;
        check(&Held(f), len, index).expect("in memory")
    }

    #[test]
    fn round_trip_and_damage() {
        assert_eq!(checked(file(9, b"state"), 9), Ok(5));
        assert_eq!(parse_snapshot_name(&snapshot_name(9)), Some(9));
        assert!(checked(file(9, b"state"), 8).is_err());
        for at in 0..45 {
            let mut f = file(9, b"state");
            f[at] ^= 0x04;
            assert!(checked(f, 9).is_err(), "flip at {at} went unnoticed");
        }
        let mut f = file(9, b"state");
        f.pop();
        assert!(checked(f, 9).is_err());
    }

    /// A payload longer than the pieces it is checked in: a flipped bit
    /// anywhere in it is found, in the last piece too.
    #[test]
    fn a_payload_is_checked_piece_by_piece() {
        let payload: Vec<u8> = (0..CHECK_PIECE * 2 + 77).map(|i| i as u8).collect();
        assert_eq!(checked(file(3, &payload), 3), Ok(payload.len() as u64));
        for at in [0, CHECK_PIECE - 1, CHECK_PIECE, CHECK_PIECE * 2 + 76] {
            let mut f = file(3, &payload);
            f[HEADER_LEN + at] ^= 0x10;
            assert_eq!(
                checked(f, 3),
                Err("the payload checksum does not match".into()),
                "flip at {at}"
            );
        }
    }
}
