//! The `Pipeline` stream against a real `synod` process: answers match what
//! the unary calls return, errors carry the same status and detail, a
//! session's read waits for its earlier write, a stream at its limit is held
//! back and never loses a request, pipelined calls are counted in the
//! per-method metrics, and a client's `Pipeline` fails its calls
//! once the server is gone instead of hanging.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message as _;
use synod_client::Pipeline;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_proto::v1::pipeline_request::Call;
use synod_proto::v1::pipeline_response::Result as Answer;
use synod_tests::TestNode;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type Api = CoordinationClient<Channel>;

/// Bound on every wait for answers, so that a lost answer fails the test
/// instead of hanging it.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

async fn connect(node: &TestNode) -> Api {
    CoordinationClient::connect(format!("http://{}", node.endpoint()))
        .await
        .expect("connect")
}

fn create(session_id: i64, path: &str, data: &[u8]) -> pb::CreateRequest {
    pb::CreateRequest {
        session_id,
        path: path.into(),
        data: data.to_vec(),
        acl: vec![],
        mode: pb::CreateMode::Persistent as i32,
        ttl_ms: 0,
    }
}

fn get(session_id: i64, path: &str) -> pb::GetDataRequest {
    pb::GetDataRequest {
        session_id,
        path: path.into(),
        watch: false,
        linearizable: false,
    }
}

fn set(session_id: i64, path: &str, data: &[u8]) -> pb::SetDataRequest {
    pb::SetDataRequest {
        session_id,
        path: path.into(),
        data: data.to_vec(),
        version: -1,
    }
}

/// Opens a raw `Pipeline` stream: the sending half and the answers.
async fn open(
    api: &mut Api,
) -> (
    mpsc::Sender<pb::PipelineRequest>,
    tonic::Streaming<pb::PipelineResponse>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let answers = api
        .pipeline(ReceiverStream::new(rx))
        .await
        .expect("open pipeline")
        .into_inner();
    (tx, answers)
}

/// Reads answers until `count` have arrived; fails on a repeated id.
async fn collect(
    answers: &mut tonic::Streaming<pb::PipelineResponse>,
    count: usize,
) -> HashMap<u64, Answer> {
    let mut by_id = HashMap::new();
    while by_id.len() < count {
        let answer = tokio::time::timeout(ANSWER_LIMIT, answers.next())
            .await
            .expect("answers within the limit")
            .expect("stream open")
            .expect("answer");
        let result = answer.result.expect("answer has a result");
        assert!(
            by_id.insert(answer.id, result).is_none(),
            "id {} answered twice",
            answer.id
        );
    }
    by_id
}

fn error_code(answer: &Answer) -> (i32, pb::ErrorCode) {
    let Answer::Error(error) = answer else {
        panic!("expected an error, got {answer:?}");
    };
    let detail = pb::ErrorDetail::decode(error.details.as_slice()).expect("error detail");
    (
        error.code,
        pb::ErrorCode::try_from(detail.code).expect("known code"),
    )
}

#[tokio::test]
async fn pipelined_answers_match_the_unary_calls() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    let (tx, mut answers) = open(&mut api).await;
    let calls = [
        (1, Call::Create(create(0, "/p", b"one"))),
        (2, Call::GetData(get(0, "/missing"))),
        (3, Call::Create(create(0, "no-leading-slash", b""))),
    ];
    for (id, call) in calls {
        tx.send(pb::PipelineRequest {
            id,
            call: Some(call),
        })
        .await
        .expect("send");
    }
    tx.send(pb::PipelineRequest { id: 4, call: None })
        .await
        .expect("send");
    let by_id = collect(&mut answers, 4).await;

    let Some(Answer::Create(created)) = by_id.get(&1) else {
        panic!("create answered {:?}", by_id.get(&1));
    };
    assert_eq!(created.path, "/p");

    // The same error, status code and detail as the unary call's.
    let unary = api
        .get_data(get(0, "/missing"))
        .await
        .expect_err("no such node");
    let unary_detail = pb::ErrorDetail::decode(unary.details()).expect("detail");
    assert_eq!(
        error_code(&by_id[&2]),
        (unary.code() as i32, pb::ErrorCode::NoNode)
    );
    assert_eq!(unary_detail.code, pb::ErrorCode::NoNode as i32);
    assert_eq!(error_code(&by_id[&3]).1, pb::ErrorCode::InvalidPath);
    assert_eq!(error_code(&by_id[&4]).1, pb::ErrorCode::BadArguments);

    // A pipelined read returns what the unary read returns.
    tx.send(pb::PipelineRequest {
        id: 5,
        call: Some(Call::GetData(get(0, "/p"))),
    })
    .await
    .expect("send");
    let by_id = collect(&mut answers, 1).await;
    let Some(Answer::GetData(piped)) = by_id.get(&5) else {
        panic!("get answered {:?}", by_id.get(&5));
    };
    let unary = api.get_data(get(0, "/p")).await.expect("get").into_inner();
    assert_eq!((&piped.data, &piped.stat), (&unary.data, &unary.stat));
    assert_eq!(piped.data, b"one");
}

#[tokio::test]
async fn a_session_reads_its_own_writes_in_order() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    let session = api
        .create_session(pb::CreateSessionRequest { timeout_ms: 10_000 })
        .await
        .expect("session")
        .into_inner()
        .session_id;
    api.create(create(session, "/k", b"0"))
        .await
        .expect("create");
    let (tx, mut answers) = open(&mut api).await;
    // Each write is followed at once by a read of the same node, without
    // waiting for the write's answer: the read must see the write.
    let rounds = 50u64;
    for i in 0..rounds {
        let value = format!("v{i}");
        tx.send(pb::PipelineRequest {
            id: 2 * i,
            call: Some(Call::SetData(set(session, "/k", value.as_bytes()))),
        })
        .await
        .expect("send");
        tx.send(pb::PipelineRequest {
            id: 2 * i + 1,
            call: Some(Call::GetData(get(session, "/k"))),
        })
        .await
        .expect("send");
    }
    let by_id = collect(&mut answers, 2 * rounds as usize).await;
    for i in 0..rounds {
        let Some(Answer::SetData(written)) = by_id.get(&(2 * i)) else {
            panic!("set {i} answered {:?}", by_id.get(&(2 * i)));
        };
        let Some(Answer::GetData(read)) = by_id.get(&(2 * i + 1)) else {
            panic!("get {i} answered {:?}", by_id.get(&(2 * i + 1)));
        };
        let (written, read_stat) = (
            written.stat.as_ref().expect("stat"),
            read.stat.as_ref().expect("stat"),
        );
        assert!(
            read_stat.version >= written.version,
            "read {i} saw version {} before its session's write of version {}",
            read_stat.version,
            written.version
        );
    }
}

#[tokio::test]
async fn a_stream_at_its_limit_is_held_back_and_loses_nothing() {
    let node = TestNode::start(&["--max-pipelined-requests", "4"]).expect("node");
    let mut api = connect(&node).await;
    api.create(create(0, "/n", b"")).await.expect("create");
    let (tx, mut answers) = open(&mut api).await;
    let total = 500u64;
    let sender = tokio::spawn(async move {
        for id in 0..total {
            let call = if id % 2 == 0 {
                Call::SetData(set(0, "/n", &id.to_be_bytes()))
            } else {
                Call::GetData(get(0, "/n"))
            };
            tx.send(pb::PipelineRequest {
                id,
                call: Some(call),
            })
            .await
            .expect("send");
        }
        // Closing the sending half still lets every request be answered.
    });
    let by_id = collect(&mut answers, total as usize).await;
    sender.await.expect("sender");
    assert!((0..total).all(|id| by_id.contains_key(&id)));
    assert!(
        by_id.values().all(|a| !matches!(a, Answer::Error(_))),
        "no call failed"
    );
    let end = tokio::time::timeout(ANSWER_LIMIT, answers.next())
        .await
        .expect("the stream ends once the client's half is closed and all is answered");
    assert!(end.is_none(), "no answer beyond the requests: {end:?}");
    let (_, stat) = {
        let r = api.get_data(get(0, "/n")).await.expect("get").into_inner();
        (r.data, r.stat.expect("stat"))
    };
    assert_eq!(stat.version, i32::try_from(total / 2).expect("small"));

    // Pipelined calls count in the per-method metrics under their own names.
    let sets = node
        .metric("synod_requests_seconds_count{method=\"SetData\"}")
        .expect("scrape");
    let gets = node
        .metric("synod_requests_seconds_count{method=\"GetData\"}")
        .expect("scrape");
    assert_eq!(sets, Some((total / 2) as f64));
    assert!(gets.is_some_and(|g| g >= (total / 2) as f64), "{gets:?}");
}

#[tokio::test]
async fn the_client_pipeline_fails_its_calls_when_the_server_is_gone() {
    let mut node = TestNode::start(&[]).expect("node");
    let api = connect(&node).await;
    let pipeline = Pipeline::open(api).await.expect("pipeline");
    let answer = pipeline
        .call(Call::Create(create(0, "/alive", b"")))
        .await
        .expect("a call while the server is up");
    assert!(matches!(answer, Answer::Create(_)));
    let error = pipeline
        .call(Call::GetData(get(0, "/none")))
        .await
        .expect_err("no such node");
    assert_eq!(error.code(), tonic::Code::NotFound);

    node.kill().expect("kill");
    let failed = tokio::time::timeout(ANSWER_LIMIT, async {
        loop {
            match pipeline.call(Call::GetData(get(0, "/alive"))).await {
                Err(status) => break status,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("calls fail, not hang, once the server is gone");
    assert_eq!(failed.code(), tonic::Code::Unavailable);
    assert!(pipeline.is_ended());
}
