//! The runner, queries with `min_position` (read-your-writes), snapshots and blue/green
//! rebuilds, on a real store in a temporary directory fed by the real decider.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ledger::store::EventStore;
use projections::serving::ReadModels;
use projections::snapshot::{self, SnapshotHeader};
use projections::{Projection, QueryError, PROJECTION_NAMES};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

async fn small_world(world: &Harness, records: usize) {
    world.ok(register("alice")).await;
    world.ok(register("bob")).await;
    world.ok(start_project("p1")).await;
    world.ok(upload("r0", "p1", "alice")).await;
    for i in 1..records {
        let source = format!("r{}", i - 1);
        let contributor = if i % 2 == 0 { "alice" } else { "bob" };
        world
            .ok(remix(&format!("r{i}"), "p1", contributor, &[&source]))
            .await;
    }
}

#[tokio::test]
async fn a_query_waits_for_its_own_write_and_a_bounded_wait_times_out() {
    let world = Harness::new().await;
    small_world(&world, 3).await;
    let models = ReadModels::start(world.store.clone(), None).await;
    let head = world.head().await;

    // Asked before the write exists: the query waits until the runner has applied it.
    let statements = models.statements.clone();
    let waiting = tokio::spawn(async move {
        statements
            .query(head + 1, WAIT, |m| m.member(&member("carol")))
            .await
    });
    let written = world.ok(register("carol")).await;
    assert_eq!(written.append.last_position, head + 1);
    let answer = waiting.await.unwrap().unwrap();
    assert!(answer.position > head);
    assert_eq!(answer.value.unwrap().member, member("carol"));

    // Read-your-writes through the family tree: the remix just written is there.
    let written = world.ok(remix("r9", "p1", "carol", &["r2"])).await;
    let sources = models
        .family_tree
        .query(written.append.last_position, WAIT, |m| {
            m.sources(&record("r9"))
        })
        .await
        .unwrap();
    assert_eq!(sources.value.unwrap()[0].record, record("r2"));

    // A position that will not come within the bound: the typed timeout, naming what the
    // projection did reach.
    let head = world.head().await;
    let error = models
        .credits
        .query(head + 10, Duration::from_millis(20), |_| ())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        QueryError::Timeout {
            projection: "credits",
            min_position: head + 10,
            reached: head,
            waited: Duration::from_millis(20),
        }
    );

    // Once the runner is stopped, a wait for a position it will never reach fails at once
    // with the reason, and what it reached is still answered.
    models.stop().await;
    let error = models
        .allocations
        .query(head + 1, WAIT, |_| ())
        .await
        .unwrap_err();
    assert!(
        matches!(error, QueryError::Stopped { reached, .. } if reached == head),
        "{error:?}"
    );
    assert!(models.allocations.query(head, WAIT, |_| ()).await.is_ok());
}

#[tokio::test]
async fn start_loads_snapshots_and_replays_only_the_tail() {
    let world = Harness::new().await;
    small_world(&world, 20).await;
    let directory = world.snapshot_directory();
    let first = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    let at_snapshot = world.head().await;
    caught_up(&first, at_snapshot).await;
    let written = first.write_snapshots().await.unwrap();
    assert_eq!(written.len(), 5, "four models, then the id catalog");
    assert_eq!(
        written[4].0,
        snapshot::snapshot_path(&directory, projections::catalog::NAME)
    );
    assert!(written.iter().all(|(_, c)| c.position == at_snapshot));
    first.stop().await;

    // More history after the snapshot.
    world.ok(cite("r10", "r3")).await;
    small_tail(&world).await;
    let head = world.head().await;

    let restored = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    for started in restored.started() {
        assert_eq!(
            started.snapshot.map(|c| c.position),
            Some(at_snapshot),
            "{started:?}"
        );
    }
    caught_up(&restored, head).await;
    let scratch = ReadModels::start(world.store.clone(), None).await;
    caught_up(&scratch, head).await;
    assert!(scratch.started().iter().all(|s| s.snapshot.is_none()));
    assert_eq!(encoded(&restored), encoded(&scratch));
    restored.stop().await;

    // A damaged snapshot is ignored and the model rebuilt from the log.
    let path = snapshot::snapshot_path(&directory, "family_tree");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    // Another schema version is ignored too (written properly, so only the version differs).
    let (header, content) = snapshot::read(&snapshot::snapshot_path(&directory, "credits"))
        .unwrap()
        .unwrap();
    snapshot::write(
        &directory,
        &SnapshotHeader {
            schema_version: header.schema_version + 1,
            ..header
        },
        &content,
    )
    .unwrap();
    // And one taken from another log (same position, another hash).
    let (header, content) = snapshot::read(&snapshot::snapshot_path(&directory, "statements"))
        .unwrap()
        .unwrap();
    snapshot::write(
        &directory,
        &SnapshotHeader {
            position_hash: [9; 32],
            ..header
        },
        &content,
    )
    .unwrap();
    let reloaded = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    let from_snapshot: Vec<(&str, bool)> = reloaded
        .started()
        .iter()
        .map(|s| (s.projection, s.snapshot.is_some()))
        .collect();
    assert_eq!(
        from_snapshot,
        vec![
            ("family_tree", false),
            ("allocations", true),
            ("credits", false),
            ("statements", false)
        ]
    );
    caught_up(&reloaded, head).await;
    assert_eq!(encoded(&reloaded), encoded(&scratch));
    reloaded.stop().await;

    // The models hold the catalog's numbers: without a usable catalog snapshot, every
    // model is rebuilt, even from an intact snapshot of its own.
    let path = snapshot::snapshot_path(&directory, projections::catalog::NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let without_catalog = ReadModels::start(world.store.clone(), Some(directory)).await;
    assert!(without_catalog
        .started()
        .iter()
        .all(|s| s.snapshot.is_none()));
    caught_up(&without_catalog, head).await;
    assert_eq!(encoded(&without_catalog), encoded(&scratch));
}

/// A model snapshot taken past the catalog's (a crash between the two writes) is not
/// loaded: the catalog may lack numbers the model holds. One taken before the catalog's is
/// loaded, and the runner replays its tail through a catalog that has seen it already.
#[tokio::test]
async fn a_model_snapshot_loads_only_with_a_catalog_at_or_past_it() {
    let world = Harness::new().await;
    small_world(&world, 20).await;
    let directory = world.snapshot_directory();
    let first = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    let early = world.head().await;
    caught_up(&first, early).await;
    first.write_snapshots().await.unwrap();
    let catalog_path = snapshot::snapshot_path(&directory, projections::catalog::NAME);
    let early_catalog = std::fs::read(&catalog_path).unwrap();

    world.ok(cite("r10", "r3")).await;
    small_tail(&world).await;
    let head = world.head().await;
    caught_up(&first, head).await;
    // Allocations and the catalog at the head; the other models stay at `early`.
    first.write_snapshot("allocations").await.unwrap().unwrap();
    first.stop().await;

    let later = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    let positions: Vec<Option<u64>> = later
        .started()
        .iter()
        .map(|s| s.snapshot.map(|c| c.position))
        .collect();
    assert_eq!(
        positions,
        vec![Some(early), Some(head), Some(early), Some(early)]
    );
    caught_up(&later, head).await;
    let scratch = ReadModels::start(world.store.clone(), None).await;
    caught_up(&scratch, head).await;
    assert_eq!(encoded(&later), encoded(&scratch));
    later.stop().await;

    std::fs::write(&catalog_path, early_catalog).unwrap();
    let crashed = ReadModels::start(world.store.clone(), Some(directory)).await;
    let positions: Vec<Option<u64>> = crashed
        .started()
        .iter()
        .map(|s| s.snapshot.map(|c| c.position))
        .collect();
    assert_eq!(positions, vec![Some(early), None, Some(early), Some(early)]);
    caught_up(&crashed, head).await;
    assert_eq!(encoded(&crashed), encoded(&scratch));
}

async fn small_tail(world: &Harness) {
    world.ok(register("dave")).await;
    world.ok(remix("t1", "p1", "dave", &["r19", "r4"])).await;
    world.ok(withdraw("r7")).await;
}

#[tokio::test]
async fn a_rebuild_serves_from_the_old_instance_until_it_switches() {
    let world = Harness::new().await;
    // Enough events for several progress reports while the new instance catches up
    // (subscriptions read 4,096 events at a time, applied 1,024 at a time).
    small_world(&world, 2).await;
    let batch: Vec<_> = (0..3_000)
        .map(|i| {
            upload(
                &format!("bulk{i}"),
                "p1",
                if i % 2 == 0 { "alice" } else { "bob" },
            )
        })
        .collect();
    for result in futures::future::join_all(batch.into_iter().map(|c| world.execute(c))).await {
        result.unwrap();
    }
    world.ok(cite("bulk5", "bulk4")).await;
    let head = world.head().await;
    let models = ReadModels::start(world.store.clone(), None).await;
    caught_up(&models, head).await;
    let before = encoded(&models);
    let old_instance = models.family_tree.instance();
    let answer = |models: &ReadModels| {
        models
            .family_tree
            .query_now(|m| m.sources(&record("bulk5")))
            .value
    };
    let expected = answer(&models);
    assert!(expected.is_some());

    let mut reports = Vec::new();
    let store: Arc<dyn EventStore> = world.store.clone();
    let report = models
        .rebuild(store, &["family_tree".to_string()], |progress| {
            if !progress.switched {
                // Still the old instance: complete, while the new one is partial.
                assert_eq!(models.family_tree.generation(), 0);
                assert!(Arc::ptr_eq(&models.family_tree.instance(), &old_instance));
                assert_eq!(answer(&models), expected);
                assert_eq!(models.family_tree.checkpoint().position, head);
            }
            reports.push(progress.clone());
        })
        .await
        .unwrap();
    assert_eq!(report.position, head);
    assert_eq!(report.projections, vec!["family_tree"]);
    assert!(
        reports.iter().any(|p| !p.switched && p.position < head),
        "progress is reported during the catch-up"
    );
    assert!(reports.windows(2).all(|w| w[0].position <= w[1].position));
    let last = reports.last().unwrap();
    assert!(last.switched && last.position == head && last.head == head);

    // After the switch the new instance answers, the same; the others were not touched.
    assert_eq!(models.family_tree.generation(), 1);
    assert!(!Arc::ptr_eq(&models.family_tree.instance(), &old_instance));
    assert_eq!(models.credits.generation(), 0);
    assert_eq!(answer(&models), expected);
    assert_eq!(encoded(&models), before);

    // Its runner lets go of the old instance without waiting for another event: once the
    // test drops its handle, its memory is freed. (Yielding lets the runner task run.)
    let retired = Arc::downgrade(&old_instance);
    assert_eq!(old_instance.checkpoint().position, head);
    drop(old_instance);
    for _ in 0..10_000 {
        if retired.strong_count() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(retired.strong_count(), 0);

    // The new instance stays current: a write after the switch is applied to it.
    let written = world.ok(remix("after", "p1", "bob", &["bulk5"])).await;
    let position = written.append.last_position;
    let descendants = models
        .family_tree
        .query(position, WAIT, |m| {
            m.remixes(&record("bulk5")).unwrap().len()
        })
        .await
        .unwrap();
    assert_eq!(descendants.value, 1);
    caught_up(&models, position).await;

    // Every projection at once, then an unknown name.
    let store: Arc<dyn EventStore> = world.store.clone();
    let report = models.rebuild(store.clone(), &[], |_| {}).await.unwrap();
    assert_eq!(report.projections, PROJECTION_NAMES.to_vec());
    assert!(models
        .rebuild(store, &["nope".to_string()], |_| {})
        .await
        .is_err());
    let scratch = ReadModels::start(world.store.clone(), None).await;
    caught_up(&scratch, position).await;
    assert_eq!(encoded(&models), encoded(&scratch));
    let _ = <projections::family_tree::FamilyTree as Projection>::NAME;
}

#[tokio::test]
async fn an_undecodable_event_stops_the_models_after_the_facts_before_it() {
    use ledger::store::{
        Actor, AppendRequest, CommandId, EventType, ProposedEvent, ServiceName, StreamId,
    };
    let world = Harness::new().await;
    small_world(&world, 2).await;
    let before = world.head().await;
    world
        .store
        .append(AppendRequest {
            command_fingerprint: None,
            command_id: CommandId::new("from-the-future").unwrap(),
            correlation_id: None,
            causation_id: None,
            actor: Actor {
                service: ServiceName::new("newer-code").unwrap(),
                on_behalf_of: None,
            },
            expectations: Vec::new(),
            events: vec![ProposedEvent {
                stream_id: StreamId::new("record-r0").unwrap(),
                event_type: EventType::new("RecordRemastered").unwrap(),
                schema_version: 1,
                payload: vec![1, 2, 3],
            }],
        })
        .await
        .unwrap();
    let models = ReadModels::start(world.store.clone(), None).await;
    let error = models
        .family_tree
        .query(before + 1, WAIT, |_| ())
        .await
        .unwrap_err();
    match error {
        QueryError::Stopped {
            reached, reason, ..
        } => {
            assert_eq!(reached, before, "every fact before it was applied");
            assert!(
                reason.contains(&format!("position {}", before + 1)),
                "{reason}"
            );
            assert!(reason.contains("RecordRemastered"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let sources = models
        .family_tree
        .query(before, WAIT, |m| m.sources(&record("r1")))
        .await
        .unwrap();
    assert_eq!(sources.value.unwrap().len(), 1);
}

/// The runner decodes from the batch read's views: the same `AppliedEvent`s as from
/// `read_all`'s owned events, an old schema version upcast the same way (by the domain's
/// decode), and the read models built through it know the old event. Its own path (ids
/// borrowed from the batch and numbered at once, `Catalog::decode_views`) numbers every
/// event as resolving the owned events does, and sorts out the same id-only events.
#[tokio::test]
async fn events_decoded_in_place_equal_the_owned_path_and_old_versions_are_upcast() {
    use ledger::domain::events::DomainEvent;
    use ledger::store::RecordBatch;
    use projections::AppliedEvent;
    use stemma_testkit::forge::version_1_upload;

    let world = Harness::new().await;
    small_world(&world, 3).await;
    // Written as the version-1 code wrote it: no licence terms version.
    let written = world
        .store
        .append(version_1_upload("old", "p1", "alice"))
        .await
        .unwrap();
    // The decider learns of an event appended past it when it starts again.
    let world = world.restart().await;
    world.ok(remix("new", "p1", "bob", &["old"])).await;
    let head = world.head().await;

    let mut owned = Vec::new();
    while (owned.len() as u64) < head {
        for event in world
            .store
            .read_all(owned.len() as u64 + 1, 2)
            .await
            .unwrap()
        {
            owned.push(AppliedEvent::decode(&event).unwrap());
        }
    }
    let mut in_place = Vec::new();
    let mut borrowed = Vec::new();
    let catalog = projections::Catalog::new();
    let mut batch = RecordBatch::new();
    while (in_place.len() as u64) < head {
        world
            .store
            .read_all_batch(in_place.len() as u64 + 1, 2, &mut batch)
            .await
            .unwrap();
        for view in batch.iter() {
            in_place.push(AppliedEvent::decode_view(&view).unwrap());
        }
        catalog.decode_views(batch.iter(), &mut borrowed).unwrap();
    }
    assert_eq!(in_place, owned);
    let old = written.first_position as usize - 1;
    let Some(DomainEvent::RecordUploaded(upcast)) = in_place[old].event() else {
        panic!("not a RecordUploaded");
    };
    assert_eq!(upcast.licence.terms_version, "original");

    let resolved = projections::Catalog::new();
    resolved.resolve(&mut owned);
    assert_eq!(*resolved.read(), *catalog.read());
    assert_eq!(borrowed.len(), owned.len());
    let mut ids_only = 0;
    for (borrowed, owned) in borrowed.iter().zip(&owned) {
        assert_eq!(borrowed.ids, owned.ids, "at {}", owned.position);
        assert_eq!(
            borrowed.ids_only(),
            owned.ids_only(),
            "at {}",
            owned.position
        );
        assert_eq!(
            (borrowed.position, borrowed.recorded_at, borrowed.hash),
            (owned.position, owned.recorded_at, owned.hash)
        );
        match &borrowed.fact {
            projections::Fact::Ids(_) => ids_only += 1,
            projections::Fact::Event(event) => assert_eq!(Some(event.as_ref()), owned.event()),
        }
    }
    // The upcast old upload comes decoded in full; the uploads, registrations and
    // citations of the small world as ids alone.
    assert!(borrowed[old].event().is_some());
    assert!(ids_only > owned.len() / 2, "{ids_only} of {}", owned.len());

    let models = ReadModels::start(world.store.clone(), None).await;
    caught_up(&models, head).await;
    let remixes = models
        .family_tree
        .query_now(|m| m.remixes(&record("old")).map(|links| links.len()))
        .value;
    assert_eq!(remixes, Some(1));
}
