//! The settings: flags, variables, the config file, and their checks.

use clap::Parser as _;

use super::*;

fn parse(args: Vec<String>) -> NodeConfig {
    // As `synod serve`: the file's flags first, then the command line's.
    let args: Vec<String> = args.into_iter().filter(|a| a != "serve").collect();
    DefaultsOnly::try_parse_from(args).expect("parses").config
}

fn file(contents: &str) -> (tempfile::NamedTempFile, String) {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), contents).expect("write");
    let path = f.path().display().to_string();
    (f, path)
}

#[test]
fn file_settings_apply_and_flags_override_them() {
    let (_f, path) = file("max_data_bytes = 1000\nclient-addr = \"127.0.0.1:9999\"\n");
    let args = vec![
        "synod".into(),
        "serve".into(),
        "--config".into(),
        path.clone(),
        "--max-data-bytes".into(),
        "2000".into(),
    ];
    let config = parse(expand_config_file(args, None).unwrap());
    assert_eq!(config.max_data_bytes, 2000, "the command line wins");
    assert_eq!(
        config.client_addr.port(),
        9999,
        "the file sets what the command line does not"
    );
    let from_env =
        parse(expand_config_file(vec!["synod".into(), "serve".into()], Some(path)).unwrap());
    assert_eq!(from_env.max_data_bytes, 1000);
}

/// A pod sets everything through its environment: every flag, each
/// listen address among them, has its `SYNOD_*` variable.
#[test]
fn every_flag_and_listen_address_reads_a_synod_variable() {
    let command = <DefaultsOnly as clap::CommandFactory>::command();
    let mut addrs = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let wanted = format!("SYNOD_{}", long.replace('-', "_").to_uppercase());
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some(wanted.as_str()), "--{long}");
        if long.ends_with("-addr") {
            addrs.push(long.to_owned());
        }
    }
    addrs.sort();
    assert_eq!(
        addrs,
        [
            "admin-addr",
            "client-addr",
            "http-addr",
            "peer-addr",
            "zookeeper-addr",
            "zookeeper-secure-addr"
        ],
        "the listen addresses"
    );
}

#[test]
fn a_peer_address_template_must_name_the_node() {
    let with = |template: &str| {
        parse(vec![
            "synod".into(),
            format!("--peer-address-template={template}"),
        ])
    };
    assert!(with("synod-{ordinal}.peers:7100").validate().is_ok());
    assert!(with("10.0.0.{id}:7100").validate().is_ok());
    let err = with("synod.peers:7100").validate().unwrap_err();
    assert!(err.0.contains("peer-address-template"), "{err}");
}

#[test]
fn a_node_outside_the_bootstrap_members_joins_only_with_a_template() {
    let node = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "synod",
            "--node-id",
            "4",
            "--peers",
            "1=a:7100,2=b:7100,3=c:7100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        parse(args).ensemble()
    };
    let err = node(&[]).unwrap_err();
    assert!(err.0.contains("not in --peers"), "{err}");
    let joined = node(&["--peer-address-template", "synod-{ordinal}.peers:7100"]).unwrap();
    assert_eq!(joined.id, 4);
    assert_eq!(
        joined.voters.len(),
        3,
        "the bootstrap members stay as given"
    );
    assert!(!joined.observers.contains_key(&4));
    assert_eq!(joined.listen.map(|a| a.port()), Some(7100));
}

#[test]
fn bad_files_are_refused_with_their_name() {
    let (_f, path) = file("max_dta_bytes = 1\n");
    let err = expand_config_file(
        vec!["synod".into(), "serve".into(), format!("--config={path}")],
        None,
    )
    .unwrap_err();
    assert!(
        err.0.contains("max_dta_bytes") && err.0.contains(&path),
        "{err}"
    );
    let (_g, path) = file("max_data_bytes = [1]\n");
    assert!(
        expand_config_file(
            vec!["synod".into(), "serve".into(), "--config".into(), path],
            None
        )
        .is_err()
    );
    let (_h, path) = file("not toml at all = = =");
    assert!(
        expand_config_file(
            vec!["synod".into(), "serve".into(), "--config".into(), path],
            None
        )
        .is_err()
    );
    assert!(
        expand_config_file(
            vec![
                "synod".into(),
                "serve".into(),
                "--config".into(),
                "/nonexistent".into()
            ],
            None
        )
        .is_err()
    );
}

#[test]
fn the_admin_port_is_loopback_only_without_tls_unless_opened() {
    let with = |flags: &[&str]| {
        let mut args = vec!["synod".to_owned()];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        parse(args)
    };
    let default = with(&[]);
    assert_eq!(default.admin_addr.0, Some(([127, 0, 0, 1], 7300).into()));
    assert!(default.validate().is_ok());
    assert!(with(&["--admin-addr", "[::1]:7300"]).validate().is_ok());
    assert!(with(&["--admin-addr", "off"]).validate().is_ok());
    let err = with(&["--admin-addr", "0.0.0.0:7300"])
        .validate()
        .unwrap_err();
    assert!(err.0.contains("--admin-allow-remote"), "{err}");
    assert!(
        with(&["--admin-addr", "0.0.0.0:7300", "--admin-allow-remote"])
            .validate()
            .is_ok()
    );
    // With TLS, callers need a certificate from the admin CA (which TLS's
    // own --tls-ca stands in for): any address will do.
    let remote = [
        "--tls-cert",
        "n.crt",
        "--tls-key",
        "n.key",
        "--admin-addr",
        "0.0.0.0:7300",
    ];
    let mut with_ca = remote.to_vec();
    with_ca.extend(["--tls-ca", "ca.crt"]);
    let config = with(&with_ca);
    assert!(config.validate().is_ok());
    assert_eq!(
        config.admin_tls_files().and_then(|f| f.ca),
        Some("ca.crt".into()),
        "the admin CA defaults to the ensemble's"
    );
    with_ca.extend(["--tls-admin-ca", "admins.crt"]);
    assert_eq!(
        with(&with_ca).admin_tls_files().and_then(|f| f.ca),
        Some("admins.crt".into())
    );
    let err = with(&["--tls-admin-ca", "admins.crt"])
        .validate()
        .unwrap_err();
    assert!(err.0.contains("needs TLS"), "{err}");
}
