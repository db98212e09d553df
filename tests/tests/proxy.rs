//! The test harness's TCP proxy, against a local echo server: bytes flow
//! both ways, a cut breaks the open connections and refuses new ones, a
//! heal forwards again, and dropping the proxy closes everything it held.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use synod_tests::Proxy;

/// An echo server on a free loopback port. Its threads are detached and
/// end with the test process; each one ends when its client goes away.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("echo port");
    let addr = listener.local_addr().expect("echo address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Sends `message` and reads the same number of bytes back.
fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message)?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// True when the stream has been closed by the other side: a read ends
/// (EOF or reset) rather than timing out.
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Waits (bounded) until the proxy has registered `count` connections:
/// `connect` returns once the proxy's listener accepted, before the proxy
/// has reached the target.
fn wait_connections(proxy: &Proxy, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.connections() != count {
        assert!(
            Instant::now() < deadline,
            "the proxy holds {} connections, expected {count}",
            proxy.connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn bytes_flow_both_ways() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(round_trip(&mut a, b"hello").unwrap(), b"hello");
    assert_eq!(round_trip(&mut b, b"world").unwrap(), b"world");
    wait_connections(&proxy, 2);

    // More than any socket buffer, written while the echo is read back, so
    // the proxy has to keep both directions moving at once.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = a.try_clone().unwrap();
    let sent = big.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; big.len()];
    a.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    assert!(back == big, "4 MiB came back unchanged");

    // A client that closes its side is seen as closed by the target, which
    // closes in turn; the proxy forgets the connection.
    drop(a);
    drop(b);
    wait_connections(&proxy, 0);
}

#[test]
fn a_cut_breaks_open_connections_and_refuses_new_ones() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut open = connect(&proxy);
    assert_eq!(round_trip(&mut open, b"before").unwrap(), b"before");
    wait_connections(&proxy, 1);

    proxy.cut();
    assert!(proxy.is_cut());
    assert_eq!(proxy.connections(), 0);
    assert!(
        is_closed(&mut open),
        "an open connection is closed by a cut"
    );
    assert!(
        round_trip(&mut open, b"after").is_err(),
        "nothing passes a cut connection"
    );

    // A new connection may be accepted by the kernel, but the proxy closes
    // it without forwarding a byte.
    for _ in 0..3 {
        let mut refused = connect(&proxy);
        let _ = refused.write_all(b"ping");
        assert!(is_closed(&mut refused), "a new connection is refused");
    }
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn a_heal_forwards_again() {
    let proxy = Proxy::start(echo_server()).unwrap();
    proxy.cut();
    let mut refused = connect(&proxy);
    assert!(is_closed(&mut refused));

    proxy.heal();
    assert!(!proxy.is_cut());
    let mut healed = connect(&proxy);
    assert_eq!(round_trip(&mut healed, b"again").unwrap(), b"again");

    // Cut and heal again: the proxy is reusable any number of times.
    proxy.cut();
    assert!(is_closed(&mut healed));
    proxy.heal();
    let mut third = connect(&proxy);
    assert_eq!(round_trip(&mut third, b"third").unwrap(), b"third");
}

#[test]
fn a_target_that_is_down_looks_like_a_refused_connection() {
    // A port that was free a moment ago and has no listener now.
    let down = synod_tests::free_addr().unwrap();
    let proxy = Proxy::start(down).unwrap();
    let mut stream = connect(&proxy);
    let _ = stream.write_all(b"anyone?");
    assert!(is_closed(&mut stream));
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn dropping_the_proxy_closes_its_port_and_connections() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let addr = proxy.addr();
    let mut open = connect(&proxy);
    assert_eq!(round_trip(&mut open, b"x").unwrap(), b"x");
    wait_connections(&proxy, 1);

    // Drop waits for the proxy's threads (bounded); it must come back.
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "dropping the proxy hung"
    );
    assert!(is_closed(&mut open), "the forwarded connection is closed");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "nothing listens on the proxy's port any more"
    );
}
