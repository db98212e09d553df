//! A snapshot's bytes as the replica holds them, and the chunks of them it
//! sends.
//!
//! A node's snapshot can be hundreds of megabytes, and the replica keeps
//! its latest one only to stream it to peers that lag behind the log. So
//! the replica does not need the bytes, only their length and something
//! the shell can read them from: [`SnapshotBytes::Memory`] for the
//! simulator, the tests and a snapshot just received, or
//! [`SnapshotBytes::Source`], which the node backs with the snapshot file.
//! A chunk the replica sends names its bytes the same way ([`Chunk`]): the
//! shell reads a [`Chunk::Source`] when it encodes the frame
//! ([`super::codec::encode_message`]), so the replica never does I/O.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;

use bytes::Bytes;

/// Bytes the shell keeps outside the replica (the node: a snapshot file it
/// holds open) and reads on demand. Only the shell reads them; the replica
/// only asks for the length.
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// The number of bytes.
    fn len(&self) -> u64;

    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes from `offset` on; fails (never panics)
    /// when they cannot be read or run past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// The bytes of a snapshot. Cheap to clone: both kinds are shared.
#[derive(Clone)]
pub enum SnapshotBytes {
    /// In memory. `Bytes` takes an encoder's buffer as it is, where an
    /// `Arc<[u8]>` would copy a snapshot that can be hundreds of megabytes.
    Memory(Bytes),
    /// Kept by the shell and read when needed.
    Source(Arc<dyn SnapshotSource>),
}

impl SnapshotBytes {
    /// The number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            SnapshotBytes::Memory(bytes) => bytes.len() as u64,
            SnapshotBytes::Source(source) => source.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are in memory.
    pub fn in_memory(&self) -> bool {
        matches!(self, SnapshotBytes::Memory(_))
    }

    /// Bytes `offset..offset+len` (cut to the end), to send: a slice that
    /// shares the memory, or a reference into the source.
    pub fn chunk(&self, offset: u64, len: u64) -> Chunk {
        let total = self.len();
        let start = offset.min(total);
        let end = start.saturating_add(len).min(total);
        match self {
            // Both bounds are at most the length of bytes in memory.
            SnapshotBytes::Memory(bytes) => Chunk::Bytes(bytes.slice(start as usize..end as usize)),
            SnapshotBytes::Source(source) => Chunk::Source {
                source: Arc::clone(source),
                offset: start,
                len: end - start,
            },
        }
    }

    /// All the bytes in memory: shared when they are there already, read
    /// from the source otherwise (for the shell only: it is I/O).
    pub fn read_all(&self) -> io::Result<Bytes> {
        match self {
            SnapshotBytes::Memory(bytes) => Ok(bytes.clone()),
            SnapshotBytes::Source(source) => {
                let len = usize::try_from(source.len()).map_err(io::Error::other)?;
                let mut buf = vec![0; len];
                source.read_exact_at(0, &mut buf)?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

impl From<Bytes> for SnapshotBytes {
    fn from(bytes: Bytes) -> Self {
        SnapshotBytes::Memory(bytes)
    }
}

impl From<Vec<u8>> for SnapshotBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SnapshotBytes::Memory(bytes.into())
    }
}

/// The address of a source, for equality and hashing: two sources are the
/// same when they are one object (their bytes are not read to compare).
fn address(source: &Arc<dyn SnapshotSource>) -> usize {
    Arc::as_ptr(source).cast::<()>().addr()
}

/// Bytes in memory are equal by content; sources by identity, since
/// comparing them would mean reading them. Bytes in memory and a source are
/// never equal.
impl PartialEq for SnapshotBytes {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SnapshotBytes::Memory(a), SnapshotBytes::Memory(b)) => a == b,
            (SnapshotBytes::Source(a), SnapshotBytes::Source(b)) => address(a) == address(b),
            _ => false,
        }
    }
}

impl Eq for SnapshotBytes {}

impl Hash for SnapshotBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            SnapshotBytes::Memory(bytes) => {
                state.write_u8(0);
                bytes.hash(state);
            }
            SnapshotBytes::Source(source) => {
                state.write_u8(1);
                address(source).hash(state);
            }
        }
    }
}

/// The length only: a snapshot's bytes are far too many to print.
impl fmt::Debug for SnapshotBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotBytes::Memory(bytes) => write!(f, "Memory({} bytes)", bytes.len()),
            SnapshotBytes::Source(source) => write!(f, "Source({source:?})"),
        }
    }
}

/// The bytes of one chunk of a snapshot in a [`super::Message::Snapshot`].
#[derive(Clone)]
pub enum Chunk {
    /// The bytes themselves: received from a peer, or cut without a copy
    /// from a snapshot in memory.
    Bytes(Bytes),
    /// `len` bytes at `offset` of a source: read by the shell when it
    /// encodes the message, and never seen by a receiver (the wire carries
    /// bytes).
    Source {
        source: Arc<dyn SnapshotSource>,
        offset: u64,
        len: u64,
    },
}

impl Chunk {
    /// The number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(bytes) => bytes.len() as u64,
            Chunk::Source { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are at hand.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Chunk::Bytes(bytes) => Some(bytes),
            Chunk::Source { .. } => None,
        }
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(bytes: Vec<u8>) -> Self {
        Chunk::Bytes(bytes.into())
    }
}

impl From<Bytes> for Chunk {
    fn from(bytes: Bytes) -> Self {
        Chunk::Bytes(bytes)
    }
}

/// As [`SnapshotBytes`]: bytes by content, references by source, offset
/// and length.
impl PartialEq for Chunk {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Chunk::Bytes(a), Chunk::Bytes(b)) => a == b,
            (
                Chunk::Source {
                    source: a,
                    offset: a_offset,
                    len: a_len,
                },
                Chunk::Source {
                    source: b,
                    offset: b_offset,
                    len: b_len,
                },
            ) => address(a) == address(b) && (a_offset, a_len) == (b_offset, b_len),
            _ => false,
        }
    }
}

impl Eq for Chunk {}

impl Hash for Chunk {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Chunk::Bytes(bytes) => {
                state.write_u8(0);
                bytes.hash(state);
            }
            Chunk::Source {
                source,
                offset,
                len,
            } => {
                state.write_u8(1);
                (address(source), offset, len).hash(state);
            }
        }
    }
}

/// Small chunks print their bytes (tests compare them); a reference prints
/// where it points.
impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chunk::Bytes(bytes) if bytes.len() <= 32 => write!(f, "Bytes({:?})", &bytes[..]),
            Chunk::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Chunk::Source {
                source,
                offset,
                len,
            } => write!(f, "Source({source:?} @ {offset}, {len} bytes)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source over bytes in memory, as a shell's file would be.
    #[derive(Debug)]
    struct Held(Vec<u8>);

    impl SnapshotSource for Held {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }

        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let bytes = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn chunks_are_cut_to_the_end_and_share_or_refer() {
        let memory = SnapshotBytes::from(vec![1u8, 2, 3, 4, 5]);
        assert_eq!(memory.chunk(3, 10), Chunk::from(vec![4u8, 5]));
        assert_eq!(memory.chunk(9, 2), Chunk::from(Vec::new()));
        let source: Arc<dyn SnapshotSource> = Arc::new(Held(vec![1, 2, 3, 4, 5]));
        let held = SnapshotBytes::Source(Arc::clone(&source));
        let chunk = held.chunk(3, 10);
        assert_eq!((chunk.len(), chunk.bytes()), (2, None));
        assert_eq!(
            chunk,
            Chunk::Source {
                source,
                offset: 3,
                len: 2
            }
        );
        assert_eq!(held.read_all().unwrap(), memory.read_all().unwrap());
        assert_ne!(held, memory, "a source is never equal to bytes");
        assert_eq!(held.clone(), held);
    }
}
