//! The binary encoding of everything the state machine persists or ships:
//! log entries (txns) and snapshots. Little-endian, length-prefixed, no
//! padding. Decoding never trusts a length: every one is checked against the
//! bytes that are actually there, so hostile or corrupt input gives an error,
//! never a panic or a huge allocation.

use crate::acl::{Acl, AclPolicy, Id, Identity};
use crate::session::{SessionLimits, SessionPassword};
use crate::state::StateConfig;
use crate::tree::{TreeConfig, TreeLimits};
use crate::txn::{CloseReason, CreateMode, Txn, WriteOp};
use crate::{Millis, Zxid};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("input ends at byte {at} while reading {what}")]
    Truncated { what: &'static str, at: usize },
    #[error("unknown {what} tag {tag} at byte {at}")]
    BadTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
    #[error("invalid UTF-8 in {what} at byte {at}")]
    BadUtf8 { what: &'static str, at: usize },
    #[error("{0}")]
    Corrupt(String),
    #[error("{extra} unexpected bytes after the end of the {what}")]
    Trailing { what: &'static str, extra: usize },
}

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Bytes that may be null (ZooKeeper's null data): null is written as
    /// the length `u32::MAX`, which no real value can have, so bytes
    /// written before null existed read the same.
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.bytes(v),
            None => self.u32(NULL_LEN),
        }
    }
    /// Bytes of a length both sides know, without a length prefix.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(
            u32::try_from(v.len())
                .expect("encoded values are bounded by configured limits far below 4 GiB"),
        );
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("encoded collections hold fewer than 2^32 items"));
    }
    /// LEB128: seven bits a byte, low first; small numbers take one byte.
    pub fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// Zigzag, then LEB128: small numbers of either sign take one byte.
    pub fn ivar(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads encoded values from a slice.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the whole input, for positions and errors:
    /// 0 unless the slice is a window of a longer input.
    base: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder::at(buf, 0)
    }

    /// Decodes `buf`, which starts at byte `base` of a longer input:
    /// positions (and those in errors) count from that input's start.
    pub fn at(buf: &'a [u8], base: usize) -> Self {
        Decoder { buf, pos: 0, base }
    }

    /// The position in the whole input.
    pub fn position(&self) -> usize {
        self.base + self.pos
    }

    /// The bytes of `buf` decoded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                what,
                at: self.position(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// `n` bytes whose length the caller knows.
    pub fn raw(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        self.take(n, what)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    /// A number written by [`Encoder::uvar`]; more than 64 bits is corrupt.
    pub fn uvar(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let at = self.position();
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt(format!(
            "{what} at byte {at} does not fit 64 bits"
        )))
    }

    /// A number written by [`Encoder::ivar`].
    pub fn ivar(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let v = self.uvar(what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// Bytes written by [`Encoder::opt_bytes`].
    pub fn opt_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, CodecError> {
        let n = self.u32(what)?;
        if n == NULL_LEN {
            return Ok(None);
        }
        self.take(n as usize, what).map(Some)
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let at = self.position();
        let raw = self.bytes(what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| CodecError::BadUtf8 { what, at })
    }
    /// A collection length, checked against the bytes left assuming each
    /// item takes at least `min_item_bytes`.
    pub fn len(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, CodecError> {
        let at = self.position();
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(CodecError::Truncated { what, at });
        }
        Ok(n)
    }
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CodecError::Trailing { what, extra }),
        }
    }
}

pub(crate) fn encode_acl(e: &mut Encoder, acl: &[Acl]) {
    e.len(acl.len());
    for entry in acl {
        e.u32(entry.perms);
        e.str(&entry.id.scheme);
        e.str(&entry.id.id);
    }
}

pub(crate) fn decode_acl(d: &mut Decoder<'_>) -> Result<Vec<Acl>, CodecError> {
    let n = d.len("acl", 12)?;
    (0..n)
        .map(|_| {
            let perms = d.u32("acl perms")?;
            let scheme = d.string("acl scheme")?;
            let id = d.string("acl id")?;
            Ok(Acl {
                perms,
                id: Id { scheme, id },
            })
        })
        .collect()
}

fn mode_tag(mode: CreateMode) -> u8 {
    match mode {
        CreateMode::Persistent => 0,
        CreateMode::Ephemeral => 1,
        CreateMode::PersistentSequential => 2,
        CreateMode::EphemeralSequential => 3,
        CreateMode::Container => 4,
        CreateMode::PersistentWithTtl => 5,
        CreateMode::PersistentSequentialWithTtl => 6,
    }
}

fn mode_from_tag(tag: u8, at: usize) -> Result<CreateMode, CodecError> {
    Ok(match tag {
        0 => CreateMode::Persistent,
        1 => CreateMode::Ephemeral,
        2 => CreateMode::PersistentSequential,
        3 => CreateMode::EphemeralSequential,
        4 => CreateMode::Container,
        5 => CreateMode::PersistentWithTtl,
        6 => CreateMode::PersistentSequentialWithTtl,
        tag => {
            return Err(CodecError::BadTag {
                what: "create mode",
                tag,
                at,
            });
        }
    })
}

fn encode_op(e: &mut Encoder, op: &WriteOp) {
    match op {
        WriteOp::Create {
            path,
            data,
            acl,
            mode,
            ttl_ms,
        } => {
            e.u8(1);
            e.str(path);
            e.opt_bytes(data.as_deref());
            encode_acl(e, acl);
            e.u8(mode_tag(*mode));
            e.i64(*ttl_ms);
        }
        WriteOp::Delete { path, version } => {
            e.u8(2);
            e.str(path);
            e.i32(*version);
        }
        WriteOp::SetData {
            path,
            data,
            version,
        } => {
            e.u8(3);
            e.str(path);
            e.opt_bytes(data.as_deref());
            e.i32(*version);
        }
        WriteOp::SetAcl { path, acl, version } => {
            e.u8(4);
            e.str(path);
            encode_acl(e, acl);
            e.i32(*version);
        }
        WriteOp::Check { path, version } => {
            e.u8(5);
            e.str(path);
            e.i32(*version);
        }
        WriteOp::Multi(ops) => {
            e.u8(6);
            e.len(ops.len());
            for op in ops {
                encode_op(e, op);
            }
        }
    }
}

fn decode_op(d: &mut Decoder<'_>, nested: bool) -> Result<WriteOp, CodecError> {
    let at = d.position();
    Ok(match d.u8("op tag")? {
        1 => {
            let path = d.string("create path")?;
            let data = d.opt_bytes("create data")?.map(<[u8]>::to_vec);
            let acl = decode_acl(d)?;
            let mode_at = d.position();
            let mode = mode_from_tag(d.u8("create mode")?, mode_at)?;
            let ttl_ms = d.i64("create ttl")?;
            WriteOp::Create {
                path,
                data,
                acl,
                mode,
                ttl_ms,
            }
        }
        2 => WriteOp::Delete {
            path: d.string("delete path")?,
            version: d.i32("delete version")?,
        },
        3 => WriteOp::SetData {
            path: d.string("setData path")?,
            data: d.opt_bytes("setData data")?.map(<[u8]>::to_vec),
            version: d.i32("setData version")?,
        },
        4 => WriteOp::SetAcl {
            path: d.string("setAcl path")?,
            acl: decode_acl(d)?,
            version: d.i32("setAcl version")?,
        },
        5 => WriteOp::Check {
            path: d.string("check path")?,
            version: d.i32("check version")?,
        },
        // Multis do not nest; refusing here also bounds the recursion.
        6 if !nested => {
            let n = d.len("multi ops", 5)?;
            WriteOp::Multi(
                (0..n)
                    .map(|_| decode_op(d, true))
                    .collect::<Result<_, _>>()?,
            )
        }
        tag => {
            return Err(CodecError::BadTag {
                what: "write op",
                tag,
                at,
            });
        }
    })
}

/// The length prefix that stands for null bytes.
const NULL_LEN: u32 = u32::MAX;

/// About the bytes [`encode_txn`] writes for `txn`, at least as many for
/// the common writes: a buffer sized by it is allocated once and holds
/// the encoding without the slack of a doubling buffer, which matters
/// because the replica keeps every proposal since its last snapshot.
pub fn txn_size_hint(txn: &Txn) -> usize {
    fn acl_size(acl: &[Acl]) -> usize {
        4 + acl
            .iter()
            .map(|a| 12 + a.id.scheme.len() + a.id.id.len())
            .sum::<usize>()
    }
    fn op_size(op: &WriteOp) -> usize {
        let path = 5 + op.path().len();
        match op {
            WriteOp::Create { data, acl, .. } => {
                path + 4 + data.as_ref().map_or(0, Vec::len) + acl_size(acl) + 9
            }
            WriteOp::SetData { data, .. } => path + 4 + data.as_ref().map_or(0, Vec::len) + 4,
            WriteOp::SetAcl { acl, .. } => path + acl_size(acl) + 4,
            WriteOp::Delete { .. } | WriteOp::Check { .. } => path + 4,
            WriteOp::Multi(ops) => 5 + ops.iter().map(op_size).sum::<usize>(),
        }
    }
    match txn {
        Txn::Write { identity, op, .. } => {
            13 + identity
                .ids
                .iter()
                .map(|id| 8 + id.scheme.len() + id.id.len())
                .sum::<usize>()
                + op_size(op)
        }
        Txn::Reap { path } => 5 + path.len(),
        _ => 64,
    }
}

/// Encodes a txn.
pub fn encode_txn(e: &mut Encoder, txn: &Txn) {
    match txn {
        Txn::Noop => e.u8(0),
        Txn::CreateSession {
            timeout_ms,
            password,
        } => {
            e.u8(6);
            e.i64(*timeout_ms);
            e.raw(password);
        }
        Txn::CloseSession { session, reason } => {
            e.u8(2);
            e.i64(*session);
            e.u8(match reason {
                CloseReason::ClientClosed => 0,
                CloseReason::Expired => 1,
            });
        }
        Txn::Write {
            session,
            identity,
            op,
        } => {
            e.u8(3);
            e.i64(*session);
            e.len(identity.ids.len());
            for id in &identity.ids {
                e.str(&id.scheme);
                e.str(&id.id);
            }
            encode_op(e, op);
        }
        Txn::Reap { path } => {
            e.u8(4);
            e.str(path);
        }
        Txn::SetConfig(config) => {
            e.u8(5);
            encode_config(e, config);
        }
        Txn::MoveSession { session, owner } => {
            e.u8(7);
            e.i64(*session);
            e.u64(*owner);
        }
        Txn::SetClusterId { id } => {
            e.u8(8);
            e.u64(*id);
        }
    }
}

/// Encodes the settings every replica checks txns against.
pub fn encode_config(e: &mut Encoder, config: &StateConfig) {
    let limits = &config.tree.limits;
    for v in [
        limits.max_data_bytes,
        limits.max_path_bytes,
        limits.max_children,
        limits.max_multi_ops,
    ] {
        e.u64(v as u64);
    }
    match &config.tree.acl.super_digest {
        Some(digest) => {
            e.u8(1);
            e.str(digest);
        }
        None => e.u8(0),
    }
    e.i64(config.sessions.min_timeout_ms);
    e.i64(config.sessions.max_timeout_ms);
    e.u64(config.sessions.max_sessions as u64);
}

/// Decodes [`encode_config`] output.
pub fn decode_config(d: &mut Decoder<'_>) -> Result<StateConfig, CodecError> {
    let mut limit = |what| -> Result<usize, CodecError> {
        let at = d.position();
        usize::try_from(d.u64(what)?)
            .map_err(|_| CodecError::Corrupt(format!("{what} at byte {at} does not fit")))
    };
    let limits = TreeLimits {
        max_data_bytes: limit("max data bytes")?,
        max_path_bytes: limit("max path bytes")?,
        max_children: limit("max children")?,
        max_multi_ops: limit("max multi ops")?,
    };
    let at = d.position();
    let super_digest = match d.u8("super digest flag")? {
        0 => None,
        1 => Some(d.string("super digest")?),
        tag => {
            return Err(CodecError::BadTag {
                what: "super digest flag",
                tag,
                at,
            });
        }
    };
    let min_timeout_ms = d.i64("min session timeout")?;
    let max_timeout_ms = d.i64("max session timeout")?;
    let at = d.position();
    let max_sessions = usize::try_from(d.u64("max sessions")?)
        .map_err(|_| CodecError::Corrupt(format!("max sessions at byte {at} does not fit")))?;
    Ok(StateConfig {
        tree: TreeConfig {
            limits,
            acl: AclPolicy { super_digest },
        },
        sessions: SessionLimits {
            min_timeout_ms,
            max_timeout_ms,
            max_sessions,
        },
    })
}

/// Decodes one txn from the decoder's position.
pub fn decode_txn(d: &mut Decoder<'_>) -> Result<Txn, CodecError> {
    let at = d.position();
    Ok(match d.u8("txn tag")? {
        0 => Txn::Noop,
        // Written before sessions had passwords.
        1 => Txn::CreateSession {
            timeout_ms: d.i64("session timeout")?,
            password: SessionPassword::default(),
        },
        6 => Txn::CreateSession {
            timeout_ms: d.i64("session timeout")?,
            password: d.array::<16>("session password")?,
        },
        2 => {
            let session = d.i64("session id")?;
            let reason_at = d.position();
            let reason = match d.u8("close reason")? {
                0 => CloseReason::ClientClosed,
                1 => CloseReason::Expired,
                tag => {
                    return Err(CodecError::BadTag {
                        what: "close reason",
                        tag,
                        at: reason_at,
                    });
                }
            };
            Txn::CloseSession { session, reason }
        }
        3 => {
            let session = d.i64("session id")?;
            let n = d.len("identity", 8)?;
            let ids = (0..n)
                .map(|_| {
                    Ok(Id {
                        scheme: d.string("id scheme")?,
                        id: d.string("id")?,
                    })
                })
                .collect::<Result<Vec<_>, CodecError>>()?;
            let op = decode_op(d, false)?;
            Txn::Write {
                session,
                identity: Identity { ids },
                op,
            }
        }
        4 => Txn::Reap {
            path: d.string("reap path")?,
        },
        5 => Txn::SetConfig(decode_config(d)?),
        7 => Txn::MoveSession {
            session: d.i64("moved session")?,
            owner: d.u64("session owner")?,
        },
        8 => Txn::SetClusterId {
            id: d.u64("cluster id")?,
        },
        tag => {
            return Err(CodecError::BadTag {
                what: "txn",
                tag,
                at,
            });
        }
    })
}

/// A committed log entry as the WAL stores it: its zxid, the leader's
/// timestamp and the txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub zxid: Zxid,
    pub time: Millis,
    pub txn: Txn,
}

impl LogEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.i64(self.zxid);
        e.i64(self.time);
        encode_txn(&mut e, &self.txn);
        e.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, CodecError> {
        let mut d = Decoder::new(bytes);
        let zxid = d.i64("zxid")?;
        let time = d.i64("time")?;
        let txn = decode_txn(&mut d)?;
        d.finish("log entry")?;
        Ok(LogEntry { zxid, time, txn })
    }
}

/// A txn as the leader proposes it for a log slot: who asked for it (the
/// node a client sent it to, and that node's request number, so that node
/// can answer its client once it applies the slot), the leader's timestamp
/// and the txn. The slot becomes the txn's zxid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub origin: u64,
    pub request: u64,
    pub time: Millis,
    pub txn: Txn,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        Proposal::encode_parts(self.origin, self.request, self.time, &self.txn)
    }

    /// Encodes a proposal from its parts, for a caller that keeps the txn.
    pub fn encode_parts(origin: u64, request: u64, time: Millis, txn: &Txn) -> Vec<u8> {
        let mut e = Encoder {
            buf: Vec::with_capacity(24 + txn_size_hint(txn)),
        };
        e.u64(origin);
        e.u64(request);
        e.i64(time);
        encode_txn(&mut e, txn);
        e.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Proposal, CodecError> {
        let mut d = Decoder::new(bytes);
        let origin = d.u64("origin")?;
        let request = d.u64("request")?;
        let time = d.i64("time")?;
        let txn = decode_txn(&mut d)?;
        d.finish("proposal")?;
        Ok(Proposal {
            origin,
            request,
            time,
            txn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every number reads back as written, at the length LEB128 gives.
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut e = Encoder::default();
            e.uvar(u);
            e.ivar(i);
            let mut d = Decoder::new(&e.buf);
            prop_assert_eq!(d.uvar("u")?, u);
            prop_assert_eq!(d.ivar("i")?, i);
            prop_assert!(d.finish("varints").is_ok());
            let width = |v: u64| (64 - v.leading_zeros()).max(1).div_ceil(7) as usize;
            prop_assert_eq!(e.buf.len(), width(u) + width(((i << 1) ^ (i >> 63)) as u64));
        }

        /// Any bytes give a number or an error, never a panic.
        #[test]
        fn any_bytes_decode_as_a_varint_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = Decoder::new(&bytes).uvar("u");
            let _ = Decoder::new(&bytes).ivar("i");
        }
    }

    #[test]
    fn a_varint_past_64_bits_is_corrupt() {
        let mut too_long = vec![0xff; 9];
        too_long.push(0x02);
        assert!(matches!(
            Decoder::new(&too_long).uvar("u"),
            Err(CodecError::Corrupt(_))
        ));
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(Decoder::new(&max).uvar("u"), Ok(u64::MAX));
    }

    fn sample_txns() -> Vec<Txn> {
        let acl = vec![
            Acl {
                perms: 31,
                id: Id::anyone(),
            },
            Acl {
                perms: 1,
                id: Id::new("ip", "10.0.0.0/8"),
            },
        ];
        vec![
            Txn::Noop,
            Txn::CreateSession {
                timeout_ms: 30_000,
                password: [7; 16],
            },
            Txn::CloseSession {
                session: 7,
                reason: CloseReason::Expired,
            },
            Txn::Reap { path: "/c".into() },
            Txn::SetClusterId {
                id: 0xdead_beef_0123_4567,
            },
            Txn::MoveSession {
                session: 12,
                owner: 3,
            },
            Txn::SetConfig(StateConfig::default()),
            Txn::SetConfig(StateConfig {
                tree: TreeConfig {
                    limits: TreeLimits {
                        max_data_bytes: 7,
                        ..TreeLimits::default()
                    },
                    acl: AclPolicy {
                        super_digest: Some("super:abc=".into()),
                    },
                },
                sessions: SessionLimits {
                    min_timeout_ms: 1,
                    max_timeout_ms: 2,
                    max_sessions: 3,
                },
            }),
            Txn::Write {
                session: 9,
                identity: Identity {
                    ids: vec![Id::new("digest", "a:b"), Id::new("ip", "127.0.0.1")],
                },
                op: WriteOp::Multi(vec![
                    WriteOp::Create {
                        path: "/x".into(),
                        data: Some(b"data".to_vec()),
                        acl: acl.clone(),
                        mode: CreateMode::PersistentSequentialWithTtl,
                        ttl_ms: 5,
                    },
                    WriteOp::Delete {
                        path: "/y".into(),
                        version: -1,
                    },
                    WriteOp::SetData {
                        path: "/z".into(),
                        data: None,
                        version: 4,
                    },
                    WriteOp::SetAcl {
                        path: "/z".into(),
                        acl,
                        version: 1,
                    },
                    WriteOp::Check {
                        path: "/z".into(),
                        version: 2,
                    },
                ]),
            },
        ]
    }

    #[test]
    fn entries_round_trip() {
        for (i, txn) in sample_txns().into_iter().enumerate() {
            let entry = LogEntry {
                zxid: i as i64 + 1,
                time: 1_700_000_000_000,
                txn,
            };
            assert_eq!(LogEntry::decode(&entry.encode()).unwrap(), entry);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for txn in sample_txns() {
            let bytes = LogEntry {
                zxid: 1,
                time: 2,
                txn,
            }
            .encode();
            for cut in 0..bytes.len() {
                assert!(LogEntry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    fn encoded_len(txn: &Txn) -> usize {
        let mut e = Encoder::default();
        encode_txn(&mut e, txn);
        e.buf.len()
    }

    /// The hint covers the writes it sizes, with little to spare.
    fn assert_hint_fits(txn: &Txn) -> Result<(), TestCaseError> {
        let (len, hint) = (encoded_len(txn), txn_size_hint(txn));
        prop_assert!(hint >= len, "hint {hint} under {len} for {txn:?}");
        prop_assert!(hint <= len + 16, "hint {hint} far over {len} for {txn:?}");
        Ok(())
    }

    #[test]
    fn the_size_hint_fits_every_write() {
        for txn in sample_txns() {
            if matches!(txn, Txn::Write { .. } | Txn::Reap { .. }) {
                assert_hint_fits(&txn).unwrap();
                // The proposal's buffer is allocated once, to about its size.
                let bytes = Proposal::encode_parts(1, 2, 3, &txn);
                assert!(
                    bytes.capacity() <= bytes.len() + 16,
                    "{} of {}",
                    bytes.capacity(),
                    bytes.len()
                );
            }
        }
    }

    proptest! {
        #[test]
        fn the_size_hint_fits_creates_and_sets(
            path in "/[a-z0-9/-]{0,40}",
            data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            acl in proptest::collection::vec(("[a-z]{1,8}", "[a-z0-9:.]{0,20}", any::<u32>()), 0..4),
            ids in proptest::collection::vec(("[a-z]{1,8}", "[a-z0-9:.]{0,20}"), 0..3),
            set in any::<bool>(),
        ) {
            let op = if set {
                WriteOp::SetData { path, data, version: -1 }
            } else {
                WriteOp::Create {
                    path,
                    data,
                    acl: acl
                        .into_iter()
                        .map(|(scheme, id, perms)| Acl { perms, id: Id::new(scheme, id) })
                        .collect(),
                    mode: CreateMode::Persistent,
                    ttl_ms: 0,
                }
            };
            let identity = Identity {
                ids: ids.into_iter().map(|(scheme, id)| Id::new(scheme, id)).collect(),
            };
            assert_hint_fits(&Txn::Write { session: 1, identity, op })?;
        }
    }

    #[test]
    fn proposals_round_trip_and_every_truncation_is_an_error() {
        for (i, txn) in sample_txns().into_iter().enumerate() {
            let proposal = Proposal {
                origin: 3,
                request: i as u64 + 10,
                time: 1_700_000_000_000,
                txn,
            };
            let bytes = proposal.encode();
            assert_eq!(Proposal::decode(&bytes).unwrap(), proposal);
            for cut in 0..bytes.len() {
                assert!(Proposal::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn nested_multi_is_refused() {
        let mut e = Encoder::default();
        e.i64(1);
        e.i64(1);
        e.u8(3);
        e.i64(0);
        e.len(0);
        e.u8(6);
        e.len(1);
        e.u8(6);
        e.len(0);
        assert!(matches!(
            LogEntry::decode(&e.buf),
            Err(CodecError::BadTag {
                what: "write op",
                ..
            })
        ));
    }

    proptest! {
        /// Fuzz: arbitrary bytes never panic the decoder.
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = LogEntry::decode(&bytes);
            let _ = Proposal::decode(&bytes);
        }

        /// Fuzz: flipping any byte of a valid entry gives an error or another valid entry, never a panic.
        #[test]
        fn decoding_mutated_entries_never_panics(index in 0usize..7, at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let txn = sample_txns().swap_remove(index);
            let mut bytes = LogEntry { zxid: 1, time: 2, txn }.encode();
            let i = at.index(bytes.len());
            bytes[i] = value;
            let _ = LogEntry::decode(&bytes);
        }
    }
}
