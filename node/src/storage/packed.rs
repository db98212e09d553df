//! Snapshot compression: the state machine's snapshot bytes as LZ4 blocks,
//! in the file and on the wire alike.
//!
//! ```text
//! packed = "SYNODLZ4" frame*
//! frame  = kind:u8 raw_len:u32 packed_len:u32 bytes[packed_len]    (little-endian)
//! ```
//!
//! Kind 1 is an LZ4 block that decompresses to exactly `raw_len` bytes;
//! kind 0 holds the bytes as they are (a piece that LZ4 would not make
//! smaller). The raw stream is the state machine's snapshot encoding,
//! cut into frames of at most [`FRAME_RAW`] bytes wherever the encoder's
//! pieces end: frames are independent, so a file is written a piece at a
//! time as it is encoded and decoded a frame at a time as it is read.
//!
//! The packed stream replaces the raw one everywhere the node keeps or
//! sends a snapshot's state: its file, the replica's copy a lagging peer
//! is served from, and what that peer assembles. A stream is told from a
//! raw one by its magic (a raw snapshot starts with its format number, a
//! small little-endian u32, never these bytes), so a node reads both, and
//! `--snapshot-compression none` keeps writing raw ones for peers that
//! read only those.
//!
//! Why LZ4 blocks: decompression runs at memory speed, so a restart pays
//! little for it, and compression takes a fraction of the time the
//! encoder spends walking the tree. The stat fields, names and repeated
//! values of a tree compress well; random data stays as large as it was.

use std::io::{self, Read};

use synod_core::codec::CodecError;
use synod_core::paxos::SnapshotSource;
use synod_core::state::{StateConfig, StateMachine};
use synod_core::stream::DEFAULT_WINDOW;

use super::fs::read_slice_at;

/// What marks a packed stream.
pub const MAGIC: &[u8; 8] = b"SYNODLZ4";
/// Raw bytes per frame at most when packing.
pub const FRAME_RAW: usize = 1 << 20;
/// Raw bytes per frame at most when unpacking: a larger frame is damage,
/// refused before anything that size is allocated.
const MAX_FRAME_RAW: u32 = 16 << 20;
const FRAME_HEADER: usize = 9;
const KIND_STORED: u8 = 0;
const KIND_LZ4: u8 = 1;

/// Whether a node packs the snapshots it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SnapshotCompression {
    /// LZ4 blocks.
    #[default]
    Lz4,
    /// Raw bytes, readable by nodes that predate compression.
    None,
}

/// Appends the frames of `raw` to `out` (the magic is written once, by the
/// caller, before the first frame).
pub fn pack_into(out: &mut Vec<u8>, raw: &[u8]) {
    for piece in raw.chunks(FRAME_RAW) {
        let header_at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        let bound = lz4_flex::block::get_maximum_output_size(piece.len());
        out.resize(header_at + FRAME_HEADER + bound, 0);
        let packed = lz4_flex::block::compress_into(piece, &mut out[header_at + FRAME_HEADER..])
            .ok()
            .filter(|&n| n < piece.len());
        let (kind, len) = match packed {
            Some(n) => (KIND_LZ4, n),
            None => {
                out.truncate(header_at + FRAME_HEADER);
                out.extend_from_slice(piece);
                (KIND_STORED, piece.len())
            }
        };
        out.truncate(header_at + FRAME_HEADER + len);
        let header = &mut out[header_at..header_at + FRAME_HEADER];
        header[0] = kind;
        // Both lengths are at most FRAME_RAW's bound, far below 4 GiB.
        header[1..5].copy_from_slice(&(piece.len() as u32).to_le_bytes());
        header[5..9].copy_from_slice(&(len as u32).to_le_bytes());
    }
}

/// A whole raw snapshot as a packed stream.
pub fn pack(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 2 + MAGIC.len());
    out.extend_from_slice(MAGIC);
    pack_into(&mut out, raw);
    out
}

fn corrupt(why: String) -> CodecError {
    CodecError::Corrupt(why)
}

/// Reads `buf.len()` bytes at `offset` of the state.
type ReadAt<'a> = dyn Fn(u64, &mut [u8]) -> io::Result<()> + 'a;

/// Whether the `len` bytes of state hold a packed stream.
fn is_packed(len: u64, read_at: &ReadAt<'_>) -> Result<bool, CodecError> {
    if len < MAGIC.len() as u64 {
        return Ok(false);
    }
    let mut head = [0u8; 8];
    read_at(0, &mut head).map_err(|e| corrupt(format!("cannot read the snapshot: {e}")))?;
    Ok(&head == MAGIC)
}

/// One frame's header, checked against the stream's end.
fn frame_at(len: u64, at: u64, read_at: &ReadAt<'_>) -> Result<(u8, u32, u32), CodecError> {
    let mut header = [0u8; FRAME_HEADER];
    if len - at < FRAME_HEADER as u64 {
        return Err(corrupt(format!("snapshot frame header at {at} is cut off")));
    }
    read_at(at, &mut header).map_err(|e| corrupt(format!("cannot read the snapshot: {e}")))?;
    let kind = header[0];
    let raw = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let packed = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    let fits = len - at - FRAME_HEADER as u64 >= u64::from(packed);
    let sane = match kind {
        KIND_STORED => packed == raw,
        KIND_LZ4 => packed > 0,
        _ => false,
    };
    if !fits || !sane || raw > MAX_FRAME_RAW {
        return Err(corrupt(format!(
            "snapshot frame at {at} is malformed (kind {kind}, {raw} raw bytes, {packed} packed)"
        )));
    }
    Ok((kind, raw, packed))
}

/// The raw length of the packed stream of `len` bytes: the frames' raw
/// lengths, read from their headers alone.
fn raw_len(len: u64, read_at: &ReadAt<'_>) -> Result<u64, CodecError> {
    let mut at = MAGIC.len() as u64;
    let mut raw = 0u64;
    while at < len {
        let (_, frame_raw, packed) = frame_at(len, at, read_at)?;
        raw += u64::from(frame_raw);
        at += FRAME_HEADER as u64 + u64::from(packed);
    }
    Ok(raw)
}

/// Reads the raw stream out of a packed one, a frame at a time.
struct Unpacker<'a> {
    read_at: &'a ReadAt<'a>,
    len: u64,
    /// Where the next frame starts.
    at: u64,
    packed: Vec<u8>,
    raw: Vec<u8>,
    /// The first byte of `raw` not read yet.
    served: usize,
}

impl Unpacker<'_> {
    fn next_frame(&mut self) -> Result<(), CodecError> {
        let (kind, raw, packed) = frame_at(self.len, self.at, self.read_at)?;
        let body = self.at + FRAME_HEADER as u64;
        self.at = body + u64::from(packed);
        self.raw.clear();
        self.served = 0;
        let read = |buf: &mut [u8]| {
            (self.read_at)(body, buf).map_err(|e| corrupt(format!("cannot read the snapshot: {e}")))
        };
        if kind == KIND_STORED {
            self.raw.resize(raw as usize, 0);
            return read(&mut self.raw);
        }
        self.packed.resize(packed as usize, 0);
        read(&mut self.packed)?;
        self.raw.resize(raw as usize, 0);
        match lz4_flex::block::decompress_into(&self.packed, &mut self.raw) {
            Ok(n) if n == raw as usize => Ok(()),
            Ok(n) => Err(corrupt(format!(
                "snapshot frame before {} holds {n} bytes, not {raw}",
                self.at
            ))),
            Err(e) => Err(corrupt(format!(
                "snapshot frame before {} does not decompress: {e}",
                self.at
            ))),
        }
    }
}

impl Read for Unpacker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.served == self.raw.len() {
            if self.at >= self.len {
                return Ok(0);
            }
            self.next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        }
        let n = buf.len().min(self.raw.len() - self.served);
        buf[..n].copy_from_slice(&self.raw[self.served..self.served + n]);
        self.served += n;
        Ok(n)
    }
}

/// Decodes a state machine from snapshot state, packed or raw, read
/// through `read_at` a window at a time (never whole).
pub fn decode_state_at(
    config: StateConfig,
    len: u64,
    read_at: &ReadAt<'_>,
) -> Result<StateMachine, CodecError> {
    if !is_packed(len, read_at)? {
        let mut reader = RawReader {
            read_at,
            len,
            at: 0,
        };
        return StateMachine::decode_snapshot_reader(config, &mut reader, len);
    }
    let raw = raw_len(len, read_at)?;
    let mut reader = Unpacker {
        read_at,
        len,
        at: MAGIC.len() as u64,
        packed: Vec::new(),
        raw: Vec::new(),
        served: 0,
    };
    StateMachine::decode_snapshot_reader(config, &mut reader, raw)
}

/// Decodes a state machine from the state a snapshot source holds.
pub fn decode_state_source(
    config: StateConfig,
    source: &dyn SnapshotSource,
) -> Result<StateMachine, CodecError> {
    decode_state_at(config, source.len(), &|at, buf| {
        source.read_exact_at(at, buf)
    })
}

/// Decodes a state machine from state in memory, packed or raw.
pub fn decode_state(config: StateConfig, bytes: &[u8]) -> Result<StateMachine, CodecError> {
    if !bytes.starts_with(MAGIC) {
        return StateMachine::decode_snapshot(config, bytes);
    }
    decode_state_at(config, bytes.len() as u64, &|at, buf| {
        read_slice_at(bytes, at, buf)
    })
}

/// Raw state read through `read_at`, a window at a time.
struct RawReader<'a> {
    read_at: &'a ReadAt<'a>,
    len: u64,
    at: u64,
}

impl Read for RawReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.len - self.at).map_or(buf.len(), |left| left.min(buf.len()));
        let n = n.min(DEFAULT_WINDOW);
        (self.read_at)(self.at, &mut buf[..n])?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synod_core::acl::{Acl, Identity};
    use synod_core::state::StateConfig;
    use synod_core::txn::{CreateMode, Txn, WriteOp};

    /// The snapshot of a tree of `nodes` znodes under the root.
    fn machine_bytes(nodes: usize, value: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let mut machine = StateMachine::new(StateConfig::default());
        let before = machine.tree().len();
        for i in 0..nodes {
            let txn = Txn::Write {
                session: 0,
                identity: Identity::anonymous(),
                op: WriteOp::Create {
                    path: format!("/node-{i:07}"),
                    data: Some(value(i)),
                    acl: Acl::open(),
                    mode: CreateMode::Persistent,
                    ttl_ms: 0,
                },
            };
            machine.apply(i as i64 + 1, 1_000 + i as i64, &txn);
        }
        assert_eq!(machine.tree().len(), before + nodes, "every create applied");
        machine.encode_snapshot()
    }

    #[test]
    fn packed_and_raw_state_decode_to_the_same_tree() {
        let raw = machine_bytes(3000, |i| format!("value {i} of a test").into_bytes());
        let packed = pack(&raw);
        assert!(
            packed.len() < raw.len() / 2,
            "{} of {}",
            packed.len(),
            raw.len()
        );
        let mut from_raw = decode_state(StateConfig::default(), &raw).expect("raw decodes");
        let mut from_packed =
            decode_state(StateConfig::default(), &packed).expect("packed decodes");
        assert_eq!(from_raw.encode_snapshot(), raw);
        assert_eq!(from_packed.encode_snapshot(), raw);
    }

    #[test]
    fn incompressible_pieces_are_stored_and_frames_split_large_pieces() {
        let mut rng = synod_core::paxos::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut noise = Vec::with_capacity(FRAME_RAW * 2 + 16);
        while noise.len() < FRAME_RAW * 2 + 10 {
            noise.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        let packed = pack(&noise);
        // Three frames, each stored as it was.
        assert_eq!(packed.len(), MAGIC.len() + 3 * FRAME_HEADER + noise.len());
        let read_at = |at: u64, buf: &mut [u8]| read_slice_at(&packed, at, buf);
        assert_eq!(
            raw_len(packed.len() as u64, &read_at).expect("frames"),
            noise.len() as u64
        );
        let mut out = Vec::new();
        Unpacker {
            read_at: &read_at,
            len: packed.len() as u64,
            at: MAGIC.len() as u64,
            packed: Vec::new(),
            raw: Vec::new(),
            served: 0,
        }
        .read_to_end(&mut out)
        .expect("unpacks");
        assert_eq!(out, noise);
    }

    #[test]
    fn damage_is_an_error() {
        let raw = machine_bytes(200, |i| vec![b'v'; i % 50]);
        let packed = pack(&raw);
        // A frame cut short, a kind no writer uses, a raw length that lies.
        let cut = &packed[..packed.len() - 3];
        assert!(decode_state(StateConfig::default(), cut).is_err());
        let mut kind = packed.clone();
        kind[MAGIC.len()] = 7;
        assert!(decode_state(StateConfig::default(), &kind).is_err());
        let mut lying = packed.clone();
        lying[MAGIC.len() + 1] ^= 1;
        assert!(decode_state(StateConfig::default(), &lying).is_err());
    }

    proptest! {
        /// Fuzz: arbitrary bytes after the magic never panic the unpacker.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut stream = MAGIC.to_vec();
            stream.extend_from_slice(&bytes);
            let _ = decode_state(StateConfig::default(), &stream);
        }

        /// Fuzz: a valid stream with one byte changed never panics either.
        #[test]
        fn flipped_bytes_never_panic(at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let raw = machine_bytes(50, |i| vec![b'a' + (i % 20) as u8; 30]);
            let mut packed = pack(&raw);
            let i = MAGIC.len() + at.index(packed.len() - MAGIC.len());
            packed[i] ^= 1 << bit;
            let _ = decode_state(StateConfig::default(), &packed);
        }
    }
}
