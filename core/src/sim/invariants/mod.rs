//! The properties the simulator checks while a run goes, one file each,
//! each checked at the event that could break it (a send, an apply, a
//! durable write, the end of a node's turn, a reply to a client) rather
//! than by a scan at the end, so that a violation names the tick and node
//! where it happened.
//!
//! | property | file | checked when |
//! |---|---|---|
//! | no two values are applied in one slot | `agreement` | a slot is applied |
//! | every node applies a contiguous prefix of the log | `prefix` | a node applies |
//! | every node's state machine is the first applier's at each slot | `same_state` | a node applies a batch; the run ends |
//! | a snapshot holds exactly the state at its slot | `snapshot` | a snapshot is encoded or installed |
//! | a `Promise`/`Accepted` leaves only once its disk holds what it vouches for | `durable_send` | a message is sent |
//! | a node's commit index never goes back; its durable promise never does | `monotonic` | a node's turn ends, a write becomes durable |
//! | `log start - 1 <= commit <= last accepted`, applied <= commit | `state_order` | a node's turn ends |
//! | a slot applied anywhere is on a majority of its voters' disks | `quorum_durable` | a slot is first applied |
//! | a linearizable read is answered only once its node applied everything applied anywhere before it was asked | `read_freshness` | a read is answered |
//! | no keep-alive is acknowledged after its session's close was committed | `session_freshness` | a keep-alive is acknowledged |
//! | a closed session's ephemerals are gone; every ephemeral's session is open | `ephemerals` | a close is applied; the run ends |
//! | sequential names are unique and increase, in commit order and in real time | `sequential` | a sequential create is first applied; the run ends |
//! | a watch event comes before a read reply that shows its change | `watch_order` | a read is answered |
//! | read your writes: a session's read is not served from a state older than a write it sent earlier and had acknowledged (pipelined or not) | `read_your_writes` | a read is answered; a write is acknowledged |
//! | a reap removes only an empty container that had a child, or a childless TTL node unmodified for its TTL at the txn's time | `reaping` | a reap is applied |
//! | the clients' operations on the registers form a linearizable history | `linearizable` | the run ends |
//!
//! Liveness (a healed cluster commits again in bounded time) is checked by
//! [`super::run`] itself.

pub(super) mod agreement;
pub(super) mod durable_send;
pub(super) mod ephemerals;
pub(super) mod linearizable;
pub(super) mod monotonic;
pub(super) mod prefix;
pub(super) mod quorum_durable;
pub(super) mod read_freshness;
pub(super) mod read_your_writes;
pub(super) mod reaping;
pub(super) mod same_state;
pub(super) mod sequential;
pub(super) mod session_freshness;
pub(super) mod snapshot;
pub(super) mod state_order;
pub(super) mod watch_order;
