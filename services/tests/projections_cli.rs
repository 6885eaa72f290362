//! `stemma projections rebuild` on a real data directory written by the real decider.

use std::path::Path;
use std::process::Command as Process;
use std::sync::Arc;

use ledger::decider::{CommandEnvelope, Decider};
use ledger::domain::commands::*;
use ledger::domain::events::{Line, MediaRef, RecordKind, SealedPersonalData};
use ledger::domain::ids::*;
use ledger::domain::privacy::FileKeyVault;
use ledger::domain::Command;
use ledger::money::{Currency, Money, Weight};
use ledger::store::{Actor, CommandId, EmbeddedOptions, EmbeddedStore, EventStore, ServiceName};
use ledger::time::SystemClock;
use projections::{Projection, ReadModels};

fn upload(id: &str, contributor: &str, sources: &[&str]) -> Command {
    let record = UploadRecord {
        record_id: RecordId::new(id).unwrap(),
        project_id: ProjectId::new("p1").unwrap(),
        contributor: MemberId::new(contributor).unwrap(),
        kind: RecordKind::Image,
        title: id.into(),
        media: MediaRef {
            blake3: *blake3::hash(id.as_bytes()).as_bytes(),
            size_bytes: 10,
        },
        licence_terms_version: "2026-01".into(),
    };
    if sources.is_empty() {
        Command::UploadRecord(record)
    } else {
        Command::UploadRemix(UploadRemix {
            record,
            sources: sources.iter().map(|s| RecordId::new(*s).unwrap()).collect(),
        })
    }
}

/// Writes a small history into `data` and returns its head.
async fn write_history(data: &Path, keys: &Path) -> u64 {
    let (store, _) = EmbeddedStore::open(data, EmbeddedOptions::default())
        .await
        .unwrap();
    let store = Arc::new(store);
    let vault = Arc::new(FileKeyVault::open(keys).unwrap());
    let (handle, task) = Decider::start(store.clone(), Arc::new(SystemClock), vault)
        .await
        .unwrap();
    let mut commands = vec![
        Command::StartProject(StartProject {
            project_id: ProjectId::new("p1").unwrap(),
            title: "An episode".into(),
        }),
        Command::OpenProduction(OpenProduction {
            production_id: ProductionId::new("pr1").unwrap(),
            project_id: ProjectId::new("p1").unwrap(),
            title: "Episode 1".into(),
            currency: Currency::USD,
            artist_share: None,
            feedback_window_micros: None,
        }),
    ];
    for name in ["ann", "ben", "cy"] {
        commands.insert(
            0,
            Command::RegisterMember(RegisterMember {
                member_id: MemberId::new(name).unwrap(),
                handle: format!("@{name}"),
                personal_data: SealedPersonalData {
                    nonce: [0; 12],
                    ciphertext: vec![1],
                },
            }),
        );
    }
    commands.push(upload("a", "ann", &[]));
    commands.push(upload("b", "ben", &["a"]));
    commands.push(upload("c", "cy", &["a", "b"]));
    commands.push(Command::IncludeRecord(IncludeRecord {
        production_id: ProductionId::new("pr1").unwrap(),
        record_id: RecordId::new("c").unwrap(),
    }));
    commands.push(Command::RecordRevenue(RecordRevenue {
        production_id: ProductionId::new("pr1").unwrap(),
        amount: Money::parse("1000", Currency::USD).unwrap(),
        description: "licence".into(),
    }));
    commands.push(Command::ProposeAllocation(ProposeAllocation {
        distribution_id: DistributionId::new("d1").unwrap(),
        production_id: ProductionId::new("pr1").unwrap(),
        lines: vec![Line {
            member: MemberId::new("cy").unwrap(),
            weight: Weight::parse("1").unwrap(),
            rationale: "the cut".into(),
            records: vec![RecordId::new("c").unwrap()],
        }],
    }));
    for (n, command) in commands.into_iter().enumerate() {
        handle
            .execute(CommandEnvelope {
                expected_version: None,
                command_id: CommandId::new(format!("c{n}")).unwrap(),
                correlation_id: None,
                causation_id: None,
                actor: Actor {
                    service: ServiceName::new("test").unwrap(),
                    on_behalf_of: None,
                },
                command,
            })
            .await
            .unwrap();
    }
    let head = store.head().await.unwrap().position;
    drop(handle);
    task.await.unwrap();
    store.close().await;
    head
}

fn stemma(args: &[&str], data: &Path) -> std::process::Output {
    Process::new(env!("CARGO_BIN_EXE_stemma"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

#[tokio::test]
async fn rebuild_writes_snapshots_that_the_service_then_loads() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let head = write_history(&data, &directory.path().join("keys")).await;

    let output = stemma(&["projections", "rebuild", "--json"], &data);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        result["projections"],
        serde_json::json!(["family_tree", "allocations", "credits", "statements"])
    );
    assert_eq!(result["position"], head);
    let snapshots = result["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 4);
    for path in snapshots {
        assert!(Path::new(path.as_str().unwrap()).exists());
    }

    // One projection, named.
    let output = stemma(
        &["projections", "rebuild", "--projection", "credits"],
        &data,
    );
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!("rebuilt credits up to position {head} ")),
        "{stdout}"
    );

    // An unknown one is refused before anything is opened.
    let output = stemma(&["projections", "rebuild", "--projection", "nope"], &data);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("family_tree"));

    // The service starts from those snapshots, with nothing to replay, and they hold what
    // a build from the log holds.
    let (store, _) = EmbeddedStore::open(&data, EmbeddedOptions::default())
        .await
        .unwrap();
    let store = Arc::new(store);
    let restored = ReadModels::start(store.clone(), Some(data.join("projections"))).await;
    assert!(restored
        .started()
        .iter()
        .all(|s| s.snapshot.map(|c| c.position) == Some(head)));
    let scratch = ReadModels::start(store.clone(), None).await;
    for models in [&restored, &scratch] {
        let wait = std::time::Duration::from_secs(30);
        models.family_tree.query(head, wait, |_| ()).await.unwrap();
        models.allocations.query(head, wait, |_| ()).await.unwrap();
        models.credits.query(head, wait, |_| ()).await.unwrap();
        models.statements.query(head, wait, |_| ()).await.unwrap();
    }
    let encode = |models: &ReadModels| {
        vec![
            models.family_tree.query_now(|m| m.encode()).value,
            models.allocations.query_now(|m| m.encode()).value,
            models.credits.query_now(|m| m.encode()).value,
            models.statements.query_now(|m| m.encode()).value,
        ]
    };
    assert_eq!(encode(&restored), encode(&scratch));
    let credits = restored
        .credits
        .query_now(|m| m.production(&ProductionId::new("pr1").unwrap()))
        .value
        .unwrap();
    assert_eq!(credits.included[0].member.as_str(), "cy");
    let influencing: Vec<&str> = credits
        .influencing
        .iter()
        .map(|c| c.member.as_str())
        .collect();
    assert_eq!(influencing, vec!["ann", "ben"]);
    restored.stop().await;
    scratch.stop().await;
    store.close().await;
}
