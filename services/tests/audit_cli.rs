//! `stemma audit verify|head`, `stemma export` and `stemma import` as an auditor runs them,
//! on a data directory whose store is open (and holds the lock) in this process.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ledger::domain::events::{DomainEvent, ProjectStarted};
use ledger::domain::ids::ProjectId;
use ledger::store::{
    Actor, AppendRequest, CommandId, EmbeddedOptions, EmbeddedStore, EventStore, ServiceName,
};

fn stemma(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

async fn store_with_projects(data: &Path, count: usize) -> EmbeddedStore {
    let (store, _) = EmbeddedStore::open(data, EmbeddedOptions::default())
        .await
        .unwrap();
    for i in 0..count {
        let event = DomainEvent::from(ProjectStarted {
            project_id: ProjectId::new(format!("p{i}")).unwrap(),
            title: format!("Project number {i}"),
        });
        store
            .append(AppendRequest {
                command_id: CommandId::new(format!("c{i}")).unwrap(),
                correlation_id: None,
                causation_id: None,
                actor: Actor {
                    service: ServiceName::new("gateway").unwrap(),
                    on_behalf_of: None,
                },
                command_fingerprint: Some(i as u128),
                expectations: vec![],
                events: vec![event.to_proposed()],
            })
            .await
            .unwrap();
    }
    store
}

#[tokio::test]
async fn verify_head_export_and_import_work_while_the_store_is_open() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let store = store_with_projects(&data, 5).await;
    let head = store.head().await.unwrap();

    let output = stemma(&["audit", "verify", "--json"], &data);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["events"], 5);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["head_hash"], head.hash.to_hex());

    let output = stemma(&["audit", "head"], &data);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("5 {}\n", head.hash)
    );

    let output = stemma(
        &[
            "audit",
            "verify",
            "--until",
            "3",
            "--expect-head",
            &"0".repeat(64),
        ],
        &data,
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("position 3: checkpoint"), "{stdout}");

    let exported = stemma(&["export", "--format", "jsonl"], &data);
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(exported.stdout.iter().filter(|b| **b == b'\n').count(), 5);
    let first: serde_json::Value =
        serde_json::from_slice(exported.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["payload"]["title"], "Project number 0");
    assert_eq!(first["command_fingerprint"], "0");

    let copy = directory.path().join("copy");
    let mut import = Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["import", "--data"])
        .arg(&copy)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(&exported.stdout)
        .unwrap();
    let imported = import.wait_with_output().unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let again = stemma(&["export"], &copy);
    assert_eq!(again.stdout, exported.stdout);
    store.close().await;
}

#[tokio::test]
async fn verify_exits_1_and_names_the_position_of_a_changed_event() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let store = store_with_projects(&data, 4).await;
    store.close().await;
    drop(store);
    let segment = data.join("segments").join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == b"Project number 2")
        .unwrap();
    bytes[at] = b'p';
    std::fs::write(&segment, &bytes).unwrap();

    let output = stemma(&["audit", "verify"], &data);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The frame checksum no longer holds: reading resumes at the next frame.
    assert!(stdout.contains("position 3: frame"), "{stdout}");
    assert!(stdout.contains("position 4: position"), "{stdout}");
    assert!(stdout.contains("FINDINGS"), "{stdout}");

    let output = stemma(&["export"], &data);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("position 3"));
}

#[tokio::test]
async fn explain_and_statement_print_a_payout_and_its_line() {
    use ledger::time::Timestamp;
    use stemma_testkit::forge::{one_line_payout_history, write_log_past_the_domain};

    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let (history, payout_id) = one_line_payout_history("50", Timestamp(0));
    write_log_past_the_domain(&data, &history).await;

    let output = stemma(
        &["audit", "explain", "--json", "--payout", payout_id.as_str()],
        &data,
    );
    assert!(output.status.success(), "{output:?}");
    let explanation: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(explanation["member"], "ann");
    assert_eq!(explanation["amount"], "50.00 USD");
    assert_eq!(explanation["issued"]["position"], 9);
    assert_eq!(explanation["distribution"]["pool"], "50.00 USD");
    assert_eq!(
        explanation["distribution"]["money"][0]["amount"],
        "100.00 USD"
    );
    assert_eq!(
        explanation["distribution"]["line"]["rationale"],
        "the verse"
    );

    let output = stemma(&["audit", "explain", "--payout", payout_id.as_str()], &data);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("line        1 of 1: weight 1 of 1, records r"),
        "{text}"
    );

    let output = stemma(&["audit", "statement", "--member", "ann"], &data);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(payout_id.as_str()), "{text}");
    assert!(
        text.contains("total USD: issued 50.00 USD, settled 0.00 USD"),
        "{text}"
    );

    let output = stemma(&["audit", "explain", "--payout", "po-nothing"], &data);
    assert_eq!(output.status.code(), Some(2));
}
