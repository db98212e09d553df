//! The ZooKeeper-protocol listener against a real third-party client (the
//! `zookeeper-client` crate) and raw sockets, on real `synod` processes:
//! sessions, one-shot, persistent and recursive watches, multi and
//! multiRead, ACLs and auth, failover to another member keeping the
//! session and its ephemerals, four-letter words, and bad input.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use synod_tests::{Ensemble, TestNode, free_addr};
use zookeeper_client as zk;

const LIMIT: Duration = Duration::from_secs(10);

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

async fn connect(hosts: &str) -> zk::Client {
    tokio::time::timeout(
        LIMIT,
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .connect(hosts),
    )
    .await
    .expect("connects in time")
    .expect("connects")
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

async fn event<F: std::future::Future<Output = zk::WatchedEvent>>(f: F) -> zk::WatchedEvent {
    tokio::time::timeout(LIMIT, f).await.expect("event in time")
}

/// A four-letter word's answer, read to EOF as exporters read it.
fn word(addr: SocketAddr, word: &str) -> String {
    try_word(addr, word).expect("an answer")
}

/// The answer, or the error of a member that is down.
fn try_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(LIMIT))?;
    stream.write_all(word.as_bytes())?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_client_works_across_the_ensemble() {
    let ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let writer = connect(&ensemble.zookeeper_addr(1).to_string()).await;
    let reader = connect(&ensemble.zookeeper_addr(2).to_string()).await;

    // Reserved nodes, as ZooKeeper has them.
    let mut reserved = reader.list_children("/zookeeper").await.expect("ls");
    reserved.sort();
    assert_eq!(reserved, vec!["config", "quota"]);

    // Data, versions and a one-shot data watch fired by another member's
    // client.
    let (stat, _) = writer.create("/app", b"v0", &open()).await.expect("create");
    assert_eq!(stat.version, 0);
    reader.sync("/app").await.expect("sync");
    let (data, _, watch) = reader.get_and_watch_data("/app").await.expect("get");
    assert_eq!(data, b"v0");
    let stat = writer.set_data("/app", b"v1", Some(0)).await.expect("set");
    assert_eq!(stat.version, 1);
    let fired = event(watch.changed()).await;
    assert_eq!(fired.event_type, zk::EventType::NodeDataChanged);
    assert_eq!(fired.path, "/app");
    // The event came before this read's answer, which sees the change.
    let (data, stat) = reader.get_data("/app").await.expect("get after event");
    assert_eq!((data.as_slice(), stat.version), (&b"v1"[..], 1));
    assert!(matches!(
        writer.set_data("/app", b"x", Some(0)).await,
        Err(zk::Error::BadVersion)
    ));

    // exists watches a missing node and fires when it is created.
    let (found, watch) = reader
        .check_and_watch_stat("/app/later")
        .await
        .expect("exists");
    assert!(found.is_none());
    writer
        .create("/app/later", b"", &open())
        .await
        .expect("create child");
    assert_eq!(
        event(watch.changed()).await.event_type,
        zk::EventType::NodeCreated
    );

    // A recursive watch sees creations, changes and deletions below it,
    // and no child events.
    let mut recursive = reader
        .watch("/app", zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("addWatch");
    writer
        .create("/app/deep", b"", &open())
        .await
        .expect("create");
    writer.set_data("/app/deep", b"1", None).await.expect("set");
    writer.delete("/app/deep", None).await.expect("delete");
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let fired = event(recursive.changed()).await;
        kinds.push((fired.event_type, fired.path));
    }
    assert_eq!(
        kinds,
        vec![
            (zk::EventType::NodeCreated, "/app/deep".to_owned()),
            (zk::EventType::NodeDataChanged, "/app/deep".to_owned()),
            (zk::EventType::NodeDeleted, "/app/deep".to_owned()),
        ]
    );
    drop(recursive);

    // Sequential names increase; the suffix counts every child creation.
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, first) = writer.create("/app/job-", b"", &seq).await.expect("seq");
    let (_, second) = writer.create("/app/job-", b"", &seq).await.expect("seq");
    assert!(
        second.into_i64() > first.into_i64(),
        "{first} then {second}"
    );

    // multi: all or nothing, with ZooKeeper's per-op results.
    let mut multi = writer.new_multi_writer();
    multi.add_create("/app/m1", b"a", &open()).expect("op");
    multi.add_set_data("/app", b"v2", Some(1)).expect("op");
    multi.add_check_version("/app/later", 0).expect("op");
    let results = multi.commit().await.expect("multi commits");
    assert_eq!(results.len(), 3);
    let mut failing = writer.new_multi_writer();
    failing.add_create("/app/m2", b"", &open()).expect("op");
    failing.add_set_data("/app", b"v3", Some(99)).expect("op");
    match failing.commit().await {
        Err(zk::MultiWriteError::OperationFailed { index, source }) => {
            assert_eq!((index, source), (1, zk::Error::BadVersion));
        }
        other => panic!("expected the second op to fail: {other:?}"),
    }
    assert!(
        writer
            .check_stat("/app/m2")
            .await
            .expect("exists")
            .is_none()
    );
    let mut reads = reader.new_multi_reader();
    reads.add_get_data("/app/m1").expect("op");
    reads.add_get_data("/app/missing").expect("op");
    reads.add_get_children("/app").expect("op");
    reader.sync("/app").await.expect("sync");
    let results = reads.commit().await.expect("multiRead");
    assert!(matches!(&results[0], zk::MultiReadResult::Data { data, .. } if data == b"a"));
    assert!(matches!(
        &results[1],
        zk::MultiReadResult::Error {
            err: zk::Error::NoNode
        }
    ));
    assert!(
        matches!(&results[2], zk::MultiReadResult::Children { children } if children.len() == 4)
    );

    // Ephemerals live with their session.
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let owner = connect(&ensemble.zookeeper_addr(3).to_string()).await;
    owner
        .create("/app/lock", b"", &eph)
        .await
        .expect("ephemeral");
    assert_eq!(
        owner.list_ephemerals("/").await.expect("getEphemerals"),
        vec!["/app/lock"]
    );
    // The reader's session is on another member, which may not have
    // applied the create yet: as with ZooKeeper, a sync orders the read
    // after it (without one the watch can fire NodeCreated instead).
    reader.sync("/app").await.expect("sync");
    let (stat, gone) = reader
        .check_and_watch_stat("/app/lock")
        .await
        .expect("exists");
    assert!(stat.is_some(), "the reader sees the ephemeral after a sync");
    drop(owner);
    assert_eq!(
        event(gone.changed()).await.event_type,
        zk::EventType::NodeDeleted
    );
    writer.sync("/app").await.expect("sync");
    assert_eq!(
        writer
            .count_descendants_number("/app")
            .await
            .expect("count"),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_and_digest_auth() {
    let ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let hosts = ensemble.zookeeper_hosts();
    let alice = connect(&hosts).await;
    alice
        .auth("digest", b"alice:secret")
        .await
        .expect("addauth");
    let users = alice.list_auth_users().await.expect("whoAmI");
    assert!(
        users
            .iter()
            .any(|u| u.scheme() == "digest" && u.user() == "alice"),
        "{users:?}"
    );
    let private = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    alice
        .create("/private", b"s", &private)
        .await
        .expect("create");
    let (acl, _) = alice.get_acl("/private").await.expect("getAcl");
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");

    let mallory = connect(&hosts).await;
    assert!(matches!(
        mallory.get_data("/private").await,
        Err(zk::Error::NoAuth)
    ));
    // A wrong digest password is not an error: it is just another id.
    mallory
        .auth("digest", b"alice:wrong")
        .await
        .expect("addauth");
    assert!(matches!(
        mallory.set_data("/private", b"x", None).await,
        Err(zk::Error::NoAuth)
    ));
    let (data, _) = alice.get_data("/private").await.expect("owner reads");
    assert_eq!(data, b"s");
}

/// Which member serves `session`, from each member's `cons` listing.
fn member_serving(ensemble: &Ensemble, session: i64) -> Option<usize> {
    let needle = format!("sid={session:#x}");
    ensemble.ids().into_iter().find(|&id| {
        try_word(ensemble.zookeeper_addr(id), "cons").is_ok_and(|cons| cons.contains(&needle))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_fails_over_to_another_member_with_its_ephemerals() {
    let mut ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let client = connect(&ensemble.zookeeper_hosts()).await;
    let session = client.session_id().0;
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    client.create("/held", b"", &eph).await.expect("ephemeral");
    let (_, _, watch) = client.get_and_watch_data("/held").await.expect("watch");
    let serving = blocking(|| member_serving(&ensemble, session)).expect("a member serves it");
    blocking(|| ensemble.kill(serving)).expect("kill");
    // The client moves to another member with the same session: its
    // ephemeral is still there, and it can write.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.set_data("/held", b"after", None).await {
            Ok(_) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing_free_wait(&error).await;
            }
            Err(error) => panic!("no write after failover: {error}"),
        }
    }
    assert_eq!(client.session_id().0, session, "the same session");
    let moved_to = blocking(|| member_serving(&ensemble, session)).expect("served again");
    assert_ne!(moved_to, serving);
    let other = connect(&ensemble.zookeeper_addr(moved_to).to_string()).await;
    let stat = other
        .check_stat("/held")
        .await
        .expect("exists")
        .expect("still there");
    assert_eq!(stat.ephemeral_owner, session);
    // The data watch set before the failover was set again (setWatches)
    // and saw the write.
    let fired = event(watch.changed()).await;
    assert_eq!(fired.event_type, zk::EventType::NodeDataChanged);
}

async fn tracing_free_wait(_error: &zk::Error) {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn zookeeper_node(extra: &[&str]) -> (TestNode, SocketAddr) {
    let zk_addr = free_addr().expect("address");
    let addr_flag = zk_addr.to_string();
    let mut args = vec!["--zookeeper-addr", &addr_flag];
    args.extend_from_slice(extra);
    let node = TestNode::start(&args).expect("node starts");
    (node, zk_addr)
}

/// Sends a handshake for a new session by hand: the client has seen
/// `last_zxid` and asks for `timeout_ms`.
fn handshake(addr: SocketAddr, last_zxid: i64, timeout_ms: i32) -> TcpStream {
    attach(addr, 0, &[0; 16], last_zxid, timeout_ms)
}

/// Sends a handshake for session `session` (0: a new one) by hand.
fn attach(
    addr: SocketAddr,
    session: i64,
    password: &[u8],
    last_zxid: i64,
    timeout_ms: i32,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&last_zxid.to_be_bytes());
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.extend_from_slice(&session.to_be_bytes());
    body.extend_from_slice(&(password.len() as i32).to_be_bytes());
    body.extend_from_slice(password);
    body.push(0);
    send(&mut stream, &body);
    stream
}

/// The session id and password of a connect response.
fn session_of(reply: &[u8]) -> (i32, i64, Vec<u8>) {
    let timeout = i32::from_be_bytes(reply[4..8].try_into().expect("4 bytes"));
    let session = i64::from_be_bytes(reply[8..16].try_into().expect("8 bytes"));
    (timeout, session, reply[20..36].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moved_to_another_member_leaves_the_old_connection() {
    let ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    blocking(|| {
        let mut first = handshake(ensemble.zookeeper_addr(1), 0, 10_000);
        let (timeout, session, password) = session_of(&receive(&mut first).expect("connected"));
        assert!(timeout > 0 && session > 0);
        // A wrong password is refused as an expired session.
        let mut wrong = attach(ensemble.zookeeper_addr(2), session, &[9; 16], 0, 10_000);
        let (timeout, refused, _) = session_of(&receive(&mut wrong).expect("an answer"));
        assert_eq!((timeout, refused), (0, 0), "refused as expired");
        // The right password on another member takes the session there.
        let mut second = attach(ensemble.zookeeper_addr(2), session, &password, 0, 10_000);
        let (timeout, moved, same_password) =
            session_of(&receive(&mut second).expect("re-attached"));
        assert!(timeout > 0);
        assert_eq!((moved, &same_password), (session, &password));
        // The member the client left lets go of its connection.
        assert!(closed(&mut first), "the old connection is closed");
        // The new one works: a ping.
        let mut ping = (-2i32).to_be_bytes().to_vec();
        ping.extend_from_slice(&11i32.to_be_bytes());
        send(&mut second, &ping);
        let reply = receive(&mut second).expect("ping reply");
        assert_eq!(&reply[12..16], &0i32.to_be_bytes());
        // An unknown session is refused as expired.
        let mut gone = attach(
            ensemble.zookeeper_addr(3),
            session + 1000,
            &password,
            0,
            10_000,
        );
        let (timeout, _, _) = session_of(&receive(&mut gone).expect("an answer"));
        assert_eq!(timeout, 0);
    });
}

/// Connects and completes a handshake for a new session by hand.
fn raw_session(addr: SocketAddr) -> TcpStream {
    let mut stream = handshake(addr, 0, 10_000);
    let reply = receive(&mut stream).expect("connect response");
    assert_eq!(reply.len(), 4 + 4 + 8 + 4 + 16 + 1);
    stream
}

fn send(stream: &mut TcpStream, body: &[u8]) {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).expect("write");
}

/// One frame, or `None` at EOF (the server closed the connection).
fn receive(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read: {e}"),
    }
    let mut frame = vec![0; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).expect("frame");
    Some(frame)
}

fn closed(stream: &mut TcpStream) -> bool {
    receive(stream).is_none()
}

/// A request frame: xid, opcode, then `path` as a jute ustring, then
/// `tail`.
fn request(xid: i32, opcode: i32, path: &str, tail: &[u8]) -> Vec<u8> {
    let mut body = xid.to_be_bytes().to_vec();
    body.extend_from_slice(&opcode.to_be_bytes());
    body.extend_from_slice(&(path.len() as i32).to_be_bytes());
    body.extend_from_slice(path.as_bytes());
    body.extend_from_slice(tail);
    body
}

/// A sync and a getData sent together, on a member other than the one the
/// write went through: the getData must not run before the sync's barrier
/// (a read index, not a log entry) has been applied, so it always finds
/// the node, and the replies come in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_with_a_sync_sees_what_was_committed_before_it() {
    let ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let writer = connect(&ensemble.zookeeper_addr(1).to_string()).await;
    for reader in [2, 3] {
        let mut stream = blocking(|| raw_session(ensemble.zookeeper_addr(reader)));
        for i in 0..25 {
            let path = format!("/synced-{reader}-{i}");
            writer
                .create(&path, b"there", &open())
                .await
                .expect("create");
            let frames = blocking(|| {
                let mut both = Vec::new();
                // sync = 9, getData = 4 (no watch).
                for body in [
                    request(2 * i, 9, &path, &[]),
                    request(2 * i + 1, 4, &path, &[0]),
                ] {
                    both.extend_from_slice(&(body.len() as i32).to_be_bytes());
                    both.extend_from_slice(&body);
                }
                stream.write_all(&both).expect("write");
                [receive(&mut stream), receive(&mut stream)]
            });
            let [Some(sync), Some(get)] = frames else {
                panic!("member {reader} closed the connection");
            };
            let header = |reply: &[u8]| {
                let xid = i32::from_be_bytes(reply[0..4].try_into().expect("xid"));
                let err = i32::from_be_bytes(reply[12..16].try_into().expect("err"));
                (xid, err)
            };
            assert_eq!(
                header(&sync),
                (2 * i, 0),
                "the sync is answered first, without error"
            );
            assert_eq!(
                header(&get),
                (2 * i + 1, 0),
                "{path} is found on member {reader}"
            );
            let len = i32::from_be_bytes(get[16..20].try_into().expect("len")) as usize;
            assert_eq!(&get[20..20 + len], b"there");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_letter_words_and_bad_input() {
    let (node, addr) = blocking(|| {
        zookeeper_node(&[
            "--zookeeper-max-connections-per-ip",
            "8",
            "--four-letter-words",
            "ruok,srvr,mntr,envi",
        ])
    });
    blocking(|| {
        assert_eq!(word(addr, "ruok"), "imok");
        let srvr = word(addr, "srvr");
        assert!(srvr.starts_with("Zookeeper version: 3."), "{srvr}");
        assert!(srvr.contains("Mode: standalone"), "{srvr}");
        // Every mntr value but version and state is a number.
        for line in word(addr, "mntr").lines() {
            let (key, value) = line.split_once('\t').expect("key<TAB>value");
            if key != "zk_version" && key != "zk_server_state" {
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(word(addr, "envi").contains("zookeeper.version=3."));
        assert_eq!(
            word(addr, "cons"),
            "cons is not executed because it is not in the whitelist.\n"
        );

        // ZooKeeper's AdminServer commands, as JSON on the HTTP port.
        let (status, body) = node.http_get("/commands/mntr").expect("GET");
        assert_eq!(status, 200, "{body}");
        let monitor: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(monitor["command"], "monitor");
        assert!(monitor["error"].is_null());
        assert!(
            monitor["znode_count"].as_u64().is_some_and(|n| n >= 4),
            "{body}"
        );
        let (status, _) = node.http_get("/commands/nonsense").expect("GET");
        assert_eq!(status, 404);

        // Timeouts are clamped into the configured bounds (4 s by default).
        let mut short = handshake(addr, 0, 1);
        let reply = receive(&mut short).expect("connect response");
        assert_eq!(&reply[4..8], &4_000i32.to_be_bytes(), "negotiated timeout");
        // A client that has seen more than this member applied is refused
        // without an answer, so that it tries another member.
        let mut ahead = handshake(addr, 1 << 40, 10_000);
        assert!(closed(&mut ahead), "a client from the future is refused");
        drop(short);

        // A frame over the limit closes that connection only.
        let mut good = raw_session(addr);
        let mut big = raw_session(addr);
        big.write_all(&(2 * 1024 * 1024i32).to_be_bytes())
            .expect("write");
        assert!(closed(&mut big), "an oversized frame closes the connection");
        // Malformed jute (a create whose path length runs past the frame).
        let mut bad = raw_session(addr);
        let mut body = 1i32.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&1000i32.to_be_bytes());
        send(&mut bad, &body);
        assert!(closed(&mut bad), "malformed requests close the connection");
        // An unknown opcode is answered UNIMPLEMENTED, then closed.
        let mut unknown = raw_session(addr);
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&999i32.to_be_bytes());
        send(&mut unknown, &body);
        let reply = receive(&mut unknown).expect("a reply");
        assert_eq!(&reply[0..4], &7i32.to_be_bytes(), "the xid echoed");
        assert_eq!(&reply[12..16], &(-6i32).to_be_bytes(), "UNIMPLEMENTED");
        assert!(closed(&mut unknown));
        // The first connection still works: a ping.
        let mut ping = (-2i32).to_be_bytes().to_vec();
        ping.extend_from_slice(&11i32.to_be_bytes());
        send(&mut good, &ping);
        let reply = receive(&mut good).expect("ping reply");
        assert_eq!(&reply[0..4], &(-2i32).to_be_bytes());
        assert_eq!(&reply[12..16], &0i32.to_be_bytes());

        // Connections from one address beyond the limit are closed at once.
        // (The server lets go of the closed ones above as their tasks end.)
        std::thread::sleep(Duration::from_millis(300));
        let mut held: Vec<TcpStream> = (0..7).map(|_| raw_session(addr)).collect();
        let mut over = TcpStream::connect(addr).expect("connect");
        over.set_read_timeout(Some(LIMIT)).expect("timeout");
        assert!(closed(&mut over), "the ninth connection is refused");
        held.clear();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_config_lists_the_members_client_addresses() {
    let zk_addr = free_addr().expect("address");
    // The template names where clients reach node {id}: here the one node.
    let template = zk_addr.to_string();
    let (_node, addr) = blocking(|| {
        let addr_flag = zk_addr.to_string();
        let node = TestNode::start(&[
            "--zookeeper-addr",
            &addr_flag,
            "--zookeeper-address-template",
            &template,
        ])
        .expect("node starts");
        (node, zk_addr)
    });
    let client = connect(&addr.to_string()).await;
    let (data, _) = client.get_config().await.expect("getConfig");
    let text = String::from_utf8(data).expect("UTF-8");
    let mut lines = text.lines();
    let server = lines.next().expect("a server line");
    assert!(
        server.starts_with("server.1=") && server.ends_with(&format!(":participant;{addr}")),
        "{text}"
    );
    assert!(
        lines.next().is_some_and(|l| l.starts_with("version=")),
        "{text}"
    );
}

/// The bench's lean ZooKeeper client (`synod_tests::zkload`) against a real
/// node: pipelined requests are answered in order and matched to the right
/// request, error replies are counted without ending the loop, a request
/// of several calls (sync, then get) runs them in turn, and the session
/// closes cleanly. What the bench measures is only as good as this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_load_client_pipelines_and_matches_replies() {
    use synod_tests::zkload::{Call, ZkLoadSession, get_data_payload};
    let (_node, addr) = blocking(|| zookeeper_node(&[]));
    let endpoint = addr.to_string();
    let mut session = ZkLoadSession::connect(&endpoint, Duration::from_secs(10))
        .await
        .expect("session");
    assert_ne!(session.id(), 0);
    let root = session
        .call(&Call::create("/load", b""))
        .await
        .expect("create");
    assert_eq!(root.err, 0);

    // 200 creates, 16 outstanding; every fourth path twice, so 50 of them
    // fail with NODEEXISTS (-110) in the middle of the pipeline.
    let made = session
        .closed_loop(16, false, |place, n| {
            let k = n * 16 + place as u64;
            (k < 200).then(|| {
                let name = if k % 4 == 3 { k - 1 } else { k };
                vec![Call::create(
                    &format!("/load/n{name}"),
                    format!("v{name}").as_bytes(),
                )]
            })
        })
        .await
        .expect("creates");
    assert_eq!(made.latencies_us.len(), 200);
    assert_eq!(made.errors, 50);
    assert_eq!(
        made.first_error.as_deref(),
        Some("ZooKeeper error code -110")
    );

    // Set every one, then read each back through sync + get: each body is
    // the data its own path was given, so no reply went to another request.
    let set = session
        .closed_loop(8, false, |place, n| {
            let k = n * 8 + place as u64;
            (k < 200 && k % 4 != 3).then(|| {
                vec![Call::set_data(
                    &format!("/load/n{k}"),
                    format!("w{k}").as_bytes(),
                )]
            })
        })
        .await
        .expect("sets");
    assert_eq!((set.latencies_us.len(), set.errors), (150, 0));
    let read = session
        .closed_loop(8, true, |place, n| {
            let k = n * 8 + place as u64;
            (k < 200 && k % 4 != 3).then(|| {
                let path = format!("/load/n{k}");
                vec![Call::sync(&path), Call::get_data(&path)]
            })
        })
        .await
        .expect("reads");
    assert_eq!((read.bodies.len(), read.errors), (150, 0));
    for (place, n, body) in &read.bodies {
        let k = n * 8 + *place as u64;
        let data = get_data_payload(body).expect("data");
        assert_eq!(data, format!("w{k}").as_bytes(), "the read of /load/n{k}");
    }

    // A read of a missing node is an error reply (NONODE, -101).
    let missing = session
        .closed_loop(1, false, |_, n| {
            (n == 0).then(|| vec![Call::get_data("/load/none")])
        })
        .await
        .expect("read");
    assert_eq!(
        missing.first_error.as_deref(),
        Some("ZooKeeper error code -101")
    );
    session.close().await.expect("closes");
}
