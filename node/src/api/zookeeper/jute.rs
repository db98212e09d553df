//! Jute, ZooKeeper's serialization, both ways: big-endian ints and longs,
//! one-byte booleans, and length-prefixed buffers, strings and vectors
//! where a length of -1 means null. The reader never panics and never
//! allocates more than the bytes in front of it could hold, whatever the
//! lengths in a frame claim: a frame comes from an untrusted client.

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteError {
    #[error("frame ends inside {what} at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("{what} has length {len}, more than the {left} bytes left")]
    BadLength {
        what: &'static str,
        len: i32,
        left: usize,
    },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{what} is null where a value is required")]
    Null { what: &'static str },
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: i32 },
}

/// Reads jute values from one frame.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], JuteError> {
        if self.remaining() < n {
            return Err(JuteError::Truncated { what, at: self.pos });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], JuteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn int(&mut self, what: &'static str) -> Result<i32, JuteError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub fn long(&mut self, what: &'static str) -> Result<i64, JuteError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    pub fn boolean(&mut self, what: &'static str) -> Result<bool, JuteError> {
        Ok(self.take(1, what)?[0] != 0)
    }

    /// A length prefix: `None` for -1 (null), an error for other negative
    /// values and for lengths the rest of the frame cannot hold, counting
    /// at least `min_item` bytes per item.
    fn length(&mut self, what: &'static str, min_item: usize) -> Result<Option<usize>, JuteError> {
        let len = self.int(what)?;
        if len == -1 {
            return Ok(None);
        }
        let left = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n.saturating_mul(min_item.max(1)) <= left => Ok(Some(n)),
            _ => Err(JuteError::BadLength { what, len, left }),
        }
    }

    /// A buffer; null reads as `None`.
    pub fn buffer(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, JuteError> {
        match self.length(what, 1)? {
            None => Ok(None),
            Some(n) => self.take(n, what).map(Some),
        }
    }

    /// A string; null reads as `None`.
    pub fn ustring_opt(&mut self, what: &'static str) -> Result<Option<String>, JuteError> {
        match self.buffer(what)? {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| JuteError::NotUtf8 { what }),
        }
    }

    /// A string that must be present.
    pub fn ustring(&mut self, what: &'static str) -> Result<String, JuteError> {
        self.ustring_opt(what)?.ok_or(JuteError::Null { what })
    }

    /// A vector's item count, each item at least `min_item` bytes; null
    /// reads as empty, as ZooKeeper's server treats it.
    pub fn vector_len(&mut self, what: &'static str, min_item: usize) -> Result<usize, JuteError> {
        Ok(self.length(what, min_item)?.unwrap_or(0))
    }

    /// A vector of strings.
    pub fn strings(&mut self, what: &'static str) -> Result<Vec<String>, JuteError> {
        let n = self.vector_len(what, 4)?;
        (0..n).map(|_| self.ustring(what)).collect()
    }
}

/// Writes jute values into a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// A writer whose first four bytes are reserved for the frame length,
    /// filled in by [`Writer::into_frame`].
    pub fn frame() -> Self {
        Writer { buf: vec![0; 4] }
    }

    /// The frame: its length prefix set to the bytes after it.
    pub fn into_frame(mut self) -> Vec<u8> {
        let len = i32::try_from(self.buf.len() - 4).unwrap_or(i32::MAX);
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }

    pub fn int(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn long(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn boolean(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    fn len(&mut self, n: usize) {
        self.int(i32::try_from(n).unwrap_or(i32::MAX));
    }

    pub fn buffer(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }

    /// A buffer that may be null (length -1).
    pub fn buffer_opt(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.buffer(v),
            None => self.int(-1),
        }
    }

    pub fn ustring(&mut self, v: &str) {
        self.buffer(v.as_bytes());
    }

    pub fn vector_len(&mut self, n: usize) {
        self.len(n);
    }

    pub fn strings<S: AsRef<str>>(&mut self, items: &[S]) {
        self.vector_len(items.len());
        for item in items {
            self.ustring(item.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_round_trip() {
        let mut w = Writer::default();
        w.int(-7);
        w.long(1 << 40);
        w.boolean(true);
        w.buffer(b"data");
        w.ustring("/a/b");
        w.strings(&["x", "yz"]);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.int("i").unwrap(), -7);
        assert_eq!(r.long("l").unwrap(), 1 << 40);
        assert!(r.boolean("b").unwrap());
        assert_eq!(r.buffer("d").unwrap(), Some(&b"data"[..]));
        assert_eq!(r.ustring("s").unwrap(), "/a/b");
        assert_eq!(r.strings("v").unwrap(), vec!["x", "yz"]);
        assert!(r.is_empty());
    }

    #[test]
    fn null_and_hostile_lengths() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.buffer("d").unwrap(), None);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert!(matches!(r.buffer("d"), Err(JuteError::BadLength { .. })));
        // A vector claiming two billion items in a 4-byte frame is refused
        // before anything is allocated.
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(r.strings("v"), Err(JuteError::BadLength { .. })));
        let mut r = Reader::new(&[0, 0, 0, 2, 0xc3, 0x28]);
        assert!(matches!(r.ustring("s"), Err(JuteError::NotUtf8 { .. })));
        let mut r = Reader::new(&[0, 0, 0]);
        assert!(matches!(r.int("i"), Err(JuteError::Truncated { .. })));
    }

    #[test]
    fn frames_carry_their_length() {
        let mut w = Writer::frame();
        w.int(5);
        assert_eq!(w.into_frame(), vec![0, 0, 0, 4, 0, 0, 0, 5]);
    }

    proptest! {
        #[test]
        fn any_bytes_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.strings("v");
            let mut r = Reader::new(&bytes);
            let _ = r.buffer("b");
            let _ = r.ustring_opt("s");
            let _ = r.long("l");
        }
    }
}
