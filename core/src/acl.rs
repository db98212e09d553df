//! Access control: permissions, identities, ACL validation and checks with
//! ZooKeeper's schemes (`world`, `auth`, `digest`, `ip`, `x509`) and super user, and
//! the reference-counted cache that lets a million znodes share a handful of
//! ACL lists.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use rustc_hash::FxHashMap;
use sha1::{Digest as _, Sha1};

use crate::error::Error;

/// Permission bits, numerically identical to ZooKeeper's `ZooDefs.Perms`.
pub mod perms {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const CREATE: u32 = 4;
    pub const DELETE: u32 = 8;
    pub const ADMIN: u32 = 16;
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// An identity in a scheme, such as `digest:alice:XrIwh...=` or `ip:10.0.0.0/8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    pub fn anyone() -> Self {
        Id::new("world", "anyone")
    }
}

/// One ACL entry: which permissions an identity has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    pub perms: u32,
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission: ZooKeeper's OPEN_ACL_UNSAFE.
    pub fn open() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::anyone(),
        }]
    }
}

/// The `digest` id of a `user:password` credential:
/// `user:base64(sha1("user:password"))`, so digests made for ZooKeeper
/// stay valid here.
pub fn digest_id(credential: &str) -> Result<String, Error> {
    let Some((user, _)) = credential.split_once(':') else {
        return Err(Error::AuthFailed(
            "digest credentials must be user:password".into(),
        ));
    };
    let hash = Sha1::digest(credential.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(hash);
    Ok(format!("{user}:{encoded}"))
}

/// Who a request comes from: the ids its session authenticated as plus the
/// client's address, as determined by the server the client is connected to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub ids: Vec<Id>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Identity::default()
    }

    pub fn with_ip(ip: IpAddr) -> Self {
        Identity {
            ids: vec![Id::new("ip", ip.to_string())],
        }
    }

    /// Ids usable for the `auth` ACL scheme: the authenticated ones, not the
    /// address (ZooKeeper's `isAuthenticated`).
    fn authenticated(&self) -> impl Iterator<Item = &Id> {
        self.ids.iter().filter(|id| id.scheme != "ip")
    }
}

/// The ACL policy of an ensemble: who is super user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclPolicy {
    /// A `digest` id (`super:base64hash`) that bypasses every ACL.
    pub super_digest: Option<String>,
}

impl AclPolicy {
    fn is_super(&self, identity: &Identity) -> bool {
        identity.ids.iter().any(|id| {
            id.scheme == "super"
                || (id.scheme == "digest" && self.super_digest.as_deref() == Some(id.id.as_str()))
        })
    }

    /// Whether `identity` holds `perm` under `acl`.
    pub fn permits(&self, acl: &[Acl], perm: u32, identity: &Identity) -> bool {
        acl.iter()
            .any(|entry| entry.perms & perm != 0 && matches(&entry.id, identity))
            || self.is_super(identity)
    }

    /// Checks `perm` and names the path when it is missing.
    pub fn check(
        &self,
        acl: &[Acl],
        perm: u32,
        identity: &Identity,
        path: &str,
    ) -> Result<(), Error> {
        if self.permits(acl, perm, identity) {
            Ok(())
        } else {
            Err(Error::NoAuth(path.to_owned()))
        }
    }

    /// Validates an ACL for a create or setACL and expands `auth` entries
    /// into the session's authenticated ids, as ZooKeeper's `fixupACL` does.
    pub fn fixup(&self, acl: &[Acl], identity: &Identity) -> Result<Vec<Acl>, Error> {
        if acl.is_empty() {
            return Err(Error::InvalidAcl("an ACL needs at least one entry".into()));
        }
        let mut out = Vec::with_capacity(acl.len());
        for entry in acl {
            if entry.perms & !perms::ALL != 0 {
                return Err(Error::InvalidAcl(format!(
                    "unknown permission bits {:#x}",
                    entry.perms
                )));
            }
            match entry.id.scheme.as_str() {
                "world" if entry.id.id == "anyone" => out.push(entry.clone()),
                "world" => {
                    return Err(Error::InvalidAcl("world scheme only knows `anyone`".into()));
                }
                "auth" => {
                    let mut any = false;
                    for id in identity.authenticated() {
                        any = true;
                        out.push(Acl {
                            perms: entry.perms,
                            id: id.clone(),
                        });
                    }
                    if !any {
                        return Err(Error::InvalidAcl(
                            "auth scheme needs an authenticated session".into(),
                        ));
                    }
                }
                "digest" => {
                    let valid = entry
                        .id
                        .id
                        .split_once(':')
                        .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty());
                    if !valid {
                        return Err(Error::InvalidAcl(format!(
                            "digest id {:?} is not user:base64hash",
                            entry.id.id
                        )));
                    }
                    out.push(entry.clone());
                }
                "x509" => {
                    // The subject of a client certificate, as the node
                    // names it (RFC 2253), matched exactly.
                    if entry.id.id.is_empty() {
                        return Err(Error::InvalidAcl(
                            "an x509 id is a certificate subject, like CN=client,O=Example".into(),
                        ));
                    }
                    out.push(entry.clone());
                }
                "ip" => {
                    parse_ip_pattern(&entry.id.id).ok_or_else(|| {
                        Error::InvalidAcl(format!("bad ip pattern {:?}", entry.id.id))
                    })?;
                    out.push(entry.clone());
                }
                other => return Err(Error::InvalidAcl(format!("unknown scheme {other:?}"))),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

fn parse_ip_pattern(pattern: &str) -> Option<ipnet::IpNet> {
    if let Ok(net) = pattern.parse::<ipnet::IpNet>() {
        return Some(net.trunc());
    }
    pattern.parse::<IpAddr>().ok().map(ipnet::IpNet::from)
}

fn matches(acl_id: &Id, identity: &Identity) -> bool {
    match acl_id.scheme.as_str() {
        "world" => acl_id.id == "anyone",
        "ip" => {
            let Some(net) = parse_ip_pattern(&acl_id.id) else {
                return false;
            };
            identity.ids.iter().any(|id| {
                id.scheme == "ip" && id.id.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip))
            })
        }
        _ => identity.ids.iter().any(|id| id == acl_id),
    }
}

/// Index of an interned ACL list.
pub type AclRef = u32;

/// Interns ACL lists so that each znode stores a 4-byte reference, as
/// ZooKeeper's `ReferenceCountedACLCache` does. Lists no node uses are freed.
#[derive(Debug, Default, Clone)]
pub struct AclCache {
    lists: Vec<Option<(Arc<[Acl]>, u64)>>,
    index: FxHashMap<Arc<[Acl]>, AclRef>,
    free: Vec<AclRef>,
}

impl AclCache {
    /// Interns `acl` and counts one more user.
    pub fn acquire(&mut self, acl: &[Acl]) -> AclRef {
        if let Some(&r) = self.index.get(acl) {
            if let Some(Some((_, users))) = self.lists.get_mut(r as usize) {
                *users += 1;
            }
            return r;
        }
        let list: Arc<[Acl]> = Arc::from(acl);
        let r = match self.free.pop() {
            Some(r) => {
                self.lists[r as usize] = Some((list.clone(), 1));
                r
            }
            None => {
                self.lists.push(Some((list.clone(), 1)));
                AclRef::try_from(self.lists.len() - 1).expect("fewer than 2^32 distinct ACL lists")
            }
        };
        self.index.insert(list, r);
        r
    }

    /// Counts one user less and frees the list when none is left.
    pub fn release(&mut self, r: AclRef) {
        let Some(slot) = self.lists.get_mut(r as usize) else {
            return;
        };
        let Some((list, users)) = slot else { return };
        *users -= 1;
        if *users == 0 {
            self.index.remove(&**list);
            *slot = None;
            self.free.push(r);
        }
    }

    /// Every list in use, with its reference.
    pub fn iter(&self) -> impl Iterator<Item = (AclRef, &Arc<[Acl]>)> {
        self.lists.iter().enumerate().filter_map(|(i, slot)| {
            let (list, _) = slot.as_ref()?;
            Some((AclRef::try_from(i).ok()?, list))
        })
    }

    /// The shared list behind a reference.
    pub fn get_shared(&self, r: AclRef) -> Option<Arc<[Acl]>> {
        match self.lists.get(r as usize) {
            Some(Some((list, _))) => Some(list.clone()),
            _ => None,
        }
    }

    pub fn get(&self, r: AclRef) -> &[Acl] {
        match self.lists.get(r as usize) {
            Some(Some((list, _))) => list,
            _ => &[],
        }
    }

    /// Number of distinct lists in use.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // The value ZooKeeper's DigestAuthenticationProvider.generateDigest
        // gives for super:test, used in ZooKeeper's own documentation.
        assert_eq!(
            digest_id("super:test").unwrap(),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert!(digest_id("nocolon").is_err());
    }

    #[test]
    fn x509_ids_grant_exactly_their_subject() {
        let policy = AclPolicy::default();
        let client = Identity {
            ids: vec![Id::new("x509", "CN=client,O=Example")],
        };
        let acl = policy
            .fixup(
                &[Acl {
                    perms: perms::READ,
                    id: Id::new("x509", "CN=client,O=Example"),
                }],
                &client,
            )
            .expect("valid");
        assert!(policy.permits(&acl, perms::READ, &client));
        let other = Identity {
            ids: vec![Id::new("x509", "CN=other,O=Example")],
        };
        assert!(!policy.permits(&acl, perms::READ, &other));
        // `auth` takes the certificate's subject as it takes a digest.
        let auth = policy
            .fixup(
                &[Acl {
                    perms: perms::ALL,
                    id: Id::new("auth", ""),
                }],
                &client,
            )
            .expect("auth");
        assert_eq!(auth[0].id, Id::new("x509", "CN=client,O=Example"));
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: perms::READ,
                        id: Id::new("x509", ""),
                    }],
                    &client,
                )
                .is_err()
        );
    }

    #[test]
    fn schemes_grant_what_they_should() {
        let policy = AclPolicy::default();
        let alice = Identity {
            ids: vec![Id::new("digest", digest_id("alice:pw").unwrap())],
        };
        let local = Identity::with_ip("10.1.2.3".parse().unwrap());
        let acl = vec![
            Acl {
                perms: perms::READ,
                id: Id::anyone(),
            },
            Acl {
                perms: perms::ALL,
                id: Id::new("digest", digest_id("alice:pw").unwrap()),
            },
            Acl {
                perms: perms::WRITE,
                id: Id::new("ip", "10.0.0.0/8"),
            },
        ];
        assert!(policy.permits(&acl, perms::READ, &Identity::anonymous()));
        assert!(!policy.permits(&acl, perms::WRITE, &Identity::anonymous()));
        assert!(policy.permits(&acl, perms::ADMIN, &alice));
        assert!(policy.permits(&acl, perms::WRITE, &local));
        assert!(!policy.permits(&acl, perms::DELETE, &local));
        let outside = Identity::with_ip("192.168.1.1".parse().unwrap());
        assert!(!policy.permits(&acl, perms::WRITE, &outside));
    }

    #[test]
    fn super_user_bypasses_acl() {
        let policy = AclPolicy {
            super_digest: Some(digest_id("super:secret").unwrap()),
        };
        let root = Identity {
            ids: vec![Id::new("digest", digest_id("super:secret").unwrap())],
        };
        let acl = vec![Acl {
            perms: perms::READ,
            id: Id::new("ip", "1.2.3.4"),
        }];
        assert!(policy.permits(&acl, perms::ADMIN, &root));
        assert!(!policy.permits(&acl, perms::READ, &Identity::anonymous()));
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_entries() {
        let policy = AclPolicy::default();
        let bob_id = Id::new("digest", digest_id("bob:pw").unwrap());
        let bob = Identity {
            ids: vec![bob_id.clone(), Id::new("ip", "127.0.0.1")],
        };
        let fixed = policy
            .fixup(
                &[Acl {
                    perms: perms::ALL,
                    id: Id::new("auth", ""),
                }],
                &bob,
            )
            .unwrap();
        assert_eq!(
            fixed,
            vec![Acl {
                perms: perms::ALL,
                id: bob_id
            }]
        );
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: perms::ALL,
                        id: Id::new("auth", "")
                    }],
                    &Identity::anonymous()
                )
                .is_err()
        );
        assert!(policy.fixup(&[], &bob).is_err());
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: 1,
                        id: Id::new("ip", "300.1.1.1")
                    }],
                    &bob
                )
                .is_err()
        );
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: 1,
                        id: Id::new("world", "someone")
                    }],
                    &bob
                )
                .is_err()
        );
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: 64,
                        id: Id::anyone()
                    }],
                    &bob
                )
                .is_err()
        );
        assert!(
            policy
                .fixup(
                    &[Acl {
                        perms: 1,
                        id: Id::new("kerberos", "x")
                    }],
                    &bob
                )
                .is_err()
        );
    }

    #[test]
    fn cache_shares_and_frees_lists() {
        let mut cache = AclCache::default();
        let a = cache.acquire(&Acl::open());
        let b = cache.acquire(&Acl::open());
        assert_eq!(a, b);
        assert_eq!(cache.len(), 1);
        cache.release(a);
        assert_eq!(cache.get(b), Acl::open().as_slice());
        cache.release(b);
        assert!(cache.is_empty());
    }
}
