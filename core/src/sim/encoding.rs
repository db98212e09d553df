//! The simulated state machine's snapshot bytes: 8 bytes per slot, 0 for a
//! no-op, the value for data, the top bit and two id masks for a
//! membership change.

use bytes::Bytes;

use crate::paxos::{Membership, NodeId, Value};

const CONFIG_TAG: u64 = 1 << 63;

fn id_mask(ids: &[NodeId]) -> u64 {
    ids.iter().fold(0, |m, id| m | (1 << (id % 32)))
}

fn mask_ids(mask: u64) -> Vec<NodeId> {
    (0..32).filter(|i| mask & (1 << i) != 0).collect()
}

/// The simulated state machine's snapshot: 8 bytes per slot, 0 for a
/// no-op, the top bit and two id masks for a membership change.
pub(super) fn encode(values: &[Value<u64>]) -> Bytes {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        let x = match v {
            Value::Noop => 0,
            Value::Data(x) => *x,
            Value::Config(m) => CONFIG_TAG | id_mask(&m.voters) | (id_mask(&m.observers) << 32),
        };
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}

pub(super) fn decode(data: &[u8]) -> Vec<Value<u64>> {
    data.chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            match u64::from_le_bytes(b) {
                0 => Value::Noop,
                x if x & CONFIG_TAG != 0 => Value::Config(Box::new(Membership::new(
                    mask_ids(x & 0xffff_ffff),
                    mask_ids((x & !CONFIG_TAG) >> 32),
                ))),
                x => Value::Data(x),
            }
        })
        .collect()
}
