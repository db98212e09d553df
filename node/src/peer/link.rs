//! The outbound link to one peer: a task that dials it, keeps one gRPC
//! client stream open and forwards the link's queue into it, reconnecting
//! with backoff. It never waits on the stream, and it gives up a stream
//! that stops moving (HTTP/2 pings for the connection, a stall watch for
//! the stream), so a link always comes back once its peer can be reached.
//! Its counters are what `/metrics` shows of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use synod_proto::v1::PeerFrame;
use synod_proto::v1::peer_client::PeerClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use super::{NodeId, PeerConfig};

/// What the link to one peer has done, for `/metrics`: a link whose
/// drops climb while its streams do not is one that cannot reach its peer.
#[derive(Debug, Default)]
pub(super) struct LinkCounters {
    /// Frames handed to a stream to the peer.
    sent: AtomicU64,
    /// Frames dropped because the queue to the peer was full.
    dropped: AtomicU64,
    /// Streams opened to the peer (one per connection).
    streams: AtomicU64,
    /// What the dialing task is doing now (a [`LinkState`]).
    state: AtomicU8,
}

/// What the task that keeps the link to one peer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// No stream, and nothing to send.
    Idle = 0,
    /// Opening a connection.
    Connecting = 1,
    /// Waiting before the next attempt.
    BackingOff = 2,
    /// A stream is open and takes frames.
    Streaming = 3,
    /// A stream is open but full: the peer has not read what was sent.
    Stalled = 4,
}

impl LinkCounters {
    fn set(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

/// One link's counters as read at a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub peer: NodeId,
    pub sent: u64,
    pub dropped: u64,
    pub streams: u64,
    /// Frames received from the peer (on any of its streams).
    pub received: u64,
    /// The [`LinkState`] as a number.
    pub state: u8,
}

/// The queue to one peer and its counters.
#[derive(Debug)]
pub(super) struct Link {
    queue: mpsc::Sender<Vec<u8>>,
    counters: Arc<LinkCounters>,
}

impl Link {
    /// A link to `to` at `address`, with its dialing task started.
    pub(super) fn dial(config: &PeerConfig, to: NodeId, address: String) -> Link {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(LinkCounters::default());
        tokio::spawn(dial(config.clone(), to, address, rx, Arc::clone(&counters)));
        Link { queue, counters }
    }

    /// Queues `payload` without waiting; a full queue drops it, counted.
    pub(super) fn send(&self, payload: Vec<u8>) -> Result<(), ()> {
        self.queue.try_send(payload).map_err(|_| {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// The link's counters now, with `received` from the inbound side.
    pub(super) fn stats(&self, peer: NodeId, received: u64) -> LinkStats {
        LinkStats {
            peer,
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            streams: self.counters.streams.load(Ordering::Relaxed),
            received,
            state: self.counters.state.load(Ordering::Relaxed),
        }
    }
}

/// Keeps a stream open to one peer, reconnecting with backoff, and forwards
/// its queue into it. Ends when every sender is dropped.
async fn dial(
    config: PeerConfig,
    to: NodeId,
    address: String,
    mut queue: mpsc::Receiver<Vec<u8>>,
    counters: Arc<LinkCounters>,
) {
    let mut backoff = config.backoff_min;
    let uri = format!("http://{address}");
    // The frame that triggered a connection attempt, kept across retries.
    let mut held = None;
    loop {
        // A connection is made only when there is something to send, so an
        // idle or absent peer costs nothing.
        let first = match held.take() {
            Some(first) => first,
            None => {
                counters.set(LinkState::Idle);
                match queue.recv().await {
                    Some(first) => first,
                    None => return,
                }
            }
        };
        counters.set(LinkState::Connecting);
        let channel = match connect(&config, to, &address, &uri).await {
            Some(Ok(channel)) => channel,
            Some(Err(error)) => {
                tracing::debug!(peer = to, %address, %error, ?backoff, "peer unreachable; retrying");
                held = Some(first);
                back_off(&counters, &mut backoff, config.backoff_max).await;
                continue;
            }
            None => {
                // Misconfigured for good: drain the queue so senders never
                // block, and stop.
                while queue.recv().await.is_some() {}
                return;
            }
        };
        counters.streams.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = to, %address, "connected to peer");
        let opened = tokio::time::Instant::now();
        match stream(&config, to, &address, channel, first, &mut queue, &counters).await {
            StreamEnd::QueueClosed => return,
            StreamEnd::Broken => {}
        }
        // A stream that broke soon after it opened (a peer that refuses
        // streams, or a network that cuts them) is retried after a pause,
        // not at once: that would spin and flood the log. A stream that
        // lived long was a working link; its successor is tried at once.
        if opened.elapsed() < config.backoff_max {
            back_off(&counters, &mut backoff, config.backoff_max).await;
        } else {
            backoff = config.backoff_min;
        }
    }
}

/// Waits `backoff`, then doubles it up to `max`.
async fn back_off(counters: &LinkCounters, backoff: &mut Duration, max: Duration) {
    counters.set(LinkState::BackingOff);
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(max);
}

/// Opens a channel to the peer: `None` when it never can be (a bad address,
/// TLS that cannot be set up), which is logged here.
async fn connect(
    config: &PeerConfig,
    to: NodeId,
    address: &str,
    uri: &str,
) -> Option<Result<tonic::transport::Channel, tonic::transport::Error>> {
    let endpoint = match tonic::transport::Endpoint::from_shared(uri.to_owned()) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::error!(peer = to, %address, %error, "peer address is not a valid URI; frames to it are dropped");
            return None;
        }
    };
    // HTTP/2 pings find a connection that no longer reaches the peer (a
    // host that vanished without a reset, a network that drops packets)
    // long before TCP would give up on it.
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(config.keepalive)
        .keep_alive_timeout(config.keepalive)
        .keep_alive_while_idle(true);
    match &config.tls {
        None => Some(endpoint.connect().await),
        Some(tls) => match tls.client_config(&[b"h2"]) {
            Ok(client) => Some(
                endpoint
                    .connect_with_connector(synod_tls::connect::Connector::new(client))
                    .await,
            ),
            Err(error) => {
                tracing::error!(peer = to, %error, "cannot dial peers over TLS; frames to it are dropped");
                None
            }
        },
    }
}

/// How a stream to a peer ended.
enum StreamEnd {
    /// Every sender is gone: the node is stopping.
    QueueClosed,
    /// The stream failed, or stopped taking frames; dial again.
    Broken,
}

/// Streams `first` and then the queue to the peer over `channel` until
/// the stream breaks. Never waits for the stream to take a frame: a frame
/// that finds the stream full is dropped (consensus retransmits), so the
/// end of the call is always seen. A stream that has frames waiting and
/// takes none for [`PeerConfig::stall_timeout`] is given up, whatever the
/// reason: a stopped peer, a connection that died without an error, a
/// request that never left this process.
async fn stream(
    config: &PeerConfig,
    to: NodeId,
    address: &str,
    channel: tonic::transport::Channel,
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Vec<u8>>,
    counters: &LinkCounters,
) -> StreamEnd {
    let frame = |payload: Vec<u8>| PeerFrame {
        cluster: config.cluster.clone(),
        from: config.node_id,
        to,
        payload: payload.into(),
        cluster_id: config.cluster_id.load(Ordering::Acquire),
        incarnation: config.incarnation,
        abstaining: config.abstaining.load(Ordering::Acquire),
    };
    let (tx, rx) = mpsc::channel::<PeerFrame>(config.queue.max(1));
    if tx.try_send(frame(first)).is_err() {
        return StreamEnd::Broken;
    }
    counters.sent.fetch_add(1, Ordering::Relaxed);
    // Frames the transport has taken from the stream, to tell a stream
    // that moves from one that does not.
    let taken = Arc::new(AtomicU64::new(0));
    let body = ReceiverStream::new(rx).map({
        let taken = Arc::clone(&taken);
        move |frame| {
            taken.fetch_add(1, Ordering::Relaxed);
            frame
        }
    });
    let mut client = PeerClient::new(channel)
        .max_encoding_message_size(config.max_frame_bytes.saturating_add(1024));
    let mut call = std::pin::pin!(client.exchange(body));
    counters.set(LinkState::Streaming);
    let mut check = tokio::time::interval(config.keepalive);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = StallWatch::default();
    loop {
        tokio::select! {
            ended = &mut call => {
                match ended {
                    Ok(_) => tracing::debug!(peer = to, "peer closed the stream"),
                    Err(status) => tracing::warn!(peer = to, %address, %status, "peer stream ended"),
                }
                return StreamEnd::Broken;
            }
            next = queue.recv() => match next {
                Some(payload) => match tx.try_send(frame(payload)) {
                    Ok(()) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        counters.set(LinkState::Stalled);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return StreamEnd::Broken,
                },
                None => return StreamEnd::QueueClosed,
            },
            _ = check.tick() => {
                let waiting = tx.max_capacity() - tx.capacity();
                let now = std::time::Instant::now();
                match watch.still_for(waiting, taken.load(Ordering::Relaxed), now) {
                    None => counters.set(LinkState::Streaming),
                    Some(still) if still >= config.stall_timeout => {
                        tracing::warn!(
                            peer = to,
                            %address,
                            waiting,
                            ?still,
                            "the stream to the peer takes no frames; dialing again"
                        );
                        return StreamEnd::Broken;
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Tells a stream that moves from one that does not: frames wait on this
/// side, and the transport has taken none of them for a while.
#[derive(Debug, Default)]
struct StallWatch {
    last_taken: u64,
    still_since: Option<std::time::Instant>,
}

impl StallWatch {
    /// With `waiting` frames queued for the stream and `taken` taken by the
    /// transport so far, at `now`: how long frames have waited without one
    /// being taken, or `None` while the stream moves (or has nothing to do).
    fn still_for(
        &mut self,
        waiting: usize,
        taken: u64,
        now: std::time::Instant,
    ) -> Option<Duration> {
        if waiting == 0 || taken != self.last_taken {
            self.last_taken = taken;
            self.still_since = None;
            return None;
        }
        let since = *self.still_since.get_or_insert(now);
        Some(now.saturating_duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_stalled_only_while_frames_wait_and_none_is_taken() {
        let start = std::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut watch = StallWatch::default();
        // Nothing waiting: never stalled, however long.
        assert_eq!(watch.still_for(0, 0, at(0)), None);
        assert_eq!(watch.still_for(0, 0, at(60_000)), None);
        // Frames wait and none is taken: still since the first look.
        assert_eq!(watch.still_for(5, 0, at(61_000)), Some(Duration::ZERO));
        assert_eq!(
            watch.still_for(9, 0, at(63_500)),
            Some(Duration::from_millis(2_500))
        );
        // One is taken: it moves again, and the count starts over.
        assert_eq!(watch.still_for(9, 1, at(64_000)), None);
        assert_eq!(watch.still_for(9, 1, at(64_100)), Some(Duration::ZERO));
        assert_eq!(
            watch.still_for(9, 1, at(65_100)),
            Some(Duration::from_millis(1_000))
        );
        // The queue drained: not stalled.
        assert_eq!(watch.still_for(0, 1, at(70_000)), None);
    }
}
