//! Fan-out of the session's single watch event stream to the caller's
//! streams and one-shot watches, and the record of which watches the client
//! must set again after it moves to another server.
//!
//! A subscriber that belongs to a request (a one-shot watch, a persistent
//! watch stream) is created before the request is sent, so no event can slip
//! by, but it is only "armed" once the response arrives: events received
//! before that are kept aside and, when arming, only those numbered above the
//! response's `watch_seq` are delivered; the others predate the watch.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::types::{AddWatchMode, EventType, SessionState, WatchEvent};

/// Which events a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    All,
    /// Events on exactly `path` of the given types.
    Path {
        path: String,
        types: &'static [EventType],
    },
    /// Events on `path` and every node below it, of the types a
    /// persistent-recursive watch reports.
    Subtree {
        path: String,
    },
}

/// The event types that fire a one-shot getData watch.
pub(crate) const DATA_EVENTS: &[EventType] = &[
    EventType::NodeDataChanged,
    EventType::NodeDeleted,
    EventType::DataWatchRemoved,
];
/// The event types that fire a one-shot exists watch.
pub(crate) const EXISTS_EVENTS: &[EventType] = &[
    EventType::NodeCreated,
    EventType::NodeDataChanged,
    EventType::NodeDeleted,
    EventType::DataWatchRemoved,
];
/// The event types that fire a one-shot getChildren watch.
pub(crate) const CHILD_EVENTS: &[EventType] = &[
    EventType::NodeChildrenChanged,
    EventType::NodeDeleted,
    EventType::ChildWatchRemoved,
];

/// The event types a persistent watch reports. The server sends one event
/// per session and change, shared by all the session's watches on the path,
/// so each subscriber picks the types its own kind of watch would get.
pub(crate) const PERSISTENT_EVENTS: &[EventType] = &[
    EventType::NodeCreated,
    EventType::NodeDataChanged,
    EventType::NodeDeleted,
    EventType::NodeChildrenChanged,
    EventType::PersistentWatchRemoved,
];
/// A persistent-recursive watch reports no child list changes (ZooKeeper
/// 3.6 semantics): creations and deletions below stand for them.
const RECURSIVE_EVENTS: &[EventType] = &[
    EventType::NodeCreated,
    EventType::NodeDataChanged,
    EventType::NodeDeleted,
    EventType::PersistentWatchRemoved,
];

impl Filter {
    pub(crate) fn matches(&self, event: &WatchEvent) -> bool {
        match self {
            Filter::All => true,
            Filter::Path { path, types } => {
                event.path == *path && types.contains(&event.event_type)
            }
            Filter::Subtree { path } => {
                RECURSIVE_EVENTS.contains(&event.event_type) && is_in_subtree(&event.path, path)
            }
        }
    }
}

fn is_in_subtree(candidate: &str, root: &str) -> bool {
    if root == "/" {
        return candidate.starts_with('/');
    }
    match candidate.strip_prefix(root) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A watch the server holds for the client, with what the client saw when
/// it set it, so that it can be set again (and a missed change detected)
/// on another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Registration {
    Persistent {
        path: String,
        mode: AddWatchMode,
    },
    /// getData watch; `mzxid` of the data the caller read.
    Data {
        path: String,
        mzxid: i64,
    },
    /// exists watch; `mzxid` when the node existed.
    Exists {
        path: String,
        mzxid: Option<i64>,
    },
    /// getChildren watch; `pzxid` of the child list the caller read.
    Children {
        path: String,
        pzxid: i64,
    },
}

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    tx: mpsc::UnboundedSender<WatchEvent>,
    /// One-shot subscribers are dropped after their first event.
    once: bool,
    armed: bool,
    early: Vec<WatchEvent>,
    registration: Option<Registration>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    subscribers: BTreeMap<u64, Subscriber>,
    closed: bool,
}

/// Hands every event of the session to the subscribers that want it.
#[derive(Debug, Default)]
pub(crate) struct Dispatcher {
    state: Mutex<State>,
}

impl Dispatcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters more than losing all watches would.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a subscriber; `None` once the session has ended.
    pub(crate) fn subscribe(
        &self,
        filter: Filter,
        once: bool,
        armed: bool,
    ) -> Option<(u64, mpsc::UnboundedReceiver<WatchEvent>)> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.next_id += 1;
        let id = state.next_id;
        state.subscribers.insert(
            id,
            Subscriber {
                filter,
                tx,
                once,
                armed,
                early: Vec::new(),
                registration: None,
            },
        );
        Some((id, rx))
    }

    /// The request that set the watch was answered with `after_seq`: hand
    /// over the early events that are newer, and remember the watch.
    pub(crate) fn arm(&self, id: u64, after_seq: u64, registration: Option<Registration>) {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.get_mut(&id) else {
            return;
        };
        sub.armed = true;
        sub.registration = registration;
        let mut fired = false;
        for event in std::mem::take(&mut sub.early) {
            if event.seq > after_seq {
                fired = true;
                if sub.tx.send(event).is_err() || sub.once {
                    break;
                }
            }
        }
        if fired && sub.once {
            state.subscribers.remove(&id);
        }
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.remove(&id);
    }

    /// Delivers one event from the server.
    pub(crate) fn dispatch(&self, event: &WatchEvent) {
        let mut state = self.lock();
        state.subscribers.retain(|_, sub| {
            if !sub.filter.matches(event) {
                return true;
            }
            if !sub.armed {
                sub.early.push(event.clone());
                return true;
            }
            sub.tx.send(event.clone()).is_ok() && !sub.once
        });
    }

    /// Delivers an event the client made up to one subscriber only.
    pub(crate) fn deliver_to(&self, id: u64, event: WatchEvent) {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.get_mut(&id) else {
            return;
        };
        if sub.tx.send(event).is_err() || sub.once {
            state.subscribers.remove(&id);
        }
    }

    /// The watches live subscribers still rely on.
    pub(crate) fn registrations(&self) -> Vec<(u64, Registration)> {
        self.lock()
            .subscribers
            .iter()
            .filter(|(_, sub)| !sub.tx.is_closed())
            .filter_map(|(id, sub)| sub.registration.clone().map(|r| (*id, r)))
            .collect()
    }

    /// Ends every stream: the session is over.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.subscribers.clear();
    }
}

/// Unsubscribes when the caller drops its stream or watch.
struct Subscription {
    dispatcher: Arc<Dispatcher>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.dispatcher.unsubscribe(self.id);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

/// A stream of watch events: every event of the session
/// ([`crate::Client::watch_events`]) or those of one persistent watch
/// ([`crate::Client::watch`]). It ends when the session is closed or
/// expires; dropping it stops the delivery (the server-side watch stays
/// until [`crate::Client::remove_watches`]).
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    subscription: Option<Subscription>,
}

impl WatchStream {
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        id: u64,
        rx: mpsc::UnboundedReceiver<WatchEvent>,
    ) -> Self {
        WatchStream {
            rx,
            subscription: Some(Subscription { dispatcher, id }),
        }
    }

    /// A stream that has already ended: the session was over when asked.
    pub(crate) fn ended() -> Self {
        let (_, rx) = mpsc::unbounded_channel();
        WatchStream {
            rx,
            subscription: None,
        }
    }

    /// The next event; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
}

impl Stream for WatchStream {
    type Item = WatchEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        let poll = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = poll {
            self.subscription = None;
        }
        poll
    }
}

/// A one-shot watch set by `get_data_watch`, `exists_watch` or
/// `get_children_watch`: resolves to the first event that fires it, or to
/// an error when the session ends first.
#[derive(Debug)]
pub struct OneShotWatch {
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    state: watch::Receiver<SessionState>,
    _subscription: Subscription,
}

impl OneShotWatch {
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        id: u64,
        rx: mpsc::UnboundedReceiver<WatchEvent>,
        state: watch::Receiver<SessionState>,
    ) -> Self {
        OneShotWatch {
            rx,
            state,
            _subscription: Subscription { dispatcher, id },
        }
    }
}

impl Future for OneShotWatch {
    type Output = Result<WatchEvent>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<WatchEvent>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(event)) => Poll::Ready(Ok(event)),
            Poll::Ready(None) => {
                let ended = *self.state.borrow();
                Poll::Ready(Err(match ended {
                    SessionState::Expired => Error::SessionExpired,
                    _ => Error::Closed,
                }))
            }
        }
    }
}

/// Subscribes for a request-bound watch; the guard removes the subscriber
/// again if the request fails before the watch is handed out.
pub(crate) struct Pending {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) id: u64,
    pub(crate) rx: Option<mpsc::UnboundedReceiver<WatchEvent>>,
}

impl Pending {
    pub(crate) fn new(dispatcher: &Arc<Dispatcher>, filter: Filter, once: bool) -> Result<Pending> {
        let (id, rx) = dispatcher
            .subscribe(filter, once, false)
            .ok_or(Error::Closed)?;
        Ok(Pending {
            dispatcher: Arc::clone(dispatcher),
            id,
            rx: Some(rx),
        })
    }

    fn take(&mut self) -> (Arc<Dispatcher>, u64, mpsc::UnboundedReceiver<WatchEvent>) {
        let rx = self
            .rx
            .take()
            .expect("a pending watch is turned into a stream once");
        (Arc::clone(&self.dispatcher), self.id, rx)
    }

    pub(crate) fn into_stream(mut self, after_seq: u64, registration: Registration) -> WatchStream {
        self.dispatcher.arm(self.id, after_seq, Some(registration));
        let (dispatcher, id, rx) = self.take();
        WatchStream::new(dispatcher, id, rx)
    }

    pub(crate) fn into_one_shot(
        mut self,
        after_seq: u64,
        registration: Registration,
        state: watch::Receiver<SessionState>,
    ) -> OneShotWatch {
        self.dispatcher.arm(self.id, after_seq, Some(registration));
        let (dispatcher, id, rx) = self.take();
        OneShotWatch::new(dispatcher, id, rx, state)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.dispatcher.unsubscribe(self.id);
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: EventType, path: &str, seq: u64) -> WatchEvent {
        WatchEvent {
            event_type: t,
            path: path.into(),
            zxid: seq as i64,
            seq,
        }
    }

    #[test]
    fn subtree_matching() {
        assert!(is_in_subtree("/a", "/a"));
        assert!(is_in_subtree("/a/b/c", "/a"));
        assert!(!is_in_subtree("/ab", "/a"));
        assert!(is_in_subtree("/anything", "/"));
        assert!(is_in_subtree("/", "/"));
    }

    #[test]
    fn path_filters_select_types() {
        let f = Filter::Path {
            path: "/a".into(),
            types: DATA_EVENTS,
        };
        assert!(f.matches(&ev(EventType::NodeDataChanged, "/a", 1)));
        assert!(!f.matches(&ev(EventType::NodeChildrenChanged, "/a", 1)));
        assert!(!f.matches(&ev(EventType::NodeDataChanged, "/b", 1)));
        let persistent = Filter::Path {
            path: "/a".into(),
            types: PERSISTENT_EVENTS,
        };
        assert!(persistent.matches(&ev(EventType::NodeChildrenChanged, "/a", 1)));
        assert!(!persistent.matches(&ev(EventType::DataWatchRemoved, "/a", 1)));
        let subtree = Filter::Subtree { path: "/a".into() };
        assert!(subtree.matches(&ev(EventType::NodeCreated, "/a/b", 1)));
        assert!(!subtree.matches(&ev(EventType::NodeChildrenChanged, "/a", 1)));
    }

    #[test]
    fn early_events_at_or_below_the_response_seq_are_dropped() {
        let d = Arc::new(Dispatcher::default());
        let filter = Filter::Path {
            path: "/a".into(),
            types: DATA_EVENTS,
        };
        let pending = Pending::new(&d, filter, true).expect("open dispatcher");
        // Both arrive before the response; only the second follows the watch.
        d.dispatch(&ev(EventType::NodeDataChanged, "/a", 4));
        d.dispatch(&ev(EventType::NodeDataChanged, "/a", 6));
        let reg = Registration::Data {
            path: "/a".into(),
            mzxid: 5,
        };
        let (_tx, state) = watch::channel(SessionState::Connected);
        let mut one = pending.into_one_shot(5, reg, state);
        let got = one.rx.try_recv().expect("event after the watch");
        assert_eq!(got.seq, 6);
        assert!(
            d.registrations().is_empty(),
            "a fired one-shot is not set again"
        );
    }

    #[test]
    fn one_shot_fires_once_and_is_forgotten() {
        let d = Arc::new(Dispatcher::default());
        let pending = Pending::new(
            &d,
            Filter::Path {
                path: "/a".into(),
                types: EXISTS_EVENTS,
            },
            true,
        )
        .expect("open dispatcher");
        let (_tx, state) = watch::channel(SessionState::Connected);
        let mut one = pending.into_one_shot(
            0,
            Registration::Exists {
                path: "/a".into(),
                mzxid: None,
            },
            state,
        );
        assert_eq!(d.registrations().len(), 1);
        d.dispatch(&ev(EventType::NodeCreated, "/a", 1));
        d.dispatch(&ev(EventType::NodeDeleted, "/a", 2));
        assert_eq!(one.rx.try_recv().map(|e| e.seq).ok(), Some(1));
        assert!(one.rx.try_recv().is_err());
        assert!(d.registrations().is_empty());
    }

    #[test]
    fn streams_get_every_matching_event_in_order() {
        let d = Arc::new(Dispatcher::default());
        let (id, rx) = d.subscribe(Filter::All, false, true).expect("open");
        let mut all = WatchStream::new(Arc::clone(&d), id, rx);
        let pending = Pending::new(&d, Filter::Subtree { path: "/a".into() }, false).expect("open");
        let mut sub = pending.into_stream(
            0,
            Registration::Persistent {
                path: "/a".into(),
                mode: AddWatchMode::PersistentRecursive,
            },
        );
        d.dispatch(&ev(EventType::NodeCreated, "/a/x", 1));
        d.dispatch(&ev(EventType::NodeCreated, "/b", 2));
        d.dispatch(&ev(EventType::NodeDataChanged, "/a", 3));
        let seqs = |rx: &mut mpsc::UnboundedReceiver<WatchEvent>| {
            let mut v = Vec::new();
            while let Ok(e) = rx.try_recv() {
                v.push(e.seq);
            }
            v
        };
        assert_eq!(seqs(&mut all.rx), vec![1, 2, 3]);
        assert_eq!(seqs(&mut sub.rx), vec![1, 3]);
        assert_eq!(d.registrations().len(), 1);
        drop(sub);
        assert!(d.registrations().is_empty());
    }

    #[test]
    fn failed_request_removes_its_subscriber() {
        let d = Arc::new(Dispatcher::default());
        let pending = Pending::new(&d, Filter::All, true).expect("open");
        drop(pending);
        assert!(d.lock().subscribers.is_empty());
    }

    #[tokio::test]
    async fn closing_ends_streams_and_one_shots() {
        let d = Arc::new(Dispatcher::default());
        let (state_tx, state) = watch::channel(SessionState::Connected);
        let pending = Pending::new(&d, Filter::All, true).expect("open");
        let one = pending.into_one_shot(
            0,
            Registration::Data {
                path: "/a".into(),
                mzxid: 1,
            },
            state,
        );
        let (id, rx) = d.subscribe(Filter::All, false, true).expect("open");
        let mut all = WatchStream::new(Arc::clone(&d), id, rx);
        state_tx.send_replace(SessionState::Expired);
        d.close();
        assert_eq!(one.await, Err(Error::SessionExpired));
        assert_eq!(all.next_event().await, None);
        assert!(d.subscribe(Filter::All, false, true).is_none());
    }

    #[test]
    fn synthetic_events_reach_only_their_subscriber() {
        let d = Arc::new(Dispatcher::default());
        let (a, mut rx_a) = d.subscribe(Filter::All, true, true).expect("open");
        let (_b, mut rx_b) = d.subscribe(Filter::All, false, true).expect("open");
        d.deliver_to(a, ev(EventType::NodeDeleted, "/a", 0));
        assert!(rx_a.try_recv().is_ok());
        assert!(rx_b.try_recv().is_err());
        assert_eq!(d.lock().subscribers.len(), 1);
    }
}
