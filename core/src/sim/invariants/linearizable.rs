//! Linearizability of the clients' history: the writes and linearizable
//! reads of a whole run, checked per key against a register with versions
//! ([`crate::lincheck`]) once the run is over. It catches what the
//! per-event checks cannot see alone: a read that returned a value a later
//! write had already replaced, an acknowledged write that is lost.

use crate::lincheck::{Budget, History, Verdict, check};

/// Steps the search may take per key before it gives up; the simulator's
/// histories (unique values, few unknown outcomes) need far fewer.
const MAX_STEPS: u64 = 2_000_000;

/// The verdict on a finished run's history.
pub(in crate::sim) fn at_end(history: &History) -> Option<String> {
    match check(
        history,
        Budget {
            max_steps: MAX_STEPS,
        },
    ) {
        Verdict::Linearizable => None,
        Verdict::NotLinearizable { key, explanation } => Some(format!(
            "the clients' history is not linearizable on key {key}: {explanation}"
        )),
        Verdict::Unknown { key } => Some(format!(
            "the linearizability check of key {key} ran out of its budget ({MAX_STEPS} steps)"
        )),
    }
}
