//! A node's peer port and bad input: frames it must refuse (a non-member,
//! node id 0, another ensemble's name or cluster id, another receiver, an
//! oversized frame), payloads that are no consensus message, and bytes that
//! are not gRPC. The node must refuse or drop them and go on serving.

use synod_proto::v1::peer_client::PeerClient;

use super::*;

fn peer_frame(cluster: &str, from: u64, to: u64, payload: Vec<u8>) -> pb::PeerFrame {
    pb::PeerFrame {
        cluster: cluster.into(),
        from,
        to,
        payload: payload.into(),
        // Not known to the sender: taken by a node of any cluster id.
        cluster_id: 0,
        // No incarnation: decoded and checked like any frame, though the
        // consensus core counts no vote of a bound member claiming none.
        incarnation: 0,
        abstaining: false,
    }
}

/// Node `id`'s recorded cluster id, from its `synod_identity` metric.
fn recorded_cluster_id(ensemble: &Ensemble, id: usize) -> Option<u64> {
    let (_, metrics) = ensemble.node(id).http_get("/metrics").ok()?;
    let label = metrics.split("cluster_id=\"").nth(1)?.split('"').next()?;
    u64::from_str_radix(label, 16).ok().filter(|id| *id != 0)
}

/// Deterministic junk: bytes of a linear congruential generator.
fn junk(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peer_input() {
    // Small limits, so an oversized frame is cheap to send.
    let mut ensemble = start(
        3,
        &[
            "--max-data-bytes",
            "1024",
            "--max-request-bytes",
            "8192",
            "--max-peer-frame-bytes",
            "65536",
        ],
        None,
    );
    let target = 1u64;
    let cluster = ensemble.cluster().to_owned();
    // Once node 1 has recorded the ensemble's cluster id, frames stamped
    // with another one are refused, even under the same cluster name.
    let deadline = std::time::Instant::now() + READY;
    let known = loop {
        if let Some(id) = blocking(|| recorded_cluster_id(&ensemble, 1)) {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 recorded no cluster id"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut foreign = peer_frame(&cluster, 2, target, vec![1, 2, 3]);
    foreign.cluster_id = known ^ 1;
    let channel = Endpoint::from_shared(format!("http://{}", ensemble.peer_addr(1)))
        .expect("peer URI")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("node 1's peer port accepts connections");
    let mut peer = PeerClient::new(channel);

    // Streams the peer protocol says are refused.
    let refused = [
        (
            "a node that is not a member",
            peer_frame(&cluster, 99, target, vec![1, 2, 3]),
        ),
        ("node id 0", peer_frame(&cluster, 0, target, vec![1, 2, 3])),
        (
            "another ensemble",
            peer_frame("another-ensemble", 2, target, vec![1, 2, 3]),
        ),
        ("another node", peer_frame(&cluster, 2, 3, vec![1, 2, 3])),
        ("another cluster id under the same name", foreign),
        (
            "a member, but over the frame limit",
            peer_frame(&cluster, 2, target, vec![0; 200 * 1024]),
        ),
    ];
    for (what, frame) in refused {
        let answer = peer.exchange(tokio_stream::iter(vec![frame])).await;
        assert!(
            answer.is_err(),
            "a frame from {what} was accepted: {answer:?}"
        );
    }

    // Well-addressed frames whose payload is not a consensus message. The
    // node may refuse the stream or drop the frames; it must not fall over.
    let mut payloads = vec![
        vec![],
        vec![0],
        vec![0xff; 64],
        vec![0x80; 1000],
        vec![0; 4096],
    ];
    payloads.extend((0..40).map(|seed| junk(seed, 1 + (seed as usize * 97) % 3000)));
    for from in [2, 3] {
        let frames: Vec<pb::PeerFrame> = payloads
            .iter()
            .map(|payload| peer_frame(&cluster, from, target, payload.clone()))
            .collect();
        let _ = peer.exchange(tokio_stream::iter(frames)).await;
    }
    // And bytes that are not gRPC at all.
    for seed in 0..5 {
        use std::io::Write as _;
        if let Ok(mut raw) =
            std::net::TcpStream::connect_timeout(&ensemble.peer_addr(1), Duration::from_secs(2))
        {
            let _ = raw.write_all(&junk(1000 + seed, 4096));
        }
    }

    // The node is still up and in the ensemble, and writes through it are
    // replicated.
    assert!(
        blocking(|| ensemble.is_running(1)),
        "node 1 exited after bad peer input"
    );
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready after bad peer input");
    let mut apis = apis(&ensemble, &ensemble.ids());
    create_on_any(&mut apis[..1], "/still-serving", b"yes", WRITE).await;
    for id in [2, 3] {
        let node = format!("node {id}");
        wait_for_data(&mut apis[id - 1], "/still-serving", b"yes", CONVERGE, &node).await;
    }
    assert!(blocking(|| ensemble.is_running(1)), "node 1 exited");
}
