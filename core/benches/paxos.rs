//! Throughput of the Multi-Paxos replica, `synod_core::paxos::Replica`:
//! three replicas in one process, no disk and no network. Every `Persist`
//! is reported durable at once and every message is handed to its
//! receiver in FIFO order, so what is measured is the consensus code
//! itself: building and cloning batches, the acceptors' logs, vote
//! counting, commit and the `Apply` commands.
//!
//! * `paxos/commit/<batch>`: the leader proposes batches of `<batch>`
//!   values, keeping 8 batches in flight (pipelining), and the cluster runs
//!   until all are committed at the leader. Throughput is committed entries
//!   per second (criterion's elements/s). Payload: a `u64` per entry.
//! * `paxos/commit_100b/<batch>`: the same with 100-byte `Vec<u8>` payloads,
//!   which are cloned into the leader's log, each follower's message and
//!   log, and the `Apply` commands, as a real shell would see them.
//!
//! Run: `cargo bench -p synod-core --bench paxos`. See `docs/benchmarks.md`.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use synod_core::paxos::{Command, Config, Message, NodeId, Replica, Role};

struct Cluster<T> {
    replicas: Vec<Replica<T>>,
    queue: VecDeque<(NodeId, NodeId, Message<T>)>,
    applied_at_leader: u64,
}

impl<T: Clone> Cluster<T> {
    fn new() -> Self {
        let replicas = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(id, vec![1, 2, 3]);
                cfg.max_inflight = 1 << 20;
                Replica::new(cfg, 0).expect("valid config")
            })
            .collect();
        let mut c = Cluster {
            replicas,
            queue: VecDeque::new(),
            applied_at_leader: 0,
        };
        c.replicas[0].campaign();
        c.pump();
        assert_eq!(c.replicas[0].role(), Role::Leader);
        c
    }

    /// Runs every command and delivers every message until all is quiet.
    fn pump(&mut self) {
        loop {
            let mut idle = true;
            for i in 0..self.replicas.len() {
                let from = i as NodeId + 1;
                loop {
                    let cmds = self.replicas[i].take_commands();
                    if cmds.is_empty() {
                        break;
                    }
                    idle = false;
                    for cmd in cmds {
                        match cmd {
                            Command::Persist(w) => self.replicas[i].persisted(w.token),
                            Command::Send { to, msg } => self.queue.push_back((from, to, msg)),
                            Command::Apply { values, .. } => {
                                if i == 0 {
                                    self.applied_at_leader += values.len() as u64;
                                }
                                black_box(values);
                            }
                            Command::ReadReady { .. }
                            | Command::ReadFailed { .. }
                            | Command::SendLogged { .. }
                            | Command::InstallSnapshot(_) => {}
                        }
                    }
                }
            }
            while let Some((from, to, msg)) = self.queue.pop_front() {
                idle = false;
                self.replicas[(to - 1) as usize].step(from, msg, 0);
            }
            if idle {
                return;
            }
        }
    }

    /// Proposes `batches` batches from `make`, pipelined, and runs the
    /// cluster until they are all committed at the leader.
    fn commit(&mut self, batches: usize, mut make: impl FnMut() -> Vec<T>) {
        let target = self.replicas[0].commit_index();
        let mut n = 0;
        for _ in 0..batches {
            let b = make();
            n += b.len() as u64;
            self.replicas[0].propose(b).expect("leader accepts");
        }
        self.pump();
        assert_eq!(self.replicas[0].commit_index(), target + n);
    }
}

const IN_FLIGHT: usize = 8;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("paxos/commit");
    for batch in [1usize, 16, 256, 4096] {
        g.throughput(Throughput::Elements((batch * IN_FLIGHT) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut cluster: Cluster<u64> = Cluster::new();
            let mut next = 0u64;
            b.iter(|| {
                cluster.commit(IN_FLIGHT, || {
                    next += batch as u64;
                    (next - batch as u64..next).collect()
                })
            });
        });
    }
    g.finish();
    let mut g = c.benchmark_group("paxos/commit_100b");
    for batch in [16usize, 256, 4096] {
        g.throughput(Throughput::Elements((batch * IN_FLIGHT) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut cluster: Cluster<Vec<u8>> = Cluster::new();
            let payload = vec![7u8; 100];
            b.iter(|| cluster.commit(IN_FLIGHT, || vec![payload.clone(); batch]));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
