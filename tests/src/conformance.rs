//! The behaviour every `EventStore` backend must show. Each check takes a fresh, empty
//! store; a backend's test file calls every check with its own stores.

use std::sync::Arc;

use ledger::store::{
    self, chain, limits, EventStore, EventView, ExpectedVersion, Head, Position, RecordBatch,
    RecordedEvent, StoreError,
};

use crate::{append, event, stream};

/// Every event from 1 to head, checked for gap-free positions and an intact hash chain.
pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let head = store.head().await.unwrap();
    let mut events: Vec<RecordedEvent> = Vec::new();
    while (events.len() as Position) < head.position {
        let batch = store
            .read_all(events.len() as Position + 1, 1_000)
            .await
            .unwrap();
        assert!(!batch.is_empty(), "read_all stopped before the head");
        events.extend(batch);
    }
    assert_chain(&events, head);
    events
}

/// Positions 1..=n, each event linked to the one before, ending at `head`.
pub fn assert_chain(events: &[RecordedEvent], head: Head) {
    let mut previous = ledger::store::Hash32::GENESIS;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, i as Position + 1, "positions are gap-free");
        assert_eq!(
            event.previous_hash, previous,
            "hash link at {}",
            event.position
        );
        assert_eq!(
            chain::expected_hash(event),
            event.hash,
            "hash at {}",
            event.position
        );
        previous = event.hash;
    }
    assert_eq!(head.position, events.len() as Position);
    assert_eq!(head.hash, previous);
}

pub async fn appends_and_reads(store: Arc<dyn EventStore>) {
    let first = store
        .append(append(
            "c1",
            &[],
            vec![
                event("a-1", b"one"),
                event("b-1", b"two"),
                event("a-1", b"three"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(first.first_position, 1);
    assert_eq!(first.last_position, 3);
    assert_eq!(
        first.stream_versions,
        vec![(stream("a-1"), 2), (stream("b-1"), 1)]
    );
    let second = store
        .append(append("c2", &[], vec![event("b-1", b"four")]))
        .await
        .unwrap();
    assert_eq!((second.first_position, second.last_position), (4, 4));
    assert_eq!(second.stream_versions, vec![(stream("b-1"), 2)]);

    let a = store.read_stream(&stream("a-1"), 1, 100).await.unwrap();
    let payloads: Vec<&[u8]> = a.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"one"[..], b"three"]);
    assert_eq!(
        a.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(a.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 3]);
    let b_from_2 = store.read_stream(&stream("b-1"), 2, 100).await.unwrap();
    assert_eq!(b_from_2.len(), 1);
    assert_eq!(b_from_2[0].payload, b"four");
    assert!(store
        .read_stream(&stream("none-1"), 1, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version(&stream("a-1")).await.unwrap(), 2);
    assert_eq!(store.stream_version(&stream("none-1")).await.unwrap(), 0);

    let all = read_everything(store.as_ref()).await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].command_id.as_str(), "c1");
    assert_eq!(all[0].event_type.as_str(), "TestEvent");
    assert_eq!(all[3].recorded_at, second.recorded_at);
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 4, "event ids are unique");
    assert_eq!(store.read_all(3, 1).await.unwrap()[0].position, 3);
    assert!(store.read_all(5, 10).await.unwrap().is_empty());
}

pub async fn expected_versions_are_enforced(store: Arc<dyn EventStore>) {
    store
        .append(append(
            "c1",
            &[("s-1", ExpectedVersion::NoStream)],
            vec![event("s-1", b"x")],
        ))
        .await
        .unwrap();
    let conflict = store
        .append(append(
            "c2",
            &[("s-1", ExpectedVersion::NoStream)],
            vec![event("s-1", b"y")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, StoreError::WrongExpectedVersion { stream_id, expected: ExpectedVersion::NoStream, actual: 1 } if stream_id.as_str() == "s-1"),
        "{conflict}"
    );
    let conflict = store
        .append(append(
            "c3",
            &[("s-1", ExpectedVersion::Exact(2))],
            vec![event("s-1", b"y")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::WrongExpectedVersion { actual: 1, .. }),
        "{conflict}"
    );
    store
        .append(append(
            "c4",
            &[("s-1", ExpectedVersion::Exact(1))],
            vec![event("s-1", b"y")],
        ))
        .await
        .unwrap();
    store
        .append(append(
            "c5",
            &[("s-1", ExpectedVersion::Any)],
            vec![event("s-1", b"z")],
        ))
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap().position, 3);
}

/// An expectation on a stream the append does not write keeps a decision that read it
/// valid; a failed expectation on any stream refuses the whole append.
pub async fn expectations_on_read_streams_and_atomicity(store: Arc<dyn EventStore>) {
    store
        .append(append(
            "source",
            &[],
            vec![event("record-src", b"uploaded")],
        ))
        .await
        .unwrap();
    // Decided while record-src was at version 1; meanwhile it is withdrawn.
    store
        .append(append(
            "withdraw",
            &[],
            vec![event("record-src", b"withdrawn")],
        ))
        .await
        .unwrap();
    let refused = store
        .append(append(
            "remix",
            &[
                ("record-src", ExpectedVersion::Exact(1)),
                ("record-remix", ExpectedVersion::NoStream),
            ],
            vec![
                event("record-remix", b"remix of src"),
                event("project-p", b"attached"),
            ],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::WrongExpectedVersion { ref stream_id, .. } if stream_id.as_str() == "record-src"),
        "{refused}"
    );
    assert_eq!(
        store.head().await.unwrap().position,
        2,
        "nothing of a refused append is written"
    );
    assert_eq!(
        store.stream_version(&stream("record-remix")).await.unwrap(),
        0
    );
    assert_eq!(store.stream_version(&stream("project-p")).await.unwrap(), 0);
    let accepted = store
        .append(append(
            "remix-2",
            &[
                ("record-src", ExpectedVersion::Exact(2)),
                ("record-remix", ExpectedVersion::NoStream),
            ],
            vec![
                event("record-remix", b"remix of src"),
                event("project-p", b"attached"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!((accepted.first_position, accepted.last_position), (3, 4));
    assert_eq!(
        store.stream_version(&stream("record-src")).await.unwrap(),
        2
    );
}

pub async fn command_ids_are_idempotent(store: Arc<dyn EventStore>) {
    let request = append(
        "c-1",
        &[("s-1", ExpectedVersion::NoStream)],
        vec![event("s-1", b"x"), event("t-1", b"y")],
    );
    let original = store.append(request.clone()).await.unwrap();
    store
        .append(append("c-2", &[], vec![event("s-1", b"z")]))
        .await
        .unwrap();
    // The retry's expectation no longer holds; the command already happened, so the
    // original result comes back and nothing is written.
    let retried = store.append(request.clone()).await.unwrap();
    assert_eq!(retried, original);
    assert_eq!(store.head().await.unwrap().position, 3);
    let mut changed = request.clone();
    changed.events[1].payload = b"other".to_vec();
    let error = store.append(changed).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::CommandIdReused { command_id, original_position: 1 } if command_id.as_str() == "c-1"),
        "{error}"
    );
    let mut fewer = request.clone();
    fewer.events.pop();
    assert!(matches!(
        store.append(fewer).await.unwrap_err(),
        StoreError::CommandIdReused { .. }
    ));
    let mut other_actor = request;
    other_actor.actor.service = ledger::store::ServiceName::new("someone-else").unwrap();
    assert!(matches!(
        store.append(other_actor).await.unwrap_err(),
        StoreError::CommandIdReused { .. }
    ));
    assert_eq!(store.head().await.unwrap().position, 3);
}

/// Concurrent duplicates of one command (as a client retrying before the first reply)
/// write once and all get the same result.
pub async fn concurrent_duplicates_write_once(store: Arc<dyn EventStore>) {
    let request = append("dup", &[], vec![event("s-1", b"x")]);
    let mut pending = Vec::new();
    for _ in 0..8 {
        pending.push(store.submit(request.clone()).await.unwrap());
    }
    let mut results = Vec::new();
    for p in pending {
        results.push(p.await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(store.head().await.unwrap().position, 1);
}

pub async fn invalid_appends_write_nothing(store: Arc<dyn EventStore>) {
    let empty = store.append(append("c", &[], vec![])).await.unwrap_err();
    assert!(
        empty
            .to_string()
            .contains("events: an append needs at least one event"),
        "{empty}"
    );
    let huge = store
        .append(append(
            "c",
            &[],
            vec![event(
                "s-1",
                &vec![0u8; store::limits::EVENT_PAYLOAD_BYTES_MAX + 1],
            )],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            huge,
            StoreError::TooLarge {
                field: "events[].payload",
                ..
            }
        ),
        "{huge}"
    );
    assert!(
        huge.to_string().contains("over the limit of 1048576 bytes"),
        "{huge}"
    );
    let mut zero_schema = append("c", &[], vec![event("s-1", b"x")]);
    zero_schema.events[0].schema_version = 0;
    let error = store.append(zero_schema).await.unwrap_err();
    assert!(
        error.to_string().contains("events[0].schema_version"),
        "{error}"
    );
    assert_eq!(store.head().await.unwrap(), Head::EMPTY);
    // The command id was not consumed by the refused attempts.
    store
        .append(append("c", &[], vec![event("s-1", b"x")]))
        .await
        .unwrap();
}

/// Catch-up then live: a subscriber started in the middle of writing sees every event
/// exactly once, in order.
pub async fn subscriptions_catch_up_then_go_live(store: Arc<dyn EventStore>) {
    for i in 0..50 {
        store
            .append(append(
                &format!("before-{i}"),
                &[],
                vec![event("s-1", b"x")],
            ))
            .await
            .unwrap();
    }
    let total = 250u64;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 50..total {
                store
                    .append(append(
                        &format!("during-{i}"),
                        &[],
                        vec![event("s-2", b"y")],
                    ))
                    .await
                    .unwrap();
            }
        })
    };
    let mut from_start = store::subscribe(store.clone(), 1);
    let mut from_middle = store::subscribe(store.clone(), 40);
    let mut seen = Vec::new();
    while seen.len() < total as usize {
        seen.extend(
            from_start
                .next_batch()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.position),
        );
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    let mut seen = Vec::new();
    while seen.len() < (total - 39) as usize {
        seen.extend(
            from_middle
                .next_batch()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.position),
        );
    }
    assert_eq!(seen, (40..=total).collect::<Vec<_>>());
    writer.await.unwrap();
    // Caught up: the next batch is the next append, nothing more, nothing less.
    let next = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(append("after", &[], vec![event("s-3", b"z")]))
                .await
                .unwrap()
        })
    };
    let batch = from_start.next_batch().await.unwrap();
    assert_eq!(
        batch.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![total + 1]
    );
    next.await.unwrap();
}

/// Many tasks appending to shared and own streams with exact expectations: versions stay
/// gap-free, and each conflict is reported as a conflict.
pub async fn concurrent_appenders(store: Arc<dyn EventStore>) {
    let tasks = 16;
    let per_task = 40;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            let mut written = 0u32;
            let own = format!("own-{task}");
            for i in 0..per_task {
                let shared_version = store.stream_version(&stream("shared-1")).await.unwrap();
                let result = store
                    .append(append(
                        &format!("t{task}-{i}"),
                        &[
                            ("shared-1", ExpectedVersion::Exact(shared_version)),
                            (own.as_str(), ExpectedVersion::Exact(written as u64)),
                        ],
                        vec![
                            event("shared-1", format!("{task}/{i}").as_bytes()),
                            event(&own, b"o"),
                        ],
                    ))
                    .await;
                match result {
                    Ok(result) => {
                        written += 1;
                        assert_eq!(
                            result.stream_versions[0],
                            (stream("shared-1"), shared_version + 1)
                        );
                        assert_eq!(result.stream_versions[1], (stream(&own), written as u64));
                    }
                    Err(StoreError::WrongExpectedVersion {
                        stream_id, actual, ..
                    }) => {
                        assert_eq!(stream_id.as_str(), "shared-1");
                        assert!(actual > shared_version);
                        conflicts += 1;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (written, conflicts)
        }));
    }
    let mut written_total = 0u64;
    let mut conflicts_total = 0u64;
    for handle in handles {
        let (written, conflicts) = handle.await.unwrap();
        written_total += u64::from(written);
        conflicts_total += u64::from(conflicts);
    }
    assert_eq!(written_total + conflicts_total, (tasks * per_task) as u64);
    let shared = store
        .read_stream(&stream("shared-1"), 1, 100_000)
        .await
        .unwrap();
    assert_eq!(shared.len() as u64, written_total);
    assert!(shared
        .iter()
        .enumerate()
        .all(|(i, e)| e.stream_version == i as u64 + 1));
    let all = read_everything(store.as_ref()).await;
    assert_eq!(all.len() as u64, written_total * 2);
    // Each append's two events are adjacent: appends are atomic and never interleave.
    for pair in all.chunks(2) {
        assert_eq!(pair[0].command_id, pair[1].command_id);
    }
}

/// Every field of a batch's view equals the owned event's.
pub fn assert_view_is(view: &EventView<'_>, event: &RecordedEvent) {
    let at = event.position;
    assert_eq!(view.position(), event.position);
    assert_eq!(
        view.stream_id(),
        event.stream_id.as_str(),
        "stream id at {at}"
    );
    assert_eq!(
        view.stream_version(),
        event.stream_version,
        "version at {at}"
    );
    assert_eq!(view.event_id(), event.event_id, "event id at {at}");
    assert_eq!(view.event_type(), event.event_type.as_str(), "type at {at}");
    assert_eq!(
        view.schema_version(),
        event.schema_version,
        "schema at {at}"
    );
    assert_eq!(view.recorded_at(), event.recorded_at, "recorded_at at {at}");
    assert_eq!(
        view.command_id(),
        event.command_id.as_str(),
        "command at {at}"
    );
    assert_eq!(view.command_fingerprint(), event.command_fingerprint);
    assert_eq!(
        view.correlation_id(),
        event.correlation_id.as_ref().map(|id| id.as_str())
    );
    assert_eq!(
        view.causation_id(),
        event.causation_id.as_ref().map(|id| id.as_str())
    );
    assert_eq!(view.actor_service(), event.actor.service.as_str());
    assert_eq!(
        view.actor_on_behalf_of(),
        event.actor.on_behalf_of.as_ref().map(|id| id.as_str())
    );
    assert_eq!(view.payload(), &event.payload[..], "payload at {at}");
    assert_eq!(
        view.previous_hash(),
        event.previous_hash,
        "previous hash at {at}"
    );
    assert_eq!(view.hash(), event.hash, "hash at {at}");
    assert_eq!(&view.to_recorded(), event, "the whole event at {at}");
}

/// `read_all_batch(from, max)` holds a non-empty prefix of `read_all(from, max)` (the
/// whole of it unless the batch reached its byte bound), field for field, into a reused
/// batch.
pub async fn assert_batch_read_matches(
    store: &dyn EventStore,
    from_position: Position,
    max_count: usize,
    batch: &mut RecordBatch,
) {
    let owned = store.read_all(from_position, max_count).await.unwrap();
    store
        .read_all_batch(from_position, max_count, batch)
        .await
        .unwrap();
    assert_eq!(owned.is_empty(), batch.is_empty(), "from {from_position}");
    assert!(batch.len() <= owned.len());
    if batch.len() < owned.len() {
        assert!(
            batch.size_bytes() >= limits::READ_BATCH_BYTES_MAX,
            "a batch stops early only at its byte bound"
        );
    }
    for (view, event) in batch.iter().zip(&owned) {
        assert_view_is(&view, event);
    }
}

/// The batch read gives what `read_all` gives: from every position, with small and large
/// counts, and the whole log through one reused batch.
pub async fn batch_reads_match_read_all(store: Arc<dyn EventStore>) {
    for i in 0..40u64 {
        let correlated = i % 3 == 0;
        let mut request = append(
            &format!("batch-{i}"),
            &[],
            (0..1 + i % 4)
                .map(|e| {
                    event(
                        &format!("s-{}", (i + e) % 5),
                        &vec![i as u8; (i * 37 % 700) as usize],
                    )
                })
                .collect(),
        );
        if correlated {
            request.correlation_id = Some(store::CorrelationId::new(format!("corr-{i}")).unwrap());
            request.command_fingerprint = Some(u128::from(i) << 100);
        }
        store.append(request).await.unwrap();
    }
    let head = store.head().await.unwrap().position;
    let mut batch = RecordBatch::new();
    for from in 0..=head + 2 {
        for max_count in [1, 3, 1_000] {
            assert_batch_read_matches(&*store, from, max_count, &mut batch).await;
        }
    }
    let everything = read_everything(&*store).await;
    let mut next = 1;
    while next <= head {
        store.read_all_batch(next, 7, &mut batch).await.unwrap();
        assert!(!batch.is_empty(), "read_all_batch stopped before the head");
        for view in batch.iter() {
            assert_view_is(&view, &everything[view.position() as usize - 1]);
        }
        next = batch.last_position().unwrap() + 1;
    }
    assert_eq!(next, head + 1);
}

/// The batched subscription: catch-up, then live while appends go on concurrently, every
/// event exactly once, in order, as `read_all` has it.
pub async fn batch_subscriptions_catch_up_then_go_live(store: Arc<dyn EventStore>) {
    for i in 0..50 {
        store
            .append(append(
                &format!("before-{i}"),
                &[],
                vec![event("s-1", b"x")],
            ))
            .await
            .unwrap();
    }
    // Appends of one to three events, so a batch can end inside or at the end of one.
    // Every other append waits (on the head watch and the reader's progress) until the
    // reader from the start has delivered the whole log so far: the switch-over from
    // catch-up to live happens at every such append, not by luck of timing.
    let appends = 120u64;
    let (progress, reader_progress) = tokio::sync::watch::channel(0u64);
    let writer = {
        let store = store.clone();
        let mut reader_progress = reader_progress;
        tokio::spawn(async move {
            let head = store.watch_head();
            let mut written = 50u64;
            for i in 0..appends {
                if i % 2 == 1 {
                    let durable = *head.borrow();
                    reader_progress
                        .wait_for(|delivered| *delivered >= durable)
                        .await
                        .unwrap();
                }
                let count = 1 + i % 3;
                let events = (0..count).map(|_| event("s-2", b"y")).collect();
                store
                    .append(append(&format!("during-{i}"), &[], events))
                    .await
                    .unwrap();
                written += count;
            }
            written
        })
    };
    let total = 50 + (0..appends).map(|i| 1 + i % 3).sum::<u64>();
    let mut from_start = store::subscribe_batches(store.clone(), 1);
    let mut from_middle = store::subscribe_batches(store.clone(), 40);
    let mut seen_from_start = Vec::new();
    let mut seen_from_middle = Vec::new();
    // Both read while the writer writes: each starts on events already in the log and
    // goes on with ones appended after it caught up.
    while from_start.next_position() <= total || from_middle.next_position() <= total {
        if from_start.next_position() <= total {
            let batch = from_start.next_batch().await.unwrap();
            seen_from_start.extend(batch.iter().map(|view| view.position()));
            // Published before the other reader may wait for the next append.
            progress.send_replace(from_start.next_position() - 1);
        }
        if from_middle.next_position() <= total {
            let batch = from_middle.next_batch().await.unwrap();
            seen_from_middle.extend(batch.iter().map(|view| view.position()));
        }
    }
    assert_eq!(writer.await.unwrap(), total);
    assert_eq!(seen_from_start, (1..=total).collect::<Vec<_>>());
    assert_eq!(seen_from_middle, (40..=total).collect::<Vec<_>>());
    // Caught up: the next batch is the next append, nothing more, nothing less, and it is
    // the event `read_all` has.
    let next = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(append(
                    "after",
                    &[],
                    vec![event("s-3", b"z"), event("s-3", b"zz")],
                ))
                .await
                .unwrap()
        })
    };
    let batch = from_start.next_batch().await.unwrap();
    assert_eq!(
        batch.iter().map(|view| view.position()).collect::<Vec<_>>(),
        vec![total + 1, total + 2]
    );
    let owned = store.read_all(total + 1, 10).await.unwrap();
    for (view, event) in batch.iter().zip(&owned) {
        assert_view_is(&view, event);
    }
    next.await.unwrap();
}
