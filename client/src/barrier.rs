//! The ordering barrier between watch events and responses.
//!
//! Events and responses travel on separate HTTP/2 streams, so a response can
//! overtake the event that precedes it. Every response says how many events
//! the server had queued for the session (`ResponseHeader.watch_seq`); the
//! client holds the response back until it has received that many events.
//! The event task is the only writer; any number of callers wait.

use std::time::Duration;

use tokio::sync::watch;

/// How an incoming event's sequence number relates to what was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// The next number, as expected.
    Next,
    /// Newer, but some numbers in between never arrived.
    Gap { expected: u64 },
    /// Already received (a resend after reconnecting).
    Duplicate,
}

/// Counts received events; the count is the last sequence number seen,
/// since the server numbers a session's events 1, 2, 3, ...
#[derive(Debug)]
pub(crate) struct SeqBarrier {
    received: watch::Sender<u64>,
}

impl SeqBarrier {
    pub(crate) fn new() -> SeqBarrier {
        SeqBarrier {
            received: watch::Sender::new(0),
        }
    }

    /// The highest sequence number received so far.
    pub(crate) fn received(&self) -> u64 {
        *self.received.borrow()
    }

    /// Classifies `seq` without recording it: the caller hands the event to
    /// its subscribers first and only then calls [`SeqBarrier::advance`], so
    /// that a waiter released by the barrier finds the event already queued.
    pub(crate) fn classify(&self, seq: u64) -> Observed {
        let last = self.received();
        if seq <= last {
            Observed::Duplicate
        } else if seq == last + 1 {
            Observed::Next
        } else {
            Observed::Gap { expected: last + 1 }
        }
    }

    /// Records that every event up to `seq` has been delivered.
    pub(crate) fn advance(&self, seq: u64) {
        self.received.send_if_modified(|last| {
            if seq > *last {
                *last = seq;
                true
            } else {
                false
            }
        });
    }

    /// Adopts another count: a server that did not number the events
    /// received so far (another node, or one that restarted) counts this
    /// session's events from its own `seq`.
    pub(crate) fn rebase(&self, seq: u64) {
        self.received.send_replace(seq);
    }

    /// Waits until at least `target` events were received; false when
    /// `timeout` passed first.
    pub(crate) async fn wait_for(&self, target: u64, timeout: Duration) -> bool {
        let mut rx = self.received.subscribe();
        let reached = async move { rx.wait_for(|last| *last >= target).await.is_ok() };
        // The sender lives as long as `self`, so `wait_for` only ends by
        // reaching the target.
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn classifies_sequence_numbers() {
        let b = SeqBarrier::new();
        assert_eq!(b.classify(1), Observed::Next);
        b.advance(1);
        assert_eq!(b.classify(1), Observed::Duplicate);
        assert_eq!(b.classify(0), Observed::Duplicate);
        assert_eq!(b.classify(2), Observed::Next);
        assert_eq!(b.classify(5), Observed::Gap { expected: 2 });
        b.advance(5);
        assert_eq!(b.received(), 5);
        b.advance(3);
        assert_eq!(b.received(), 5, "the count never goes back");
        b.rebase(2);
        assert_eq!(b.received(), 2, "except when another server counts");
        assert_eq!(b.classify(3), Observed::Next);
    }

    #[tokio::test(start_paused = true)]
    async fn satisfied_target_returns_at_once() {
        let b = SeqBarrier::new();
        assert!(b.wait_for(0, Duration::from_millis(1)).await);
        b.advance(3);
        assert!(b.wait_for(2, Duration::from_millis(1)).await);
        assert!(b.wait_for(3, Duration::from_millis(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_events_arrive() {
        let b = Arc::new(SeqBarrier::new());
        let waiter = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.wait_for(2, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        b.advance(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "released before the second event");
        b.advance(2);
        assert!(matches!(waiter.await, Ok(true)));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_when_events_never_come() {
        let b = SeqBarrier::new();
        b.advance(1);
        let start = tokio::time::Instant::now();
        assert!(!b.wait_for(2, Duration::from_secs(3)).await);
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
