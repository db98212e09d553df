//! Tree tests: ACLs: digest, ip, world and auth schemes, the super user,
//! what getACL needs and shows, and the shared ACL lists.

use super::*;

#[test]
fn digest_acl_admits_only_the_matching_credential() {
    let mut h = Harness::new();
    let alice_id = digest_id("alice:pw").unwrap();
    h.ok(create_acl("/d", vec![acl(perms::ALL, "digest", &alice_id)]));
    let anon = Identity::anonymous();
    assert_code(
        &h.tree.get_data("/d", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert!(h.tree.get_data("/d", &digest_identity("alice:pw")).is_ok());
    for other in ["alice:wrong", "bob:pw"] {
        assert_code(
            &h.tree.get_data("/d", &digest_identity(other)).unwrap_err(),
            ErrorCode::NoAuth,
        );
    }
    assert_code(&h.fail(set_data("/d", b"x", -1)), ErrorCode::NoAuth);
    h.as_identity(digest_identity("alice:pw"));
    h.ok(set_data("/d", b"x", -1));
    h.ok(create("/d/child"));
}

#[test]
fn get_acl_masks_digest_hashes_from_readers_without_admin() {
    let mut h = Harness::new();
    let alice_id = digest_id("alice:pw").unwrap();
    let entries = vec![
        acl(perms::ALL, "digest", &alice_id),
        acl(perms::READ, "world", "anyone"),
    ];
    h.ok(create_acl("/shared", entries.clone()));
    let (seen, _) = h.tree.get_acl("/shared", &Identity::anonymous()).unwrap();
    let ids: Vec<&str> = seen.iter().map(|a| a.id.id.as_str()).collect();
    assert!(ids.contains(&"alice:x"), "the hash is not shown: {ids:?}");
    assert!(ids.contains(&"anyone"), "{ids:?}");
    let (admin_sees, _) = h
        .tree
        .get_acl("/shared", &digest_identity("alice:pw"))
        .unwrap();
    let ids: Vec<&str> = admin_sees.iter().map(|a| a.id.id.as_str()).collect();
    assert!(
        ids.contains(&alice_id.as_str()),
        "ADMIN sees the ACL as it is"
    );
}

#[test]
fn ip_acl_matches_addresses_and_cidr_ranges() {
    let mut h = Harness::new();
    h.ok(create_acl(
        "/net",
        vec![
            acl(perms::WRITE, "ip", "10.0.0.0/8"),
            acl(perms::READ, "ip", "192.168.1.7"),
            acl(perms::ADMIN, "ip", "fd00::/8"),
        ],
    ));
    let at = |ip: &str| Identity::with_ip(ip.parse().unwrap());
    h.as_identity(at("10.1.2.3"));
    h.ok(set_data("/net", b"1", -1));
    h.as_identity(at("11.0.0.1"));
    assert_code(&h.fail(set_data("/net", b"2", -1)), ErrorCode::NoAuth);
    assert!(h.tree.get_data("/net", &at("192.168.1.7")).is_ok());
    assert_code(
        &h.tree.get_data("/net", &at("192.168.1.8")).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(
        &h.tree.get_data("/net", &at("10.1.2.3")).unwrap_err(),
        ErrorCode::NoAuth,
    );
    h.as_identity(at("fd12::1"));
    h.ok(set_acl("/net", Acl::open(), -1));
}

#[test]
fn world_acl_grants_its_bits_to_everyone() {
    let mut h = Harness::new();
    h.ok(create_acl("/r", world(perms::READ | perms::CREATE)));
    h.as_identity(digest_identity("alice:pw"));
    assert!(h.tree.get_data("/r", &h.identity).is_ok());
    h.ok(create("/r/c"));
    assert_code(&h.fail(set_data("/r", b"", -1)), ErrorCode::NoAuth);
    assert_code(&h.fail(delete("/r/c", -1)), ErrorCode::NoAuth);
}

#[test]
fn auth_scheme_expands_to_the_authenticated_ids() {
    let mut h = Harness::new();
    let alice = Id::new("digest", digest_id("alice:pw").unwrap());
    let carol = Id::new("digest", digest_id("carol:pw").unwrap());
    h.as_identity(Identity {
        ids: vec![Id::new("ip", "10.0.0.1"), carol.clone(), alice.clone()],
    });
    h.ok(create_acl(
        "/mine",
        vec![
            acl(perms::ALL, "auth", ""),
            acl(perms::READ, "world", "anyone"),
        ],
    ));
    let mut expected = vec![
        Acl {
            perms: perms::ALL,
            id: alice.clone(),
        },
        Acl {
            perms: perms::ALL,
            id: carol,
        },
        Acl {
            perms: perms::READ,
            id: Id::anyone(),
        },
    ];
    expected.sort();
    // Read as its ADMIN, which sees the digests unmasked.
    let (got, _) = h.tree.get_acl("/mine", &h.identity).unwrap();
    assert_eq!(got, expected, "the address is not an authenticated id");

    h.as_identity(digest_identity("alice:pw"));
    h.ok(set_acl(
        "/mine",
        vec![acl(perms::READ | perms::ADMIN, "auth", "")],
        -1,
    ));
    assert_eq!(
        h.tree.get_acl("/mine", &h.identity).unwrap().0,
        [Acl {
            perms: perms::READ | perms::ADMIN,
            id: alice
        }]
    );
    assert_code(
        &h.tree
            .get_data("/mine", &Identity::anonymous())
            .unwrap_err(),
        ErrorCode::NoAuth,
    );
}

#[test]
fn super_user_bypasses_every_acl() {
    let mut h = Harness::with_config(TreeConfig {
        acl: AclPolicy {
            super_digest: Some(digest_id("super:secret").unwrap()),
        },
        ..TreeConfig::default()
    });
    h.ok(create_acl(
        "/locked",
        vec![acl(perms::READ, "ip", "1.2.3.4")],
    ));
    let anon = Identity::anonymous();
    assert_code(
        &h.tree.get_data("/locked", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(&h.fail(create("/locked/c")), ErrorCode::NoAuth);

    for root in [
        digest_identity("super:secret"),
        Identity {
            ids: vec![Id::new("super", "")],
        },
    ] {
        assert!(h.tree.get_data("/locked", &root).is_ok());
        assert!(h.tree.get_acl("/locked", &root).is_ok());
        h.as_identity(root);
        h.ok(set_data("/locked", b"x", -1));
        h.ok(create("/locked/c"));
        h.ok(delete("/locked/c", -1));
        h.ok(set_acl(
            "/locked",
            vec![acl(perms::READ, "ip", "1.2.3.4")],
            -1,
        ));
    }
    h.as_identity(digest_identity("super:wrong"));
    assert_code(&h.fail(set_data("/locked", b"y", -1)), ErrorCode::NoAuth);
}

#[test]
fn get_acl_needs_read_or_admin_and_exists_needs_nothing() {
    let mut h = Harness::new();
    h.ok(create_acl("/admin", world(perms::ADMIN)));
    h.ok(create_acl("/read", world(perms::READ)));
    h.ok(create_acl("/write", world(perms::WRITE)));
    h.ok(create_acl("/none", vec![acl(perms::ALL, "ip", "1.2.3.4")]));
    let anon = Identity::anonymous();
    assert_eq!(
        h.tree.get_acl("/admin", &anon).unwrap().0,
        world(perms::ADMIN)
    );
    assert!(h.tree.get_acl("/read", &anon).is_ok());
    assert_eq!(
        h.tree.get_acl("/write", &anon).unwrap_err(),
        Error::NoAuth("/write".into())
    );
    assert_code(
        &h.tree.get_acl("/none", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(
        &h.tree.get_data("/admin", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    let stat = h.tree.exists("/none").unwrap();
    assert_eq!(stat, Some(h.stat("/none")));
}

#[test]
fn acl_lists_are_shared_and_released() {
    let mut h = Harness::new();
    assert_eq!(h.tree.acl_lists(), 1);
    h.ok(create("/a"));
    h.ok(create_acl("/r1", world(perms::READ | perms::ADMIN)));
    h.ok(create_acl("/r2", world(perms::READ | perms::ADMIN)));
    assert_eq!(h.tree.acl_lists(), 2);
    h.ok(set_acl("/r1", Acl::open(), -1));
    assert_eq!(h.tree.acl_lists(), 2);
    h.ok(delete("/r2", -1));
    assert_eq!(h.tree.acl_lists(), 1);
}
