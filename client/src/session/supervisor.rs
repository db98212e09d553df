//! The supervisor of a session's connection: it serves one connection
//! (pings, answers, events, reopening the event stream when only that
//! failed) until it must be replaced, then finds another for as long as the
//! session lives, and after a move sets the client's watches again.

use super::*;

impl Inner {
    /// Serves one connection: pings, reads answers and events, reopens the
    /// event stream when only that failed, and notices when the connection
    /// must be replaced.
    async fn drive(self: &Arc<Self>, conn: &Conn, streams: Streams) -> Drive {
        let Streams {
            pings,
            mut keepalive,
            mut events,
        } = streams;
        let ping = pb::KeepAliveRequest {
            session_id: self.session_id,
        };
        let mut timeout = self.session_timeout();
        let mut ticker = ping_ticker(timeout);
        let mut last_heard = Instant::now();
        let mut last_reopen: Option<Instant> = None;
        let mut shutdown = self.shutdown.subscribe();
        let mut reconnect = self.reconnect.subscribe();
        let mut reopen = self.reopen.subscribe();
        loop {
            // Like ZooKeeper's client: silence for two thirds of the session
            // timeout means the server is gone, and the last third is left
            // to find another one before the session expires.
            let silence = tokio::time::sleep_until(last_heard + timeout * 2 / 3);
            let reopen_why = tokio::select! {
                biased;
                () = until(&mut shutdown, |s| *s != Shutdown::Running) => return Drive::Ended,
                message = events.stream.message() => match message {
                    Ok(Some(event)) => {
                        last_heard = Instant::now();
                        self.on_event(event, &events);
                        continue;
                    }
                    // The server drops the stream of a client that falls
                    // behind; the connection itself is fine.
                    Ok(None) => "the server ended the watch event stream",
                    Err(status) => return self.stream_failed(&status, "watch event stream"),
                },
                message = keepalive.message() => match message {
                    Ok(Some(answer)) => {
                        last_heard = Instant::now();
                        if answer.timeout_ms > 0
                            && answer.timeout_ms != self.timeout_ms.swap(answer.timeout_ms, Ordering::Relaxed)
                        {
                            timeout = self.session_timeout();
                            ticker = ping_ticker(timeout);
                            debug!(timeout_ms = answer.timeout_ms, "session timeout renegotiated");
                        }
                        continue;
                    }
                    Ok(None) => return Drive::Lost("the server ended the keepalive stream".to_owned()),
                    Err(status) => return self.stream_failed(&status, "keepalive stream"),
                },
                _ = ticker.tick() => match pings.try_send(ping) {
                    // A full queue means the transport is stuck; the silence
                    // deadline decides about that.
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Drive::Lost("the keepalive stream was dropped".to_owned());
                    }
                },
                () = silence => {
                    return Drive::Lost(format!("no answer from {} for {:?}", conn.endpoint, last_heard.elapsed()));
                }
                () = until(&mut reconnect, |asked| *asked >= conn.generation) => {
                    return Drive::Lost("a call failed on this connection".to_owned());
                }
                changed = reopen.changed() => match changed {
                    Ok(()) => "watch events are late",
                    Err(_) => return Drive::Ended,
                },
            };
            // Reopening in a loop would hide a server that keeps failing.
            if last_reopen.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return Drive::Lost(format!("{reopen_why}, again"));
            }
            last_reopen = Some(Instant::now());
            debug!(endpoint = conn.endpoint, "{reopen_why}; reopening it");
            let mut rpc = conn.rpc.clone();
            match self.open_events(&mut rpc, false).await {
                Ok(stream) => {
                    if stream.lost {
                        tokio::spawn(rewatch(Arc::clone(self)));
                    }
                    events = stream;
                }
                Err(err) if err.is_session_gone() => {
                    self.shutdown_with(Shutdown::Expired);
                    return Drive::Ended;
                }
                Err(err) => {
                    return Drive::Lost(format!("{reopen_why}; reopening it failed: {err}"));
                }
            }
        }
    }

    fn stream_failed(&self, status: &Status, what: &str) -> Drive {
        let err = Error::from_status(status);
        if err.is_session_gone() {
            warn!(
                session_id = format_args!("{:#x}", self.session_id),
                "{what}: {err}"
            );
            self.shutdown_with(Shutdown::Expired);
            return Drive::Ended;
        }
        Drive::Lost(format!("{what}: {err}"))
    }

    /// Asks the supervisor to reopen the event stream on the current
    /// connection.
    pub(super) fn request_reopen(&self) {
        self.reopen.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Hands an event to its subscribers, then counts it: in that order, so
    /// that a response released by the barrier finds the event delivered.
    fn on_event(&self, event: pb::WatchEvent, stream: &EventStream) {
        let seq = event.seq;
        if seq == 0 {
            warn!("the server sent a watch event without a sequence number");
        } else {
            match self.barrier.classify(seq) {
                Observed::Next => {}
                Observed::Duplicate => {
                    debug!(seq, "dropping an event received before");
                    return;
                }
                Observed::Gap { expected } => {
                    warn!(
                        expected,
                        received = seq,
                        "watch events were lost; some watches did not report their change"
                    );
                }
            }
            if seq <= stream.replay_until && event.zxid < stream.stale_below_zxid {
                debug!(
                    seq,
                    zxid = event.zxid,
                    "dropping an event another server delivered"
                );
                self.barrier.advance(seq);
                return;
            }
        }
        let event = WatchEvent::from(event);
        trace!(seq, path = %event.path, kind = ?event.event_type, "watch event");
        self.note_zxid(event.zxid);
        self.last_event_zxid
            .fetch_max(event.zxid, Ordering::Relaxed);
        self.dispatcher.dispatch(&event);
        self.barrier.advance(seq);
    }
}

fn ping_ticker(timeout: Duration) -> tokio::time::Interval {
    // A little under a third, so that a late tick still keeps the promise
    // of a ping at least every third of the timeout.
    let period = (timeout * 3 / 10).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The supervisor: serves the connection until it fails, then finds
/// another, for as long as the session lives.
pub(super) async fn supervise(
    inner: Arc<Inner>,
    mut conn: Arc<Conn>,
    mut streams: Streams,
    mut index: usize,
) {
    loop {
        let reason = match inner.drive(&conn, streams).await {
            Drive::Lost(reason) => reason,
            Drive::Ended => break,
        };
        warn!(
            session_id = format_args!("{:#x}", inner.session_id),
            endpoint = conn.endpoint,
            "connection lost ({reason}); reconnecting"
        );
        inner.link.send_if_modified(|link| {
            if matches!(link, Link::Connected(_)) {
                *link = Link::Connecting;
                true
            } else {
                false
            }
        });
        inner.set_state(SessionState::Disconnected);
        match inner.reconnect(index + 1, conn.generation + 1).await {
            Some((next, next_streams, next_index)) => {
                conn = next;
                streams = next_streams;
                index = next_index;
                inner.publish(&conn);
                tokio::spawn(rewatch(Arc::clone(&inner)));
            }
            None => break,
        }
    }
    inner.wind_down(&conn).await;
}

/// Sets the client's watches again after a move to another server, since
/// a server holds the watches of the clients connected to it. For one-shot
/// watches it compares the node with what the caller saw, and fires the
/// watch itself when the change happened while disconnected (as
/// ZooKeeper's SetWatches does).
async fn rewatch(inner: Arc<Inner>) {
    let registrations = inner.dispatcher.registrations();
    let mut persistent = inner
        .persistent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (_, registration) in &registrations {
        if let Registration::Persistent { path, mode } = registration {
            persistent.insert((path.clone(), *mode as i32));
        }
    }
    let stop = |err: &Error| matches!(err, Error::Closed) || err.is_session_gone();
    for (path, mode) in persistent {
        let mode = AddWatchMode::try_from(mode).unwrap_or(AddWatchMode::Persistent);
        if let Err(err) = inner.add_watch(&path, mode).await {
            if stop(&err) {
                return;
            }
            warn!(path, "setting a persistent watch again failed: {err}");
        }
    }
    for (id, registration) in registrations {
        let fired = match registration {
            Registration::Persistent { .. } => continue,
            Registration::Data { path, mzxid } => match inner.get_data(&path, true).await {
                Ok(r) => {
                    let stat = stat_of(r.stat);
                    (stat.mzxid != mzxid).then_some((EventType::NodeDataChanged, path, stat.mzxid))
                }
                Err(Error::NoNode { .. }) => Some((EventType::NodeDeleted, path, 0)),
                Err(err) => {
                    if stop(&err) {
                        return;
                    }
                    warn!(path, "setting a data watch again failed: {err}");
                    None
                }
            },
            Registration::Exists { path, mzxid } => match inner.exists(&path, true).await {
                Ok(r) => match (mzxid, r.stat) {
                    (None, Some(now)) => Some((EventType::NodeCreated, path, now.czxid)),
                    (Some(_), None) => Some((EventType::NodeDeleted, path, 0)),
                    (Some(before), Some(now)) if now.mzxid != before => {
                        Some((EventType::NodeDataChanged, path, now.mzxid))
                    }
                    _ => None,
                },
                Err(err) => {
                    if stop(&err) {
                        return;
                    }
                    warn!(path, "setting an exists watch again failed: {err}");
                    None
                }
            },
            Registration::Children { path, pzxid } => match inner.get_children(&path, true).await {
                Ok(r) => {
                    let stat = stat_of(r.stat);
                    (stat.pzxid != pzxid).then_some((
                        EventType::NodeChildrenChanged,
                        path,
                        stat.pzxid,
                    ))
                }
                Err(Error::NoNode { .. }) => Some((EventType::NodeDeleted, path, 0)),
                Err(err) => {
                    if stop(&err) {
                        return;
                    }
                    warn!(path, "setting a child watch again failed: {err}");
                    None
                }
            },
        };
        if let Some((event_type, path, zxid)) = fired {
            debug!(path, kind = ?event_type, "change missed while disconnected");
            inner.dispatcher.deliver_to(
                id,
                WatchEvent {
                    event_type,
                    path,
                    zxid,
                    seq: 0,
                },
            );
        }
    }
}
