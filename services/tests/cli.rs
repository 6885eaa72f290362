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
