//! One `Pipeline` stream per connection, shared by every call on it: calls
//! are tagged with an id, sent on the stream and matched with their answers
//! as those arrive, in whatever order. It owns the table of unanswered calls
//! and fails all of them, and every later call, once the stream ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message as _;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_proto::v1::pipeline_request::Call;
use synod_proto::v1::pipeline_response::Result as Answer;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Calls queued for the stream before the sender waits: enough for a busy
/// client to keep the connection full without holding much memory.
const SEND_QUEUE: usize = 1024;

type Waiter = oneshot::Sender<Result<Answer, Status>>;

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    waiting: HashMap<u64, Waiter>,
    /// Why the stream ended; set once, and then no call is accepted.
    ended: Option<Status>,
}

/// A `Pipeline` stream on one connection. Cheap to share behind an `Arc`;
/// dropping the last handle closes the stream after the server has answered
/// what was sent.
#[derive(Debug)]
pub struct Pipeline {
    sender: mpsc::Sender<pb::PipelineRequest>,
    table: Arc<Mutex<Table>>,
}

impl Pipeline {
    /// Opens the stream on `rpc`'s connection.
    pub async fn open(mut rpc: CoordinationClient<Channel>) -> Result<Pipeline, Status> {
        let (sender, requests) = mpsc::channel(SEND_QUEUE);
        let mut answers = rpc
            .pipeline(ReceiverStream::new(requests))
            .await?
            .into_inner();
        let table = Arc::new(Mutex::new(Table::default()));
        let reader_table = table.clone();
        tokio::spawn(async move {
            let ended = loop {
                match answers.next().await {
                    Some(Ok(response)) => {
                        let waiter = lock(&reader_table).waiting.remove(&response.id);
                        let result = match response.result {
                            Some(Answer::Error(error)) => Err(status_of(error)),
                            Some(answer) => Ok(answer),
                            None => Err(Status::internal("the server sent an empty answer")),
                        };
                        // The caller may have given up (a timeout); fine.
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(result);
                        }
                    }
                    Some(Err(status)) => break status,
                    None => break Status::unavailable("the server closed the pipeline stream"),
                }
            };
            tracing::debug!(%ended, "pipeline stream ended");
            let mut table = lock(&reader_table);
            let lost = Status::unavailable(format!("pipeline stream ended: {}", ended.message()));
            for (_, waiter) in table.waiting.drain() {
                let _ = waiter.send(Err(lost.clone()));
            }
            table.ended = Some(lost);
        });
        Ok(Pipeline { sender, table })
    }

    /// Sends one call and waits for its answer. A failed call returns the
    /// status its unary method would have returned; a lost stream returns
    /// UNAVAILABLE.
    pub async fn call(&self, call: Call) -> Result<Answer, Status> {
        let (waiter, answer) = oneshot::channel();
        let id = {
            let mut table = lock(&self.table);
            if let Some(ended) = &table.ended {
                return Err(ended.clone());
            }
            let id = table.next_id;
            table.next_id += 1;
            table.waiting.insert(id, waiter);
            id
        };
        let request = pb::PipelineRequest {
            id,
            call: Some(call),
        };
        if self.sender.send(request).await.is_err() {
            lock(&self.table).waiting.remove(&id);
            return Err(Status::unavailable("the pipeline stream is closed"));
        }
        // Dropping this future (a caller's timeout) leaves the waiter in the
        // table until the answer comes; the answer then finds nobody.
        answer
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the pipeline stream ended")))
    }

    /// Whether the stream has ended, so that new calls fail at once.
    pub fn is_ended(&self) -> bool {
        lock(&self.table).ended.is_some()
    }
}

/// The table stays consistent even if a holder panicked: every update is a
/// single insert or remove.
fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn status_of(error: pb::CallError) -> Status {
    Status::with_details(Code::from(error.code), error.message, error.details.into())
}

/// Requests larger than this, encoded, are sent as unary calls. They gain
/// nothing from sharing a stream (their bytes cost more than a call), and a
/// request over the server's `--max-request-bytes` ends the stream it is on,
/// failing every call that shares it, where a unary call fails alone.
/// Servers never limit requests below this in practice (paths alone may
/// take 4 KiB).
const PIPELINED_REQUEST_MAX: usize = 4096;

/// The client's handle on one connection. Calls go through the
/// connection's `Pipeline` stream, apart from large requests (see
/// [`PIPELINED_REQUEST_MAX`]); the streams (keep-alive, watch events) are
/// their own calls. The methods keep the generated stub's shapes, so that
/// callers read as if they made unary calls.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    streams: CoordinationClient<Channel>,
    pipeline: Arc<Pipeline>,
}

impl Rpc {
    pub(crate) async fn open(streams: CoordinationClient<Channel>) -> Result<Rpc, Status> {
        let pipeline = Arc::new(Pipeline::open(streams.clone()).await?);
        Ok(Rpc { streams, pipeline })
    }

    pub(crate) async fn keep_alive(
        &mut self,
        pings: ReceiverStream<pb::KeepAliveRequest>,
    ) -> Result<tonic::Response<tonic::Streaming<pb::KeepAliveResponse>>, Status> {
        self.streams.keep_alive(pings).await
    }

    pub(crate) async fn watch_events(
        &mut self,
        request: pb::WatchEventsRequest,
    ) -> Result<tonic::Response<tonic::Streaming<pb::WatchEvent>>, Status> {
        self.streams.watch_events(request).await
    }
}

/// Each pipelined method sends its request as the named call and expects
/// the answer of the same name.
macro_rules! pipelined {
    ($($method:ident($request:ty) -> $response:ty = $call:ident;)*) => {
        impl Rpc {
            $(
                pub(crate) async fn $method(
                    &mut self,
                    request: $request,
                ) -> Result<tonic::Response<$response>, Status> {
                    if request.encoded_len() > PIPELINED_REQUEST_MAX {
                        return self.streams.$method(request).await;
                    }
                    match self.pipeline.call(Call::$call(request)).await? {
                        Answer::$call(response) => Ok(tonic::Response::new(response)),
                        _ => Err(Status::internal(concat!(
                            "the server answered ",
                            stringify!($method),
                            " with another call's answer"
                        ))),
                    }
                }
            )*
        }
    };
}

pipelined! {
    create_session(pb::CreateSessionRequest) -> pb::CreateSessionResponse = CreateSession;
    close_session(pb::CloseSessionRequest) -> pb::CloseSessionResponse = CloseSession;
    add_auth(pb::AddAuthRequest) -> pb::AddAuthResponse = AddAuth;
    create(pb::CreateRequest) -> pb::CreateResponse = Create;
    delete(pb::DeleteRequest) -> pb::DeleteResponse = Delete;
    set_data(pb::SetDataRequest) -> pb::SetDataResponse = SetData;
    check(pb::CheckRequest) -> pb::CheckResponse = Check;
    set_acl(pb::SetAclRequest) -> pb::SetAclResponse = SetAcl;
    multi(pb::MultiRequest) -> pb::MultiResponse = Multi;
    get_data(pb::GetDataRequest) -> pb::GetDataResponse = GetData;
    exists(pb::ExistsRequest) -> pb::ExistsResponse = Exists;
    get_children(pb::GetChildrenRequest) -> pb::GetChildrenResponse = GetChildren;
    get_all_children_number(pb::GetAllChildrenNumberRequest)
        -> pb::GetAllChildrenNumberResponse = GetAllChildrenNumber;
    get_ephemerals(pb::GetEphemeralsRequest) -> pb::GetEphemeralsResponse = GetEphemerals;
    get_acl(pb::GetAclRequest) -> pb::GetAclResponse = GetAcl;
    multi_read(pb::MultiReadRequest) -> pb::MultiReadResponse = MultiRead;
    sync(pb::SyncRequest) -> pb::SyncResponse = Sync;
    add_watch(pb::AddWatchRequest) -> pb::AddWatchResponse = AddWatch;
    remove_watches(pb::RemoveWatchesRequest) -> pb::RemoveWatchesResponse = RemoveWatches;
}
