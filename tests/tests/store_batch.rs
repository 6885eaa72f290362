//! The batch read (`EventStore::read_all_batch`) against `read_all`, field for field, over
//! random logs that span several segments and survive reopens: the embedded store's
//! in-place path, and the trait's default (copying) path through a wrapper that keeps
//! only `read_all`.

use std::sync::Arc;

use ledger::store::{
    self, codec, Actor, AppendRequest, CausationId, CorrelationId, EmbeddedOptions, EmbeddedStore,
    EventStore, EventType, Head, OnBehalfOf, PendingAppend, Position, ProposedEvent, RecordBatch,
    RecordedEvent, ServiceName, StoreError, StreamId, StreamVersion,
};
use proptest::prelude::*;
use stemma_tests::{command, conformance, stream};
use tokio::sync::watch;

/// A backend that has only `read_all`: `read_all_batch` is the trait's default.
struct ReadAllOnly(Arc<EmbeddedStore>, Reads);

/// How much one `read_all` call of a `ReadAllOnly` returns.
#[derive(Clone, Copy, PartialEq)]
enum Reads {
    /// What the embedded store returns (it stops after ~2 MiB of records).
    AsStored,
    /// Everything asked for, as a backend without a byte bound of its own would: only the
    /// trait's default `read_all_batch` then bounds a batch's bytes.
    Whole,
}

#[async_trait::async_trait]
impl EventStore for ReadAllOnly {
    async fn submit(&self, request: AppendRequest) -> Result<PendingAppend, StoreError> {
        self.0.submit(request).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: StreamVersion,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_stream(stream_id, from_version, max_count).await
    }

    async fn read_all(
        &self,
        from_position: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.0.read_all(from_position, max_count).await?;
        while self.1 == Reads::Whole && events.len() < max_count {
            let next = events
                .last()
                .map_or(from_position, |event| event.position + 1);
            let more = self.0.read_all(next, max_count - events.len()).await?;
            if more.is_empty() {
                break;
            }
            events.extend(more);
        }
        Ok(events)
    }

    async fn stream_version(&self, stream_id: &StreamId) -> Result<StreamVersion, StoreError> {
        self.0.stream_version(stream_id).await
    }

    async fn head(&self) -> Result<Head, StoreError> {
        self.0.head().await
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.0.watch_head()
    }
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: 16 * 1024,
        ..EmbeddedOptions::default()
    }
}

#[derive(Clone, Debug)]
struct Event {
    stream: u8,
    event_type: u8,
    schema_version: u16,
    payload_bytes: usize,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        events: Vec<Event>,
        correlated: bool,
        caused: bool,
        on_behalf_of: bool,
        fingerprint: Option<u128>,
    },
    Compare {
        from_position: u64,
        max_count: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let event = (0u8..6, 0u8..3, 1u16..5, 0usize..2_000).prop_map(
        |(stream, event_type, schema_version, payload_bytes)| Event {
            stream,
            event_type,
            schema_version,
            payload_bytes,
        },
    );
    prop_oneof![
        6 => (proptest::collection::vec(event, 1..6), any::<bool>(), any::<bool>(), any::<bool>(), proptest::option::of(any::<u128>()))
            .prop_map(|(events, correlated, caused, on_behalf_of, fingerprint)| Op::Append { events, correlated, caused, on_behalf_of, fingerprint }),
        3 => (0u64..80, 1usize..40).prop_map(|(from_position, max_count)| Op::Compare { from_position, max_count }),
        1 => Just(Op::Reopen),
    ]
}

fn request(index: usize, op: &Op) -> Option<AppendRequest> {
    let Op::Append {
        events,
        correlated,
        caused,
        on_behalf_of,
        fingerprint,
    } = op
    else {
        return None;
    };
    Some(AppendRequest {
        command_id: command(&format!("cmd-{index}")),
        command_fingerprint: *fingerprint,
        correlation_id: correlated.then(|| CorrelationId::new(format!("corr-{index}")).unwrap()),
        causation_id: caused.then(|| CausationId::new("because").unwrap()),
        actor: Actor {
            service: ServiceName::new("svc.batch").unwrap(),
            on_behalf_of: on_behalf_of.then(|| OnBehalfOf::new("member-7").unwrap()),
        },
        expectations: Vec::new(),
        events: events
            .iter()
            .enumerate()
            .map(|(i, event)| ProposedEvent {
                stream_id: stream(&format!("s-{}", event.stream)),
                event_type: EventType::new(format!("Type{}", event.event_type)).unwrap(),
                schema_version: event.schema_version,
                payload: (0..event.payload_bytes)
                    .map(|b| (b + i + index) as u8)
                    .collect(),
            })
            .collect(),
    })
}

/// Both read paths, from `from_position` with `max_count`, into the same reused batches.
async fn compare(
    embedded: &Arc<EmbeddedStore>,
    batches: &mut [RecordBatch; 2],
    from_position: Position,
    max_count: usize,
) {
    let default_path = ReadAllOnly(embedded.clone(), Reads::AsStored);
    conformance::assert_batch_read_matches(&**embedded, from_position, max_count, &mut batches[0])
        .await;
    conformance::assert_batch_read_matches(
        &default_path,
        from_position,
        max_count,
        &mut batches[1],
    )
    .await;
    // The embedded store's batch holds exactly what `read_all` returned.
    let owned = embedded.read_all(from_position, max_count).await.unwrap();
    assert_eq!(batches[0].len(), owned.len());
}

async fn run(ops: Vec<Op>) {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), options())
        .await
        .unwrap();
    let mut store = Arc::new(store);
    let mut batches = [RecordBatch::new(), RecordBatch::new()];
    // Enough bytes first that every log spans several segments, whatever the ops.
    let filler = Op::Append {
        events: vec![
            Event {
                stream: 9,
                event_type: 9,
                schema_version: 1,
                payload_bytes: 1_900,
            };
            5
        ],
        correlated: true,
        caused: false,
        on_behalf_of: true,
        fingerprint: None,
    };
    let ops: Vec<Op> = std::iter::repeat_n(filler, 4).chain(ops).collect();
    for (index, op) in ops.iter().enumerate() {
        match op {
            Op::Append { .. } => {
                store.append(request(index, op).unwrap()).await.unwrap();
            }
            Op::Compare {
                from_position,
                max_count,
            } => compare(&store, &mut batches, *from_position, *max_count).await,
            Op::Reopen => {
                store.close().await;
                drop(store);
                let (reopened, report) = EmbeddedStore::open(directory.path(), options())
                    .await
                    .unwrap();
                assert_eq!(report.torn_tail, None);
                store = Arc::new(reopened);
            }
        }
    }
    // The whole log, both ways, in steps of every size up to a few events.
    let everything = conformance::read_everything(&*store).await;
    let head = everything.len() as Position;
    for step in [1, 2, 5, 4_096] {
        for backend in [
            store.clone() as Arc<dyn EventStore>,
            Arc::new(ReadAllOnly(store.clone(), Reads::AsStored)),
        ] {
            let mut batch = RecordBatch::new();
            let mut next = 1;
            while next <= head {
                backend
                    .read_all_batch(next, step, &mut batch)
                    .await
                    .unwrap();
                for view in batch.iter() {
                    conformance::assert_view_is(&view, &everything[view.position() as usize - 1]);
                }
                next = batch.last_position().expect("not past the head") + 1;
            }
            backend
                .read_all_batch(head + 1, step, &mut batch)
                .await
                .unwrap();
            assert!(batch.is_empty());
        }
    }
    store.close().await;
    drop(store);
    let (_, report) = EmbeddedStore::open(directory.path(), options())
        .await
        .unwrap();
    assert!(report.segments >= 3, "{report:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_batch_read_is_read_all(ops in proptest::collection::vec(op(), 1..50)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(run(ops));
    }
}

/// A store holding five events of 700 KiB each (a batch's byte bound is 2 MiB), and
/// their payload.
async fn five_large_events(directory: &std::path::Path) -> (Arc<EmbeddedStore>, Vec<u8>) {
    let (store, _) = EmbeddedStore::open(directory, EmbeddedOptions::default())
        .await
        .unwrap();
    let payload = vec![0xab; 700 * 1024];
    for i in 0..5 {
        store
            .append(stemma_tests::append(
                &format!("big-{i}"),
                &[],
                vec![stemma_tests::event("s-1", &payload)],
            ))
            .await
            .unwrap();
    }
    (Arc::new(store), payload)
}

/// A batch of large events stops at its byte bound, holding whole events, and the rest
/// follows in the next batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stops_at_its_byte_bound() {
    let directory = tempfile::tempdir().unwrap();
    let (store, payload) = five_large_events(directory.path()).await;
    for backend in [
        store.clone() as Arc<dyn EventStore>,
        Arc::new(ReadAllOnly(store.clone(), Reads::AsStored)),
    ] {
        let mut batch = RecordBatch::new();
        let mut next = 1;
        let mut batches = 0;
        while next <= 5 {
            backend.read_all_batch(next, 100, &mut batch).await.unwrap();
            assert!(batch.len() < 5, "{batch:?}");
            assert!(
                batch.size_bytes() < store::limits::READ_BATCH_BYTES_MAX + 800 * 1024,
                "{batch:?}"
            );
            assert!(batch.iter().all(|view| view.payload() == &payload[..]));
            next = batch.last_position().unwrap() + 1;
            batches += 1;
        }
        assert!(batches >= 2);
    }
    store.close().await;
}

/// The trait's default batch read stops at its byte bound by itself, when `read_all`
/// hands it more than that: five events of 700 KiB arrive whole from `read_all`, and the
/// batch keeps the first three (the third crosses 2 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_batch_read_bounds_its_bytes_itself() {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = five_large_events(directory.path()).await;
    let whole = ReadAllOnly(store.clone(), Reads::Whole);
    assert_eq!(whole.read_all(1, 100).await.unwrap().len(), 5);
    let mut batch = RecordBatch::new();
    whole.read_all_batch(1, 100, &mut batch).await.unwrap();
    assert_eq!(batch.len(), 3, "{batch:?}");
    assert!(batch.size_bytes() >= store::limits::READ_BATCH_BYTES_MAX);
    whole.read_all_batch(4, 100, &mut batch).await.unwrap();
    assert_eq!(batch.first_position(), Some(4));
    assert_eq!(batch.len(), 2);
    store.close().await;
}

/// `[start, end)` of every record in a segment file (after its 64-byte header).
fn frames(segment: &std::path::Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = 64;
    let mut out = Vec::new();
    while let codec::Frame::Valid { frame_bytes, .. } = codec::parse_frame(&bytes[at..], usize::MAX)
    {
        out.push((at, at + frame_bytes));
        at += frame_bytes;
    }
    out
}

/// What `read_all` says of a log damaged under a running store, the batch read says too:
/// the same error, segment, offset, position and finding, and an empty batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_under_a_running_store_fails_the_batch_read_as_it_fails_read_all() {
    use std::os::unix::fs::FileExt;

    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    let store = Arc::new(store);
    for i in 0..10 {
        store
            .append(stemma_tests::append(
                &format!("c{i}"),
                &[],
                vec![stemma_tests::event("s-1", &[i as u8; 100])],
            ))
            .await
            .unwrap();
    }
    let segment = std::fs::read_dir(directory.path().join("segments"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let records = frames(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    // A flipped payload byte in record 4 (a bad checksum), then record 7 zeroed.
    let damages: [(usize, Vec<u8>, Position); 2] = [
        (records[3].1 - 40, vec![0xff], 4),
        (records[6].0, vec![0; records[6].1 - records[6].0], 7),
    ];
    let mut batch = RecordBatch::new();
    for (offset, bytes, damaged) in damages {
        file.write_all_at(&bytes, offset as u64).unwrap();
        for from in [damaged - 2, damaged] {
            let owned = store.read_all(from, 100).await.unwrap_err();
            // A batch with something in it first, to see that a failed read leaves it empty.
            store.read_all_batch(1, 1, &mut batch).await.unwrap();
            let batched = store
                .read_all_batch(from, 100, &mut batch)
                .await
                .unwrap_err();
            assert!(batch.is_empty());
            match (&owned, &batched) {
                (
                    StoreError::Corrupt {
                        segment: owned_segment,
                        offset: owned_offset,
                        position: owned_position,
                        kind: owned_kind,
                    },
                    StoreError::Corrupt {
                        segment,
                        offset,
                        position,
                        kind,
                    },
                ) => {
                    assert_eq!(
                        (segment, offset, position, kind),
                        (owned_segment, owned_offset, owned_position, owned_kind)
                    );
                    assert_eq!(*position, damaged);
                }
                other => panic!("{other:?}"),
            }
        }
        // Before any damage, both still read.
        conformance::assert_batch_read_matches(&*store, 1, 3, &mut batch).await;
    }
    store.close().await;
}
