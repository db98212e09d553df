//! Input to decode that is either all in memory or read from a reader a
//! window at a time, so that a snapshot of hundreds of megabytes can be
//! decoded from its file with a buffer of about a megabyte.
//!
//! The decoders in [`crate::codec`] work on slices. [`Input`] hands them
//! the unread part of its window; a value that runs past the window's end
//! fails with [`CodecError::Truncated`], and the caller refills the window
//! ([`Input::refill`]: the unread bytes move to the front, and the window
//! doubles when one value fills it all) and decodes the value again from
//! its start. [`Input::decode`] does that for values that own their data.
//! Only reading is I/O here; what is read, and when, depends on the bytes
//! alone.

use std::io::Read;

use crate::codec::{CodecError, Decoder};

/// The window a reader fills, unless the input is shorter.
pub const DEFAULT_WINDOW: usize = 1 << 20;

/// Bytes to decode; see the module documentation.
pub struct Input<'a> {
    source: Source<'a>,
    /// The first unread byte of the window.
    start: usize,
    /// Where the window starts in the whole input.
    base: u64,
    /// The length of the whole input.
    len: u64,
}

enum Source<'a> {
    /// All the bytes: the window is the whole input.
    Slice(&'a [u8]),
    /// A reader of `len` bytes; the window is `buf[..end]`, and `read`
    /// bytes were read in all.
    Reader {
        reader: &'a mut dyn Read,
        buf: Vec<u8>,
        end: usize,
        read: u64,
    },
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("position", &self.position())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A position in the input as a `usize`, for [`Decoder`] positions (a
/// snapshot larger than the address space cannot be decoded anyway).
fn offset(at: u64) -> usize {
    usize::try_from(at).unwrap_or(usize::MAX)
}

impl<'a> Input<'a> {
    /// All of `bytes`, in memory already.
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        Input {
            source: Source::Slice(bytes),
            start: 0,
            base: 0,
            len: bytes.len() as u64,
        }
    }

    /// The `len` bytes `reader` gives, read `window` bytes at a time (more
    /// only when a single value is larger).
    pub fn from_reader(reader: &'a mut dyn Read, len: u64, window: usize) -> Self {
        let window = usize::try_from(len).map_or(window, |len| len.min(window));
        Input {
            source: Source::Reader {
                reader,
                buf: vec![0; window.max(16)],
                end: 0,
                read: 0,
            },
            start: 0,
            base: 0,
            len,
        }
    }

    /// The unread bytes at hand.
    pub fn unread(&self) -> &[u8] {
        match &self.source {
            Source::Slice(bytes) => &bytes[self.start..],
            Source::Reader { buf, end, .. } => &buf[self.start..*end],
        }
    }

    /// A decoder of the unread bytes at hand, whose positions count from
    /// the start of the input.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder::at(self.unread(), offset(self.position()))
    }

    /// Marks `n` bytes at hand as read.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.start + self.unread().len());
    }

    /// The position of the first unread byte in the input.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The bytes left in the whole input, at hand or not.
    pub fn remaining(&self) -> u64 {
        self.len - self.position()
    }

    /// Brings more of the input into the window; false when there is no
    /// more (all of it is at hand). A reader that ends before the input's
    /// length is a truncated input once more is needed; one that fails is
    /// reported as corrupt input with the reason.
    pub fn refill(&mut self) -> Result<bool, CodecError> {
        let at = self.position();
        let len = self.len;
        let Source::Reader {
            reader,
            buf,
            end,
            read,
        } = &mut self.source
        else {
            return Ok(false);
        };
        if *read >= len {
            return Ok(false);
        }
        let unread = *end - self.start;
        buf.copy_within(self.start..*end, 0);
        self.base += self.start as u64;
        self.start = 0;
        *end = unread;
        if unread == buf.len() {
            // One value fills the whole window: make room for it.
            let grown = (buf.len() * 2).min(offset(len - self.base));
            buf.resize(grown.max(buf.len() + 1), 0);
        }
        let wanted = offset(len - *read).min(buf.len() - *end);
        let mut filled = 0;
        while filled < wanted {
            match reader.read(&mut buf[*end + filled..*end + wanted]) {
                // What was read may be enough; if not, the next refill
                // finds nothing either.
                Ok(0) if filled > 0 => break,
                Ok(0) => {
                    return Err(CodecError::Truncated {
                        what: "input shorter than its length",
                        at: offset(*read),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(CodecError::Corrupt(format!(
                        "cannot read the input at byte {}: {e}",
                        *read + filled as u64
                    )));
                }
            }
        }
        *end += filled;
        *read += filled as u64;
        debug_assert!(filled > 0, "more to read, and room for it, at {at}");
        Ok(true)
    }

    /// Decodes one value with `f`, refilling the window and decoding again
    /// while `f` runs past its end; the value must own its data. `f` may
    /// run more than once, so it must have no effects besides its result.
    pub fn decode<T>(
        &mut self,
        mut f: impl FnMut(&mut Decoder<'_>) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        loop {
            let mut d = self.decoder();
            match f(&mut d) {
                Ok(value) => {
                    let used = d.consumed();
                    self.consume(used);
                    return Ok(value);
                }
                Err(CodecError::Truncated { .. }) if self.refill()? => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Fails unless every byte of the input was decoded.
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CodecError::Trailing {
                what,
                extra: offset(extra),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;

    /// A reader that hands out at most `step` bytes per read, as a file or
    /// a pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn values() -> (Vec<Vec<u8>>, Vec<u8>) {
        let values: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![i as u8; (i as usize * 37) % 300])
            .collect();
        let mut e = Encoder::default();
        for v in &values {
            e.bytes(v);
        }
        (values, e.buf)
    }

    fn decode_all(input: &mut Input<'_>) -> Result<Vec<Vec<u8>>, CodecError> {
        let mut out = Vec::new();
        while input.remaining() > 0 {
            out.push(input.decode(|d| d.bytes("value").map(<[u8]>::to_vec))?);
        }
        input.finish("values")?;
        Ok(out)
    }

    #[test]
    fn a_small_window_decodes_what_the_slice_does() {
        let (values, bytes) = values();
        assert_eq!(
            decode_all(&mut Input::from_slice(&bytes)).expect("slice"),
            values
        );
        for (window, step) in [(16, 1), (16, 7), (100, 3), (1 << 20, 4096)] {
            let mut reader = Trickle {
                bytes: &bytes,
                step,
            };
            let mut input = Input::from_reader(&mut reader, bytes.len() as u64, window);
            assert_eq!(
                decode_all(&mut input).expect("reader"),
                values,
                "window {window}, reads of {step}"
            );
        }
    }

    #[test]
    fn a_reader_that_ends_early_is_a_truncated_input() {
        let (_, bytes) = values();
        let cut = &bytes[..bytes.len() - 10];
        let mut reader = Trickle {
            bytes: cut,
            step: 64,
        };
        let mut input = Input::from_reader(&mut reader, bytes.len() as u64, 64);
        assert!(matches!(
            decode_all(&mut input),
            Err(CodecError::Truncated { .. })
        ));
        let mut input = Input::from_slice(cut);
        assert!(matches!(
            decode_all(&mut input),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn positions_count_from_the_start_of_the_input() {
        let mut e = Encoder::default();
        e.bytes(&[1; 40]);
        e.u8(0xff);
        let mut reader = Trickle {
            bytes: &e.buf,
            step: 8,
        };
        let mut input = Input::from_reader(&mut reader, e.buf.len() as u64 + 5, 16);
        input
            .decode(|d| d.bytes("value").map(<[u8]>::to_vec))
            .expect("the value");
        assert_eq!(input.position(), 44);
        match input.decode(|d| d.u32("a u32")) {
            Err(CodecError::Truncated { at, .. }) => assert_eq!(at, 45, "where the reader ended"),
            other => panic!("{other:?}"),
        }
    }
}
