//! synod-client: the async Rust client of Synod, a ZooKeeper-compatible
//! coordination service, over its gRPC API (`synod.v1.Coordination`).
//!
//! ```no_run
//! # async fn demo() -> synod_client::Result<()> {
//! use synod_client::{Client, ClientConfig, CreateOptions};
//!
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:7000"])).await?;
//! client.create("/app", b"hello", &CreateOptions::default()).await?;
//! let (data, stat, changed) = client.get_data_watch("/app").await?;
//! client.set_data("/app", b"again", Some(stat.version)).await?;
//! let event = changed.await?; // NodeDataChanged on /app
//! # let _ = (data, event);
//! client.close().await
//! # }
//! ```
//!
//! A [`Client`] owns one session. A background task keeps it alive over the
//! KeepAlive stream and, when the connection fails, moves it to another of
//! the configured endpoints: the session belongs to the ensemble, so its
//! ephemeral nodes survive the move. Watch events of the session come over
//! one WatchEvents stream, resumed after the last event received, and are
//! fanned out to [`WatchStream`]s and [`OneShotWatch`]es.
//!
//! Ordering: events and responses travel on separate HTTP/2 streams, so the
//! client holds every response back until it has received the events the
//! server had queued before answering (`ResponseHeader.watch_seq`); a caller
//! therefore always sees an event before the response of a later request
//! that observes the change. If the events do not arrive within
//! [`ClientConfig::event_barrier_timeout`], the event stream is reopened,
//! and after a second wait the response is released with a warning rather
//! than hanging.

mod barrier;
mod client;
pub mod connect;
mod endpoint;
mod error;
mod pipeline;
mod session;
mod types;
mod watch;

pub use client::{Client, ClientConfig};
pub use endpoint::{DEFAULT_PORT, normalize_endpoint, parse_endpoints};
pub use error::{Error, Result};
pub use pipeline::Pipeline;
pub use types::{
    Acl, AddWatchMode, CreateMode, CreateOptions, ErrorCode, EventType, MultiResult, Op, OpResult,
    ReadOp, ReadResult, SessionState, Stat, WatchEvent, WatcherType, event_type_name, perms,
};
pub use watch::{OneShotWatch, WatchStream};
