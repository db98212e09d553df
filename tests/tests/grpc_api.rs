//! End-to-end tests of the gRPC API against a real `synod` process: every
//! operation, the error model, watch delivery and order, session expiry, and
//! bad input answered with the right error and no change of state.

use std::time::Duration;

use prost::Message as _;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::TestNode;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

type Api = CoordinationClient<Channel>;

async fn connect(node: &TestNode) -> Api {
    CoordinationClient::connect(format!("http://{}", node.endpoint()))
        .await
        .expect("connect")
}

async fn session(api: &mut Api, timeout_ms: i64) -> i64 {
    api.create_session(pb::CreateSessionRequest { timeout_ms })
        .await
        .expect("session")
        .into_inner()
        .session_id
}

fn code_of(status: &tonic::Status) -> pb::ErrorCode {
    let detail = pb::ErrorDetail::decode(status.details()).expect("error detail in status");
    pb::ErrorCode::try_from(detail.code).expect("known code")
}

fn create(session_id: i64, path: &str, data: &[u8], mode: pb::CreateMode) -> pb::CreateRequest {
    pb::CreateRequest {
        session_id,
        path: path.into(),
        data: data.to_vec(),
        acl: vec![],
        mode: mode as i32,
        ttl_ms: 0,
    }
}

async fn get(api: &mut Api, path: &str) -> Result<(Vec<u8>, pb::Stat), pb::ErrorCode> {
    api.get_data(pb::GetDataRequest {
        session_id: 0,
        path: path.into(),
        watch: false,
        linearizable: false,
    })
    .await
    .map(|r| {
        let r = r.into_inner();
        (r.data, r.stat.expect("stat"))
    })
    .map_err(|s| code_of(&s))
}

#[tokio::test]
async fn every_operation_round_trips() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    let s = session(&mut api, 10_000).await;

    let created = api
        .create(create(s, "/app", b"v1", pb::CreateMode::Persistent))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.path, "/app");
    let stat = created.stat.unwrap();
    assert_eq!(
        (stat.version, stat.data_length, stat.czxid == stat.mzxid),
        (0, 2, true)
    );

    let seq = api
        .create(create(
            s,
            "/app/job-",
            b"",
            pb::CreateMode::PersistentSequential,
        ))
        .await
        .unwrap();
    assert_eq!(seq.into_inner().path, "/app/job-0000000000");
    let eph = api
        .create(create(s, "/app/me", b"", pb::CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_eq!(eph.into_inner().stat.unwrap().ephemeral_owner, s);

    let set = api
        .set_data(pb::SetDataRequest {
            session_id: s,
            path: "/app".into(),
            data: b"v2".to_vec(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.stat.unwrap().version, 1);
    let (data, stat) = get(&mut api, "/app").await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.version, stat.num_children),
        (&b"v2"[..], 1, 2)
    );

    let children = api
        .get_children(pb::GetChildrenRequest {
            session_id: s,
            path: "/app".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(children.children, ["job-0000000000", "me"]);

    let exists = api
        .exists(pb::ExistsRequest {
            session_id: s,
            path: "/nope".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap();
    assert!(exists.into_inner().stat.is_none());

    let all = api
        .get_all_children_number(pb::GetAllChildrenNumberRequest {
            session_id: s,
            path: "/app".into(),
        })
        .await
        .unwrap();
    assert_eq!(all.into_inner().number, 2);

    let ephemerals = api
        .get_ephemerals(pb::GetEphemeralsRequest {
            session_id: s,
            prefix: "/app".into(),
        })
        .await
        .unwrap();
    assert_eq!(ephemerals.into_inner().paths, ["/app/me"]);

    api.check(pb::CheckRequest {
        session_id: s,
        path: "/app".into(),
        version: 1,
    })
    .await
    .unwrap();
    let acl = api
        .get_acl(pb::GetAclRequest {
            session_id: s,
            path: "/app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acl.acl,
        [pb::Acl {
            perms: 31,
            scheme: "world".into(),
            id: "anyone".into()
        }]
    );

    let read = api
        .multi_read(pb::MultiReadRequest {
            session_id: s,
            ops: vec![
                pb::ReadOp {
                    op: Some(pb::read_op::Op::GetData(pb::GetDataRequest {
                        session_id: s,
                        path: "/app".into(),
                        watch: false,
                        linearizable: false,
                    })),
                },
                pb::ReadOp {
                    op: Some(pb::read_op::Op::GetChildren(pb::GetChildrenRequest {
                        session_id: s,
                        path: "/none".into(),
                        watch: false,
                        linearizable: false,
                    })),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.results[0].data, b"v2");
    assert_eq!(read.results[1].error, pb::ErrorCode::NoNode as i32);

    api.sync(pb::SyncRequest {
        session_id: s,
        path: "/app".into(),
    })
    .await
    .unwrap();
    api.delete(pb::DeleteRequest {
        session_id: s,
        path: "/app/job-0000000000".into(),
        version: -1,
    })
    .await
    .unwrap();
    assert_eq!(
        get(&mut api, "/app/job-0000000000").await,
        Err(pb::ErrorCode::NoNode)
    );

    api.close_session(pb::CloseSessionRequest { session_id: s })
        .await
        .unwrap();
    assert_eq!(
        get(&mut api, "/app/me").await,
        Err(pb::ErrorCode::NoNode),
        "ephemeral dies with its session"
    );
}

#[tokio::test]
async fn multi_is_atomic_and_reports_like_zookeeper() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    let op = |o: pb::op::Op| pb::Op { op: Some(o) };
    let failed = api
        .multi(pb::MultiRequest {
            session_id: 0,
            ops: vec![
                op(pb::op::Op::Create(create(
                    0,
                    "/m",
                    b"",
                    pb::CreateMode::Persistent,
                ))),
                op(pb::op::Op::Delete(pb::DeleteRequest {
                    session_id: 0,
                    path: "/missing".into(),
                    version: -1,
                })),
                op(pb::op::Op::Create(create(
                    0,
                    "/m2",
                    b"",
                    pb::CreateMode::Persistent,
                ))),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.committed);
    let codes: Vec<i32> = failed.results.iter().map(|r| r.error).collect();
    assert_eq!(
        codes,
        [
            pb::ErrorCode::Ok as i32,
            pb::ErrorCode::NoNode as i32,
            pb::ErrorCode::RuntimeInconsistency as i32
        ]
    );
    assert!(failed.results[0].rolled_back);
    assert_eq!(
        get(&mut api, "/m").await,
        Err(pb::ErrorCode::NoNode),
        "nothing half-applied"
    );

    let ok = api
        .multi(pb::MultiRequest {
            session_id: 0,
            ops: vec![
                op(pb::op::Op::Create(create(
                    0,
                    "/m",
                    b"a",
                    pb::CreateMode::Persistent,
                ))),
                op(pb::op::Op::SetData(pb::SetDataRequest {
                    session_id: 0,
                    path: "/m".into(),
                    data: b"b".to_vec(),
                    version: 0,
                })),
                op(pb::op::Op::Check(pb::CheckRequest {
                    session_id: 0,
                    path: "/m".into(),
                    version: 1,
                })),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.committed);
    assert_eq!(get(&mut api, "/m").await.unwrap().0, b"b");
}

#[tokio::test]
async fn bad_input_gets_the_right_error_and_changes_nothing() {
    let node = TestNode::start(&["--max-data-bytes", "1024", "--max-request-bytes", "4096"])
        .expect("node");
    let mut api = connect(&node).await;
    let before = get(&mut api, "/").await.unwrap().1;

    for bad in [
        "",
        "no-slash",
        "/trailing/",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/ctl\u{1}",
    ] {
        let err = api
            .create(create(0, bad, b"", pb::CreateMode::Persistent))
            .await
            .unwrap_err();
        assert_eq!(code_of(&err), pb::ErrorCode::InvalidPath, "{bad:?}");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    let err = api
        .create(create(
            0,
            "/zookeeper/mine",
            b"",
            pb::CreateMode::Persistent,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        pb::ErrorCode::InvalidPath,
        "reserved subtree"
    );

    let err = api
        .create(create(0, "/big", &[0u8; 2000], pb::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), pb::ErrorCode::TooLarge);
    // Over the request limit: refused before it is decoded.
    let err = api
        .create(create(
            0,
            "/huge",
            &[0u8; 10_000],
            pb::CreateMode::Persistent,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    let err = api
        .create(create(424242, "/x", b"", pb::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        pb::ErrorCode::SessionExpired,
        "unknown session"
    );
    let err = api
        .create(create(0, "/eph", b"", pb::CreateMode::Ephemeral))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        pb::ErrorCode::BadArguments,
        "ephemeral without session"
    );
    let mut bad_mode = create(0, "/x", b"", pb::CreateMode::Persistent);
    bad_mode.mode = 99;
    assert_eq!(
        code_of(&api.create(bad_mode).await.unwrap_err()),
        pb::ErrorCode::BadArguments
    );
    let mut bad_acl = create(0, "/x", b"", pb::CreateMode::Persistent);
    bad_acl.acl = vec![pb::Acl {
        perms: 1,
        scheme: "ip".into(),
        id: "999.1.1.1".into(),
    }];
    assert_eq!(
        code_of(&api.create(bad_acl).await.unwrap_err()),
        pb::ErrorCode::InvalidAcl
    );

    api.create(create(0, "/v", b"", pb::CreateMode::Persistent))
        .await
        .unwrap();
    let err = api
        .set_data(pb::SetDataRequest {
            session_id: 0,
            path: "/v".into(),
            data: vec![],
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (code_of(&err), err.code()),
        (pb::ErrorCode::BadVersion, tonic::Code::FailedPrecondition)
    );
    api.create(create(0, "/v/c", b"", pb::CreateMode::Persistent))
        .await
        .unwrap();
    let err = api
        .delete(pb::DeleteRequest {
            session_id: 0,
            path: "/v".into(),
            version: -1,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), pb::ErrorCode::NotEmpty);
    let err = api
        .create(create(0, "/v", b"", pb::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(
        (code_of(&err), err.code()),
        (pb::ErrorCode::NodeExists, tonic::Code::AlreadyExists)
    );

    // A malformed protobuf body is refused by the server, which stays up.
    let mut raw = tonic::client::Grpc::new(
        Channel::from_shared(format!("http://{}", node.endpoint()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/synod.v1.Coordination/Create");
    let garbage = RawBytes(vec![0xff, 0xff, 0xff, 0xff, 0x0f]);
    let err = raw
        .unary::<RawBytes, RawBytes, _>(tonic::Request::new(garbage), path, RawCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");

    let after = get(&mut api, "/").await.unwrap().1;
    assert_eq!(
        after.num_children,
        before.num_children + 1,
        "only /v was created"
    );
}

#[tokio::test]
async fn watches_fire_before_the_response_that_observes_the_change() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    let watcher = session(&mut api, 10_000).await;
    let mut events = api
        .watch_events(pb::WatchEventsRequest {
            session_id: watcher,
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();

    // exists on a missing node leaves a watch that fires on creation.
    api.exists(pb::ExistsRequest {
        session_id: watcher,
        path: "/w".into(),
        watch: true,
        linearizable: false,
    })
    .await
    .unwrap();
    api.create(create(0, "/w", b"", pb::CreateMode::Persistent))
        .await
        .unwrap();
    // The watcher's next response says how many events precede it.
    let seen = api
        .get_data(pb::GetDataRequest {
            session_id: watcher,
            path: "/w".into(),
            watch: true,
            linearizable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.header.unwrap().watch_seq, 1);
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(
        (e.r#type, e.path.as_str(), e.seq),
        (pb::EventType::NodeCreated as i32, "/w", 1)
    );

    api.add_watch(pb::AddWatchRequest {
        session_id: watcher,
        path: "/w".into(),
        mode: pb::AddWatchMode::PersistentRecursive as i32,
    })
    .await
    .unwrap();
    api.set_data(pb::SetDataRequest {
        session_id: 0,
        path: "/w".into(),
        data: b"x".to_vec(),
        version: -1,
    })
    .await
    .unwrap();
    api.create(create(0, "/w/deep", b"", pb::CreateMode::Persistent))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push((pb::EventType::try_from(e.r#type).unwrap(), e.path, e.seq));
    }
    assert_eq!(
        got,
        [
            (pb::EventType::NodeDataChanged, "/w".to_owned(), 2),
            (pb::EventType::NodeCreated, "/w/deep".to_owned(), 3)
        ],
        "one event per change, in apply order, the one-shot data watch and the recursive one merged"
    );

    // A reconnecting stream resumes after the last event it saw.
    drop(events);
    let mut resumed = api
        .watch_events(pb::WatchEventsRequest {
            session_id: watcher,
            after_seq: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let e = resumed.next().await.unwrap().unwrap();
    assert_eq!(e.seq, 2);

    api.remove_watches(pb::RemoveWatchesRequest {
        session_id: watcher,
        path: "/w".into(),
        watcher_type: pb::WatcherType::Any as i32,
    })
    .await
    .unwrap();
    let err = api
        .remove_watches(pb::RemoveWatchesRequest {
            session_id: watcher,
            path: "/w".into(),
            watcher_type: pb::WatcherType::Any as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), pb::ErrorCode::NoWatcher);
}

#[tokio::test]
async fn expired_session_loses_its_ephemerals_and_watchers_hear_it() {
    let node =
        TestNode::start(&["--min-session-timeout-ms", "500", "--tick-ms", "50"]).expect("node");
    let mut api = connect(&node).await;
    let doomed = session(&mut api, 500).await;
    let observer = session(&mut api, 10_000).await;
    api.create(create(doomed, "/lock", b"", pb::CreateMode::Ephemeral))
        .await
        .unwrap();
    api.exists(pb::ExistsRequest {
        session_id: observer,
        path: "/lock".into(),
        watch: true,
        linearizable: false,
    })
    .await
    .unwrap();
    let mut events = api
        .watch_events(pb::WatchEventsRequest {
            session_id: observer,
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // Keep the observer alive while the doomed session stays silent.
    let mut keep = api.clone();
    let (ping_tx, ping_rx) = tokio::sync::mpsc::channel(4);
    let mut pongs = keep
        .keep_alive(tokio_stream::wrappers::ReceiverStream::new(ping_rx))
        .await
        .unwrap()
        .into_inner();
    let event = loop {
        ping_tx
            .send(pb::KeepAliveRequest {
                session_id: observer,
            })
            .await
            .unwrap();
        assert!(pongs.next().await.unwrap().is_ok());
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            break e.unwrap();
        }
    };
    assert_eq!(
        (event.r#type, event.path.as_str()),
        (pb::EventType::NodeDeleted as i32, "/lock")
    );
    assert_eq!(get(&mut api, "/lock").await, Err(pb::ErrorCode::NoNode));
    let err = api
        .create(create(doomed, "/again", b"", pb::CreateMode::Ephemeral))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), pb::ErrorCode::SessionExpired);
}

#[tokio::test]
async fn acls_and_digest_auth() {
    let super_digest = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="; // super:test
    let node = TestNode::start(&["--super-digest", super_digest]).expect("node");
    let mut api = connect(&node).await;
    let alice = session(&mut api, 10_000).await;
    let other = session(&mut api, 10_000).await;
    api.add_auth(pb::AddAuthRequest {
        session_id: alice,
        scheme: "digest".into(),
        auth: b"alice:pw".to_vec(),
    })
    .await
    .unwrap();
    let mut private = create(alice, "/private", b"secret", pb::CreateMode::Persistent);
    private.acl = vec![pb::Acl {
        perms: 31,
        scheme: "auth".into(),
        id: String::new(),
    }];
    api.create(private).await.unwrap();

    let denied = api
        .get_data(pb::GetDataRequest {
            session_id: other,
            path: "/private".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (code_of(&denied), denied.code()),
        (pb::ErrorCode::NoAuth, tonic::Code::PermissionDenied)
    );
    let mine = api
        .get_data(pb::GetDataRequest {
            session_id: alice,
            path: "/private".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap();
    assert_eq!(mine.into_inner().data, b"secret");

    api.add_auth(pb::AddAuthRequest {
        session_id: other,
        scheme: "digest".into(),
        auth: b"super:test".to_vec(),
    })
    .await
    .unwrap();
    api.get_data(pb::GetDataRequest {
        session_id: other,
        path: "/private".into(),
        watch: false,
        linearizable: false,
    })
    .await
    .unwrap();

    let err = api
        .add_auth(pb::AddAuthRequest {
            session_id: other,
            scheme: "kerberos".into(),
            auth: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), pb::ErrorCode::AuthFailed);
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly() {
    let mut node = TestNode::start(&[]).expect("node");
    assert!(
        node.terminate(Duration::from_secs(10)).unwrap(),
        "exit 0 after SIGTERM"
    );
}

/// Bytes passed through unchanged, to send malformed protobuf.
#[derive(Debug, Clone)]
struct RawBytes(Vec<u8>);

#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = RawBytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: RawBytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use tonic::codegen::Bytes;
        let bytes = Bytes::from(item.0);
        bytes::BufMut::put(dst, bytes);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<RawBytes>, tonic::Status> {
        use bytes::Buf as _;
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(RawBytes(bytes.to_vec())))
    }
}

#[tokio::test]
async fn health_and_prometheus_metrics() {
    let node = TestNode::start(&[]).expect("node");
    let mut api = connect(&node).await;
    api.create(create(0, "/m", b"", pb::CreateMode::Persistent))
        .await
        .unwrap();
    let _ = api
        .get_data(pb::GetDataRequest {
            session_id: 0,
            path: "/none".into(),
            watch: false,
            linearizable: false,
        })
        .await;
    let (status, body) = node.http_get("/healthz").unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = node.http_get("/readyz").unwrap();
    assert_eq!(status, 200);
    let (status, text) = node.http_get("/metrics").unwrap();
    assert_eq!(status, 200);
    for expected in [
        "synod_requests_seconds_count{method=\"Create\"} 1",
        "synod_request_errors_total{method=\"GetData\"} 1",
        "synod_znodes 5",
        "# TYPE synod_fsync_seconds histogram",
        "synod_sessions 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}
