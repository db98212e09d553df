//! A tour of the client API against a running node: every operation once,
//! with the results printed. `cargo run -p synod-client --example tour --
//! 127.0.0.1:7000` (a scratch node: it creates and deletes `/tour`).

#![allow(clippy::print_stdout)]

use std::time::Duration;

use synod_client::{
    Acl, AddWatchMode, Client, ClientConfig, CreateOptions, Error, Op, ReadOp, WatcherType, perms,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".to_owned());
    let client = Client::connect(ClientConfig::new([endpoint])).await?;
    println!(
        "session {:#x}, timeout {:?}, on {:?}",
        client.session_id(),
        client.session_timeout(),
        client.endpoint()
    );
    let mut everything = client.watch_events();

    let (path, stat) = client
        .create("/tour", b"root", &CreateOptions::default())
        .await?;
    println!("created {path} version {}", stat.version);
    let mut subtree = client
        .watch("/tour", AddWatchMode::PersistentRecursive)
        .await?;
    let (_, _, data_changed) = client.get_data_watch("/tour").await?;
    let (_, _, children_changed) = client.get_children_watch("/tour").await?;
    let (missing, created) = client.exists_watch("/tour/later").await?;
    println!("exists /tour/later: {missing:?}");

    let (seq, _) = client
        .create("/tour/job-", b"", &CreateOptions::sequential())
        .await?;
    let (eph, _) = client
        .create("/tour/eph", b"", &CreateOptions::ephemeral())
        .await?;
    println!("sequential {seq}, ephemeral {eph}");
    println!("children changed: {:?}", children_changed.await?);
    client.set_data("/tour", b"changed", Some(0)).await?;
    println!("data changed: {:?}", data_changed.await?);
    client
        .create("/tour/later", b"", &CreateOptions::default())
        .await?;
    println!("created: {:?}", created.await?);

    println!("ephemerals: {:?}", client.get_ephemerals("/tour").await?);
    println!(
        "all children: {}",
        client.get_all_children_number("/tour").await?
    );
    client
        .set_acl(
            "/tour/later",
            &[Acl::new(perms::READ | perms::ADMIN, "world", "anyone")],
            None,
        )
        .await?;
    println!("acl: {:?}", client.get_acl("/tour/later").await?.0);
    println!(
        "write refused: {:?}",
        client.set_data("/tour/later", b"x", None).await
    );
    client
        .set_acl(
            "/tour/later",
            &[Acl::new(perms::ALL, "world", "anyone")],
            None,
        )
        .await?;
    client.add_auth("digest", b"tour:secret").await?;
    client.check("/tour", 1).await?;
    println!("check v0: {:?}", client.check("/tour", 0).await);

    let done = client
        .multi(&[
            Op::create("/tour/m1", "a", CreateOptions::default()),
            Op::set_data("/tour/m1", "b", Some(0)),
            Op::check("/tour", Some(1)),
        ])
        .await?;
    println!("multi committed {}: {:?}", done.committed, done.results);
    let failed = client
        .multi(&[
            Op::create("/tour/m2", "a", CreateOptions::default()),
            Op::delete("/tour/nope", None),
        ])
        .await?;
    println!("multi failure: {:?}", failed.failure());
    let reads = client
        .multi_read(&[
            ReadOp::get_data("/tour/m1"),
            ReadOp::get_children("/tour"),
            ReadOp::get_data("/tour/nope"),
        ])
        .await?;
    println!("multi_read: {reads:?}");
    client.sync("/tour").await?;
    client
        .create(
            "/tour/ttl",
            b"",
            &CreateOptions::with_ttl(Duration::from_secs(60), false),
        )
        .await?;

    for _ in 0..3 {
        println!("subtree: {:?}", subtree.next_event().await);
    }
    client
        .remove_watches("/tour", WatcherType::Persistent)
        .await
        .ok();
    client
        .remove_watches("/tour", WatcherType::PersistentRecursive)
        .await?;
    println!(
        "no watcher: {:?}",
        client.remove_watches("/tour", WatcherType::Data).await
    );

    for child in client.get_children("/tour").await? {
        client.delete(&format!("/tour/{child}"), None).await?;
    }
    client.delete("/tour", None).await?;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), everything.next_event()).await
    {
        println!("event #{} {:?} {}", event.seq, event.event_type, event.path);
    }
    println!("last zxid {:#x}", client.last_zxid());
    client.close().await
}
