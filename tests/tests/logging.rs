//! The node's log as a container runtime or a redirect sees it: plain text
//! lines with no ANSI colour codes when stderr is not a terminal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let bin = synod_tests::binary("synod").expect("synod");
    let dir = synod_tests::TempDir::new("logging").expect("temp dir");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let client = synod_tests::free_addr().expect("address");
    let http = synod_tests::free_addr().expect("address");
    let mut child = Command::new(bin)
        .args(["serve", "--client-addr", &client.to_string()])
        .args(["--http-addr", &http.to_string()])
        .args(["--zookeeper-addr", "off", "--log", "info"])
        .env_remove("SYNOD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("synod starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(client).is_err() {
        assert!(Instant::now() < deadline, "synod did not start");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "synod exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let text = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(text.contains("INFO"), "the node logged: {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log: {text:?}"
    );
}
