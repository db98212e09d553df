//! The public face of the library: [`ClientConfig`] and [`Client`], one
//! async method per operation of the Coordination API.

use std::sync::Arc;
use std::time::Duration;

use synod_proto::v1 as pb;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::session::{self, Inner, Shutdown};
use crate::types::{
    Acl, AddWatchMode, CreateOptions, MultiResult, Op, ReadOp, ReadResult, SessionState, Stat,
    WatcherType, op_result, read_result, stat_of, version_or_any,
};
use crate::watch::{
    CHILD_EVENTS, DATA_EVENTS, EXISTS_EVENTS, Filter, OneShotWatch, PERSISTENT_EVENTS, Pending,
    Registration, WatchStream,
};

/// How to reach the ensemble and what session to ask for.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// "host:port", "host" (port 7000) or "http://host:port"; tried in
    /// order when connecting, round-robin after a connection fails.
    pub endpoints: Vec<String>,
    /// Asked for; the server negotiates it into its bounds.
    pub session_timeout: Duration,
    /// Per endpoint, for connecting and each step of setting up a session.
    pub connect_timeout: Duration,
    /// For one operation, including waiting for a connection and retries.
    pub request_timeout: Duration,
    /// How long a response may wait for the watch events it follows before
    /// the event stream is reopened (see the crate documentation).
    pub event_barrier_timeout: Duration,
    /// Largest gRPC message sent or accepted.
    pub max_message_size: usize,
    /// TLS to the ensemble: its CA bundle, and this client's certificate
    /// when the servers ask for one. `None`: plaintext.
    pub tls: Option<Arc<synod_tls::Tls>>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            endpoints: Vec::new(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            event_barrier_timeout: Duration::from_secs(2),
            max_message_size: 64 << 20,
            tls: None,
        }
    }
}

impl ClientConfig {
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }
}

/// Closes the session when the last `Client` clone goes away.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.shutdown_with(Shutdown::Dropped);
    }
}

/// A session with a Synod ensemble. Cheap to clone; all clones share the
/// session, which is closed by [`Client::close`] or when the last clone is
/// dropped (best effort: the session otherwise expires after its timeout).
///
/// Every method returns only after the client has received the watch events
/// the server queued for this session before answering, so an event is
/// always seen before the response of a later request that observes the
/// change.
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl Client {
    /// Connects to the first endpoint that answers, creates a session and
    /// starts keeping it alive. Must be called inside a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let inner = session::connect(config).await?;
        Ok(Client {
            handle: Arc::new(Handle { inner }),
        })
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    fn sid(&self) -> i64 {
        self.inner().session_id
    }

    pub fn session_id(&self) -> i64 {
        self.inner().session_id
    }

    /// The timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.inner().session_timeout()
    }

    pub fn state(&self) -> SessionState {
        *self.inner().state.borrow()
    }

    /// Follows the session's state (connected, disconnected, expired,
    /// closed).
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        self.inner().state.subscribe()
    }

    /// The newest transaction this client has seen in a response or event.
    pub fn last_zxid(&self) -> i64 {
        self.inner().last_zxid()
    }

    /// The endpoint currently connected to, if any.
    pub fn endpoint(&self) -> Option<String> {
        self.inner().endpoint()
    }

    /// Creates a node; returns the created path (with the sequence suffix
    /// for sequential modes) and its Stat.
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let request = options.to_request(self.sid(), path, data)?;
        let response = self
            .inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.create(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok((response.path, stat_of(response.stat)))
    }

    /// Deletes a node; `version` None matches any version.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        let request = pb::DeleteRequest {
            session_id: self.sid(),
            path: path.to_owned(),
            version: version_or_any(version),
        };
        self.inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.delete(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(())
    }

    /// Replaces a node's data; `version` None matches any version.
    pub async fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        let request = pb::SetDataRequest {
            session_id: self.sid(),
            path: path.to_owned(),
            data: data.to_vec(),
            version: version_or_any(version),
        };
        let response = self
            .inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.set_data(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(stat_of(response.stat))
    }

    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        let response = self.inner().get_data(path, false).await?;
        Ok((response.data, stat_of(response.stat)))
    }

    /// Reads a node's data as of now in the whole ensemble: the answer
    /// reflects every write acknowledged by any server before this call
    /// (the server first applies the leader's confirmed commit index).
    /// A plain [`Client::get_data`] may trail the leader, as in ZooKeeper.
    pub async fn get_data_linearizable(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        let response = self.inner().get_data_with(path, false, true).await?;
        Ok((response.data, stat_of(response.stat)))
    }

    /// Reads a node and sets a one-shot watch that fires on its next data
    /// change or deletion.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneShotWatch)> {
        let pending = self.pending(path, DATA_EVENTS)?;
        let response = self.inner().get_data(path, true).await?;
        let stat = stat_of(response.stat);
        let watch = pending.into_one_shot(
            watch_seq(response.header),
            Registration::Data {
                path: path.to_owned(),
                mzxid: stat.mzxid,
            },
            self.state_changes(),
        );
        Ok((response.data, stat, watch))
    }

    /// The node's Stat, None when it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        let response = self.inner().exists(path, false).await?;
        Ok(response.stat.map(Stat::from))
    }

    /// [`Client::exists`] as of now in the whole ensemble, like
    /// [`Client::get_data_linearizable`].
    pub async fn exists_linearizable(&self, path: &str) -> Result<Option<Stat>> {
        let response = self.inner().exists_with(path, false, true).await?;
        Ok(response.stat.map(Stat::from))
    }

    /// Like [`Client::exists`], and sets a one-shot watch that fires when
    /// the node is created, changed or deleted (also when it is missing).
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, OneShotWatch)> {
        let pending = self.pending(path, EXISTS_EVENTS)?;
        let response = self.inner().exists(path, true).await?;
        let stat = response.stat.map(Stat::from);
        let watch = pending.into_one_shot(
            watch_seq(response.header),
            Registration::Exists {
                path: path.to_owned(),
                mzxid: stat.map(|s| s.mzxid),
            },
            self.state_changes(),
        );
        Ok((stat, watch))
    }

    /// The names of a node's children, sorted.
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>> {
        Ok(self.inner().get_children(path, false).await?.children)
    }

    /// [`Client::get_children`] as of now in the whole ensemble, like
    /// [`Client::get_data_linearizable`].
    pub async fn get_children_linearizable(&self, path: &str) -> Result<Vec<String>> {
        Ok(self
            .inner()
            .get_children_with(path, false, true)
            .await?
            .children)
    }

    /// The names of a node's children and the node's Stat.
    pub async fn get_children_and_stat(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        let response = self.inner().get_children(path, false).await?;
        Ok((response.children, stat_of(response.stat)))
    }

    /// Lists the children and sets a one-shot watch that fires when the
    /// child list changes or the node is deleted.
    pub async fn get_children_watch(
        &self,
        path: &str,
    ) -> Result<(Vec<String>, Stat, OneShotWatch)> {
        let pending = self.pending(path, CHILD_EVENTS)?;
        let response = self.inner().get_children(path, true).await?;
        let stat = stat_of(response.stat);
        let watch = pending.into_one_shot(
            watch_seq(response.header),
            Registration::Children {
                path: path.to_owned(),
                pzxid: stat.pzxid,
            },
            self.state_changes(),
        );
        Ok((response.children, stat, watch))
    }

    /// The number of nodes below `path`, at any depth.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i64> {
        let request = pb::GetAllChildrenNumberRequest {
            session_id: self.sid(),
            path: path.to_owned(),
        };
        let response = self
            .inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.get_all_children_number(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(response.number)
    }

    /// This session's ephemeral nodes whose path starts with `prefix`
    /// ("/" for all).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        let request = pb::GetEphemeralsRequest {
            session_id: self.sid(),
            prefix: prefix.to_owned(),
        };
        let response = self
            .inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.get_ephemerals(request).await }
            })
            .await?;
        Ok(response.paths)
    }

    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        let request = pb::GetAclRequest {
            session_id: self.sid(),
            path: path.to_owned(),
        };
        let response = self
            .inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.get_acl(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok((
            response.acl.into_iter().map(Acl::from).collect(),
            stat_of(response.stat),
        ))
    }

    /// Replaces a node's ACL; `version` is the expected aversion, None for
    /// any.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Result<Stat> {
        let request = pb::SetAclRequest {
            session_id: self.sid(),
            path: path.to_owned(),
            acl: acl.iter().map(pb::Acl::from).collect(),
            version: version_or_any(version),
        };
        let response = self
            .inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.set_acl(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(stat_of(response.stat))
    }

    /// Succeeds when the node's version is `version` (-1 for any).
    pub async fn check(&self, path: &str, version: i32) -> Result<()> {
        let request = pb::CheckRequest {
            session_id: self.sid(),
            path: path.to_owned(),
            version,
        };
        self.inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.check(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(())
    }

    /// Applies every op or none. A multi that the server refused comes back
    /// as `Ok` with `committed == false` and the per-op results; use
    /// [`MultiResult::into_result`] to turn that into the failing op's error.
    pub async fn multi(&self, ops: &[Op]) -> Result<MultiResult> {
        let sid = self.sid();
        let request = pb::MultiRequest {
            session_id: sid,
            ops: ops
                .iter()
                .map(|op| op.to_proto(sid))
                .collect::<Result<_>>()?,
        };
        let response = self
            .inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.multi(request).await }
            })
            .await?;
        if response.results.len() != ops.len() {
            return Err(Error::Server {
                code: pb::ErrorCode::MarshallingError,
                path: String::new(),
                message: format!("{} results for {} ops", response.results.len(), ops.len()),
            });
        }
        Ok(MultiResult {
            committed: response.committed,
            results: response
                .results
                .into_iter()
                .zip(ops)
                .map(|(r, op)| op_result(r, op))
                .collect(),
        })
    }

    /// Several reads answered from one state; each read fails on its own.
    pub async fn multi_read(&self, ops: &[ReadOp]) -> Result<Vec<ReadResult>> {
        let sid = self.sid();
        let request = pb::MultiReadRequest {
            session_id: sid,
            ops: ops.iter().map(|op| op.to_proto(sid)).collect(),
        };
        let response = self
            .inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.multi_read(request).await }
            })
            .await?;
        if response.results.len() != ops.len() {
            return Err(Error::Server {
                code: pb::ErrorCode::MarshallingError,
                path: String::new(),
                message: format!("{} results for {} reads", response.results.len(), ops.len()),
            });
        }
        Ok(response
            .results
            .into_iter()
            .zip(ops)
            .map(|(r, op)| read_result(r, op))
            .collect())
    }

    /// Brings the connected server up to date with everything committed
    /// before, so that the next reads see it.
    pub async fn sync(&self, path: &str) -> Result<()> {
        let request = pb::SyncRequest {
            session_id: self.sid(),
            path: path.to_owned(),
        };
        self.inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.sync(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        Ok(())
    }

    /// Adds an identity to the session (scheme "digest", auth
    /// "user:password"); added again after moving to another server.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        let request = pb::AddAuthRequest {
            session_id: self.sid(),
            scheme: scheme.to_owned(),
            auth: auth.to_vec(),
        };
        self.inner()
            .call(true, |mut rpc| {
                let request = request.clone();
                async move { rpc.add_auth(request).await }
            })
            .await?;
        self.inner().remember_auth(scheme, auth);
        Ok(())
    }

    /// Adds a persistent (or persistent-recursive) watch; its events arrive
    /// on [`Client::watch_events`]. See [`Client::watch`] for a stream of
    /// just this watch's events.
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<()> {
        self.inner().add_watch(path, mode).await?;
        self.inner().remember_persistent(path, mode);
        Ok(())
    }

    /// Removes the session's watches of `watcher_type` on `path`.
    pub async fn remove_watches(&self, path: &str, watcher_type: WatcherType) -> Result<()> {
        let request = pb::RemoveWatchesRequest {
            session_id: self.sid(),
            path: path.to_owned(),
            watcher_type: watcher_type as i32,
        };
        self.inner()
            .call(false, |mut rpc| {
                let request = request.clone();
                async move { rpc.remove_watches(request).await }
            })
            .await
            .map_err(|e| e.with_default_path(path))?;
        let mode = match watcher_type {
            WatcherType::Persistent => Some(Some(AddWatchMode::Persistent)),
            WatcherType::PersistentRecursive => Some(Some(AddWatchMode::PersistentRecursive)),
            WatcherType::Any => Some(None),
            _ => None,
        };
        if let Some(mode) = mode {
            self.inner().forget_persistent(path, mode);
        }
        Ok(())
    }

    /// Adds a persistent (or persistent-recursive) watch on `path` and
    /// returns a stream of its events: every event on `path`, or with
    /// `PersistentRecursive` on `path` and below.
    pub async fn watch(&self, path: &str, mode: AddWatchMode) -> Result<WatchStream> {
        let filter = match mode {
            AddWatchMode::Persistent => Filter::Path {
                path: path.to_owned(),
                types: PERSISTENT_EVENTS,
            },
            AddWatchMode::PersistentRecursive => Filter::Subtree {
                path: path.to_owned(),
            },
        };
        let pending = Pending::new(&self.inner().dispatcher, filter, false)?;
        let response = self.inner().add_watch(path, mode).await?;
        Ok(pending.into_stream(
            watch_seq(response.header),
            Registration::Persistent {
                path: path.to_owned(),
                mode,
            },
        ))
    }

    /// Every watch event of the session from now on, in server order. Ends
    /// when the session is closed or expires.
    pub fn watch_events(&self) -> WatchStream {
        let dispatcher = &self.inner().dispatcher;
        match dispatcher.subscribe(Filter::All, false, true) {
            Some((id, rx)) => WatchStream::new(Arc::clone(dispatcher), id, rx),
            None => WatchStream::ended(),
        }
    }

    /// Closes the session: its ephemeral nodes are deleted and its watches
    /// removed. Every clone of this client is closed.
    pub async fn close(&self) -> Result<()> {
        self.inner().close().await
    }

    fn pending(&self, path: &str, types: &'static [pb::EventType]) -> Result<Pending> {
        Pending::new(
            &self.inner().dispatcher,
            Filter::Path {
                path: path.to_owned(),
                types,
            },
            true,
        )
    }
}

fn watch_seq(header: Option<pb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.watch_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    /// Callers spawn client calls onto tokio tasks; every future must be
    /// `Send` for that, which only the compiler can check.
    #[allow(dead_code)]
    fn futures_are_spawnable(client: Client) {
        send_sync::<Client>();
        send_sync::<WatchStream>();
        send_sync::<OneShotWatch>();
        tokio::spawn(async move {
            let _ = client.get_data_watch("/a").await;
            let _ = client.watch("/a", AddWatchMode::Persistent).await;
            let _ = client.multi(&[Op::check("/a", None)]).await;
            let _ = client.close().await;
        });
    }

    #[test]
    fn config_defaults_are_usable() {
        let config = ClientConfig::new(["a:1", "b:2"]);
        assert_eq!(config.endpoints, vec!["a:1".to_owned(), "b:2".to_owned()]);
        assert!(config.session_timeout > config.connect_timeout);
        assert!(config.event_barrier_timeout < config.request_timeout);
    }
}
