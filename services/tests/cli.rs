//! The `stemma` binary as an operator runs it.

use std::process::Command;

#[test]
fn store_status_opens_a_new_directory_and_reports_an_empty_log() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["store", "status", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["head_position"], 0);
    assert_eq!(status["head_hash"], "0".repeat(64));
    assert_eq!(status["segments"], 1);
    assert!(status["torn_tail"].is_null());
    assert!(data.join("LOCK").exists());
}

#[test]
fn store_status_on_a_damaged_log_fails_and_names_the_place() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    std::fs::create_dir_all(data.join("segments")).unwrap();
    std::fs::write(
        data.join("segments").join("00000000000000000001.seg"),
        b"not a segment",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["store", "status", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("00000000000000000001.seg"), "{stderr}");
    assert!(stderr.contains("bad segment header"), "{stderr}");
}

/// A free loopback port (bound and released; the process under test binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_demo_against_a_started_server_exits_0_with_matching_totals() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let metrics_port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The server says where it listens once it does.
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(address) = line.strip_prefix("stemma listening on ") {
            break address.to_string();
        }
    };
    let demo = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["demo", "--window-seconds", "2", "--server"])
        .arg(format!("http://{address}"))
        .arg("--tokens-dir")
        .arg(data.join("tokens"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(stdout.contains("contributors          426"), "{stdout}");
    assert!(
        stdout.contains("artists' pool         $21000.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lines                 426 summing to $21000.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("payouts issued        426 summing to $21000.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lead fee paid         $1500.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the feedback window is open until"),
        "{stdout}"
    );
    assert!(
        stdout.contains("yes: pool = Σ lines = Σ payouts"),
        "{stdout}"
    );

    // Prometheus sees the commands.
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("stemma_commands_total{type=\"RegisterMember\",outcome=\"accepted\"} 428"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stemma_command_seconds_bucket"),
        "{metrics}"
    );

    // SIGTERM: a graceful stop, exit 0, and the log reopens intact.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    let status = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["store", "status", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["head_position"].as_u64().unwrap() > 2_000);
    assert!(status["torn_tail"].is_null());
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
