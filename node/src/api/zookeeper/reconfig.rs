//! ZooKeeper's `reconfig` as Synod membership changes. A request names
//! joining servers (`server.N=host:port:port[:role][;client]`) and leaving
//! ids, or a whole new member list; it becomes the sequence of one-step
//! changes the Admin API makes (observer first, then promotion), each
//! committed before the next. Members are dialed at the address the node
//! already has for them (listed, or from `--peer-address-template`): the
//! replicated configuration holds ids, not addresses, so a joining server
//! must name exactly that address. Only the parsing and the plan live here;
//! `ops` runs the plan.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_core::acl::perms;
use synod_core::node::membership::MembershipChange;
use synod_core::{ErrorCode, SessionId};

use super::ensemble_config::EnsembleAddresses;
use super::ops::{CONFIG_PATH, Prepared, Reply, body, config_data, ready};
use super::proto::{code, write_stat};
use crate::api::admin::AdminService;
use crate::driver::DriverHandle;

/// How long a whole reconfig may take: a joining voter catches up as an
/// observer first, which takes as long as its copy of the state.
const RECONFIG_WAIT: Duration = Duration::from_secs(60);

/// How often a promotion waiting for its observer to catch up asks again.
const PROMOTION_RETRY: Duration = Duration::from_millis(100);

/// A decoded `reconfig` request and who asked.
#[derive(Debug)]
pub struct Asked {
    pub xid: i32,
    pub session: SessionId,
    pub peer: crate::driver::Origin,
    pub joining: Option<String>,
    pub leaving: Option<String>,
    pub new_members: Option<String>,
    pub config_id: i64,
}

/// Checks a reconfig on the driver (authorised as ZooKeeper authorises it:
/// the super user, since `/zookeeper/config` grants nobody else WRITE;
/// `curConfigId` -1 or the current version), plans it, and runs its steps
/// one committed change after the other. The answer is the new
/// `/zookeeper/config` and its stat.
pub fn prepare(asked: Asked, driver: DriverHandle, ensemble: Arc<EnsembleAddresses>) -> Prepared {
    let xid = asked.xid;
    let refuse = move |code| {
        ready(Reply {
            xid,
            result: Err(code),
            close: false,
        })
    };
    Prepared::OnDriver(Box::new(move |state| {
        let identity = state.identity(asked.session, &asked.peer);
        if !state
            .machine()
            .tree()
            .config()
            .acl
            .permits(&[], perms::WRITE, &identity)
        {
            return refuse(ErrorCode::NoAuth.zookeeper_code());
        }
        let (voters, observers, version) = state.config_members();
        if asked.config_id != -1 && u64::try_from(asked.config_id).ok() != Some(version) {
            return refuse(ErrorCode::BadVersion.zookeeper_code());
        }
        let current: Vec<u64> = voters.iter().chain(&observers).copied().collect();
        let request = match asked
            .new_members
            .as_deref()
            .filter(|m| !m.trim().is_empty())
        {
            Some(members) => Request::whole(members, &current),
            None => Request::incremental(asked.joining.as_deref(), asked.leaving.as_deref()),
        };
        let steps = match request.and_then(|r| plan(&r, &voters, &observers, &ensemble)) {
            Ok(steps) => steps,
            Err(error) => {
                tracing::info!(%error, "reconfig refused");
                return refuse(code::BAD_ARGUMENTS);
            }
        };
        tracing::info!(?steps, "reconfig");
        Box::pin(async move {
            let admin = AdminService::new(driver.clone(), String::new());
            let deadline = Instant::now() + RECONFIG_WAIT;
            for (change, node) in steps {
                if let Err(status) = step(&admin, change, node, deadline).await {
                    tracing::warn!(?change, node, %status, "reconfig step failed");
                    return Reply {
                        xid,
                        result: Err(failure_code(&status)),
                        close: false,
                    };
                }
            }
            let answer = driver
                .call(move |state| {
                    let mut stat = state
                        .machine()
                        .tree()
                        .get_data_or_null(CONFIG_PATH, &synod_core::acl::Identity::default())
                        .map(|(_, stat)| stat)
                        .ok()?;
                    let data = config_data(state, &ensemble, &mut stat);
                    Some((data, stat, state.machine().applied()))
                })
                .await;
            Reply {
                xid,
                result: match answer {
                    Ok(Some((data, stat, zxid))) => Ok((
                        Some(zxid),
                        body(|w| {
                            w.buffer(&data);
                            write_stat(w, &stat);
                        }),
                    )),
                    _ => Err(code::NEW_CONFIG_NO_QUORUM),
                },
                close: false,
            }
        })
    }))
}

/// One committed change; a promotion waits (within the deadline) for its
/// observer to catch up.
async fn step(
    admin: &AdminService,
    change: MembershipChange,
    node: u64,
    deadline: Instant,
) -> Result<(), tonic::Status> {
    loop {
        match admin.change_committed(change, node, deadline).await {
            Err(status)
                if change == MembershipChange::PromoteVoter
                    && status.message().contains("caught-up observer")
                    && Instant::now() + PROMOTION_RETRY < deadline =>
            {
                tokio::time::sleep(PROMOTION_RETRY).await;
            }
            done => return done.map(|_| ()),
        }
    }
}

/// ZooKeeper's code for a step that failed: not committed in time (or no
/// leader) is "no quorum for the new configuration"; another change under
/// way is "reconfig in progress"; a refusal is a bad argument.
fn failure_code(status: &tonic::Status) -> i32 {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Unavailable => code::NEW_CONFIG_NO_QUORUM,
        _ if status.message().contains("still being committed") => code::RECONFIG_IN_PROGRESS,
        _ if status.message().contains("not the leader") => code::NEW_CONFIG_NO_QUORUM,
        _ => code::BAD_ARGUMENTS,
    }
}

/// A joining server as `reconfig` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    /// `host:port` of its quorum address (the first port).
    pub peer: String,
    pub voter: bool,
}

/// Why a reconfig request cannot be done; answered `BADARGUMENTS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigError {
    #[error("{0:?} is not server.N=host:port:port[:participant|:observer][;client]")]
    BadServer(String),
    #[error("{0:?} is not a server id")]
    BadId(String),
    #[error(
        "server {id} must be at {expected} (the address this ensemble dials it at), not {given}"
    )]
    WrongAddress {
        id: u64,
        expected: String,
        given: String,
    },
    #[error("no address is known for server {0}: give the nodes --peer-address-template")]
    NoAddress(u64),
    #[error("server {0} both joins and leaves")]
    JoinsAndLeaves(u64),
    #[error("the change would leave no voter")]
    NoVoter,
    #[error("server id 0 is reserved")]
    ReservedId,
}

/// Parses one `server.N=host:port:port[:role][;[clientHost:]clientPort]`.
pub fn parse_server(text: &str) -> Result<ServerSpec, ReconfigError> {
    let bad = || ReconfigError::BadServer(text.to_owned());
    let (key, value) = text.trim().split_once('=').ok_or_else(bad)?;
    let id: u64 = key
        .trim()
        .strip_prefix("server.")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    if id == 0 {
        return Err(ReconfigError::ReservedId);
    }
    let server = value.split(';').next().unwrap_or_default().trim();
    // host may be an IPv6 literal in brackets; the ports and role come
    // after its last bracket.
    let (host, rest) = match server.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']').ok_or_else(bad)?;
            (
                format!("[{inside}]"),
                after.strip_prefix(':').ok_or_else(bad)?,
            )
        }
        None => {
            let (host, rest) = server.split_once(':').ok_or_else(bad)?;
            (host.to_owned(), rest)
        }
    };
    let mut parts = rest.split(':');
    let port = parts
        .next()
        .filter(|p| p.parse::<u16>().is_ok())
        .ok_or_else(bad)?;
    let _election_port = parts
        .next()
        .filter(|p| p.parse::<u16>().is_ok())
        .ok_or_else(bad)?;
    let voter = match parts.next() {
        None | Some("participant") => true,
        Some("observer") => false,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() || host.is_empty() {
        return Err(bad());
    }
    Ok(ServerSpec {
        id,
        peer: format!("{host}:{port}"),
        voter,
    })
}

/// Splits a server list (ZooKeeper separates them with commas, zkCli's
/// files with newlines) into its non-empty items.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// What a request asks for, as joining servers and leaving ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub joining: Vec<ServerSpec>,
    pub leaving: Vec<u64>,
}

impl Request {
    /// An incremental request: servers joining (or changing role) and ids
    /// leaving.
    pub fn incremental(
        joining: Option<&str>,
        leaving: Option<&str>,
    ) -> Result<Request, ReconfigError> {
        let joining = items(joining.unwrap_or_default())
            .map(parse_server)
            .collect::<Result<Vec<_>, _>>()?;
        let leaving = items(leaving.unwrap_or_default())
            .map(|id| {
                id.parse::<u64>()
                    .map_err(|_| ReconfigError::BadId(id.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Request { joining, leaving })
    }

    /// A whole new member list: every listed server joins (or keeps or
    /// changes its role), every current member not listed leaves.
    pub fn whole(members: &str, current: &[u64]) -> Result<Request, ReconfigError> {
        let joining = items(members)
            .map(parse_server)
            .collect::<Result<Vec<_>, _>>()?;
        let listed: BTreeSet<u64> = joining.iter().map(|s| s.id).collect();
        let leaving = current
            .iter()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        Ok(Request { joining, leaving })
    }
}

/// The one-step changes that make `request` of the membership `voters`,
/// `observers`, in order: role changes and removals of current members
/// first, then additions (observer, then promotion), so that no voter
/// joins before it has caught up as an observer. Checks every joining
/// server's address against what the ensemble dials.
pub fn plan(
    request: &Request,
    voters: &[u64],
    observers: &[u64],
    addresses: &EnsembleAddresses,
) -> Result<Vec<(MembershipChange, u64)>, ReconfigError> {
    for spec in &request.joining {
        if request.leaving.contains(&spec.id) {
            return Err(ReconfigError::JoinsAndLeaves(spec.id));
        }
        let expected = addresses
            .peer_address(spec.id)
            .ok_or(ReconfigError::NoAddress(spec.id))?;
        if expected != spec.peer {
            return Err(ReconfigError::WrongAddress {
                id: spec.id,
                expected,
                given: spec.peer.clone(),
            });
        }
    }
    if request.leaving.contains(&0) {
        return Err(ReconfigError::ReservedId);
    }
    let mut steps = Vec::new();
    let mut voters_after: BTreeSet<u64> = voters.iter().copied().collect();
    for &id in &request.leaving {
        if voters.contains(&id) || observers.contains(&id) {
            steps.push((MembershipChange::Remove, id));
            voters_after.remove(&id);
        }
    }
    // Voters left once the removals and demotions are done (below).
    let mut voters_left = voters_after.len();
    let mut additions = Vec::new();
    for spec in &request.joining {
        let (is_voter, is_observer) = (voters.contains(&spec.id), observers.contains(&spec.id));
        match (spec.voter, is_voter, is_observer) {
            (true, true, _) | (false, false, true) => {}
            (true, false, true) => {
                additions.push((MembershipChange::PromoteVoter, spec.id));
                voters_after.insert(spec.id);
            }
            (true, false, false) => {
                additions.push((MembershipChange::AddObserver, spec.id));
                additions.push((MembershipChange::PromoteVoter, spec.id));
                voters_after.insert(spec.id);
            }
            (false, true, _) => {
                steps.push((MembershipChange::DemoteVoter, spec.id));
                voters_after.remove(&spec.id);
                voters_left -= 1;
            }
            (false, false, false) => additions.push((MembershipChange::AddObserver, spec.id)),
        }
    }
    if voters_after.is_empty() {
        return Err(ReconfigError::NoVoter);
    }
    // Removals first (the ensemble the newcomers catch up from is no
    // larger than it must be), unless they would leave fewer than two
    // voters: then the newcomers join first, so that the ensemble never
    // passes through a single voter it need not.
    if voters_left < 2 {
        additions.extend(steps);
        return Ok(additions);
    }
    steps.extend(additions);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use MembershipChange::*;

    fn addresses() -> EnsembleAddresses {
        EnsembleAddresses {
            peers: BTreeMap::new(),
            peer_template: Some("synod-{ordinal}.peers:7100".into()),
            zookeeper_template: "synod-{ordinal}.peers:2181".into(),
        }
    }

    #[test]
    fn servers_parse_as_zookeeper_writes_them() {
        assert_eq!(
            parse_server("server.4=synod-3.peers:7100:7100:observer;synod-3.peers:2181"),
            Ok(ServerSpec {
                id: 4,
                peer: "synod-3.peers:7100".into(),
                voter: false
            })
        );
        assert_eq!(
            parse_server(" server.2=10.0.0.2:2888:3888;2181"),
            Ok(ServerSpec {
                id: 2,
                peer: "10.0.0.2:2888".into(),
                voter: true
            })
        );
        assert_eq!(
            parse_server("server.6=[::1]:2888:3888:participant"),
            Ok(ServerSpec {
                id: 6,
                peer: "[::1]:2888".into(),
                voter: true
            })
        );
        for bad in [
            "server.x=h:1:2",
            "server.1=h:1",
            "server.1=h:1:2:leader",
            "server.1=:1:2",
            "4=h:1:2",
            "server.1=h:99999:2",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_server("server.0=h:1:2"),
            Err(ReconfigError::ReservedId)
        );
    }

    #[test]
    fn a_joining_voter_comes_in_as_an_observer_first() {
        let request = Request::incremental(
            Some("server.4=synod-3.peers:7100:7100:participant;2181"),
            Some("3"),
        )
        .unwrap();
        assert_eq!(
            plan(&request, &[1, 2, 3], &[], &addresses()),
            Ok(vec![(Remove, 3), (AddObserver, 4), (PromoteVoter, 4)])
        );
        // An observer that becomes a participant is promoted; a voter made
        // an observer is demoted; what is already so needs nothing.
        let request = Request::incremental(
            Some(
                "server.4=synod-3.peers:7100:7100:participant,server.2=synod-1.peers:7100:7100:observer,\
                 server.1=synod-0.peers:7100:7100",
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            plan(&request, &[1, 2, 3], &[4], &addresses()),
            Ok(vec![(DemoteVoter, 2), (PromoteVoter, 4)])
        );
    }

    #[test]
    fn shrinking_to_one_voter_adds_before_it_removes() {
        let request =
            Request::incremental(Some("server.3=synod-2.peers:7100:7100"), Some("2")).unwrap();
        assert_eq!(
            plan(&request, &[1, 2], &[], &addresses()),
            Ok(vec![(AddObserver, 3), (PromoteVoter, 3), (Remove, 2)])
        );
    }

    #[test]
    fn a_whole_list_becomes_joins_and_leaves() {
        let request = Request::whole(
            "server.1=synod-0.peers:7100:7100\nserver.2=synod-1.peers:7100:7100:observer",
            &[1, 2, 3],
        )
        .unwrap();
        assert_eq!(request.leaving, vec![3]);
        assert_eq!(
            plan(&request, &[1, 2, 3], &[], &addresses()),
            Ok(vec![(Remove, 3), (DemoteVoter, 2)])
        );
    }

    #[test]
    fn refusals() {
        let wrong = Request::incremental(Some("server.4=elsewhere:7100:7100"), None).unwrap();
        assert!(matches!(
            plan(&wrong, &[1, 2, 3], &[], &addresses()),
            Err(ReconfigError::WrongAddress { id: 4, .. })
        ));
        let both =
            Request::incremental(Some("server.3=synod-2.peers:7100:7100"), Some("3")).unwrap();
        assert_eq!(
            plan(&both, &[1, 2, 3], &[], &addresses()),
            Err(ReconfigError::JoinsAndLeaves(3))
        );
        let none = Request::incremental(None, Some("1")).unwrap();
        assert_eq!(
            plan(&none, &[1], &[], &addresses()),
            Err(ReconfigError::NoVoter)
        );
        assert_eq!(
            Request::incremental(None, Some("x")),
            Err(ReconfigError::BadId("x".into()))
        );
        let no_template = EnsembleAddresses {
            peers: BTreeMap::new(),
            peer_template: None,
            zookeeper_template: "h-{id}:2181".into(),
        };
        let join = Request::incremental(Some("server.9=h:1:2"), None).unwrap();
        assert_eq!(
            plan(&join, &[1], &[], &no_template),
            Err(ReconfigError::NoAddress(9))
        );
    }
}
