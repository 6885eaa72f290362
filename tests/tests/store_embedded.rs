//! What only the embedded backend does: the directory lock, reopening, segment sizes.

use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore, ExpectedVersion, StoreError};
use stemma_tests::{append, conformance, event};

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: 8 * 1024,
        ..EmbeddedOptions::default()
    }
}

#[tokio::test]
async fn a_second_open_of_one_directory_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    let Err(error) = EmbeddedStore::open(directory.path(), small_segments()).await else {
        panic!("a second open succeeded");
    };
    assert!(
        matches!(error, StoreError::Locked(ref path) if path == directory.path()),
        "{error}"
    );
    assert!(error.to_string().contains("in use by another process"));
    store.close().await;
    drop(store);
    EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
}

#[tokio::test]
async fn idempotency_and_versions_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let request = append(
        "c-1",
        &[("s-1", ExpectedVersion::NoStream)],
        vec![event("s-1", b"x"), event("s-2", b"y")],
    );
    let original = {
        let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
            .await
            .unwrap();
        let original = store.append(request.clone()).await.unwrap();
        store.close().await;
        original
    };
    let (store, report) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    assert_eq!(report.head.position, 2);
    assert_eq!(report.streams, 2);
    assert_eq!(store.append(request.clone()).await.unwrap(), original);
    let mut changed = request;
    changed.events[0].payload = b"other".to_vec();
    assert!(matches!(
        store.append(changed).await.unwrap_err(),
        StoreError::CommandIdReused {
            original_position: 1,
            ..
        }
    ));
    let conflict = store
        .append(append(
            "c-2",
            &[("s-1", ExpectedVersion::NoStream)],
            vec![event("s-1", b"z")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        conflict,
        StoreError::WrongExpectedVersion { actual: 1, .. }
    ));
    assert_eq!(store.head().await.unwrap().position, 2);
}

#[tokio::test]
async fn an_append_larger_than_a_segment_is_refused_and_writes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    let error = store
        .append(append("big", &[], vec![event("s-1", &[7u8; 9 * 1024])]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::TooLarge { field: "events", limit_bytes, .. } if limit_bytes == 8 * 1024 - 64),
        "{error}"
    );
    // The same command id is free for an append that fits.
    store
        .append(append("big", &[], vec![event("s-1", &[7u8; 1024])]))
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap().position, 1);
}

#[tokio::test]
async fn appends_after_close_fail_as_closed() {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    store
        .append(append("c-1", &[], vec![event("s-1", b"x")]))
        .await
        .unwrap();
    store.close().await;
    let error = store
        .append(append("c-2", &[], vec![event("s-1", b"x")]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Closed), "{error}");
    // Reads of what is durable still work.
    assert_eq!(store.read_all(1, 10).await.unwrap().len(), 1);
}

/// A durable commit's answers go out from a task on the store's runtime, handed over
/// after the commit is indexed and `HEAD` names it: whoever holds an answer sees its
/// events in the index, the head and `HEAD`. `close` returns once every append queued
/// before it is answered. (Here the answering task usually wins that race anyway; the unit
/// test `close_is_confirmed_after_the_answers_handed_before_it` in `answer.rs` holds the
/// task back, and fails if `close` is confirmed any other way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_publication_and_precede_close() {
    use futures::FutureExt;
    use ledger::store::embedded::head;

    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    let store = std::sync::Arc::new(store);
    let appenders: Vec<_> = (0..32)
        .map(|task| {
            let (store, directory) = (store.clone(), directory.path().to_path_buf());
            tokio::spawn(async move {
                for i in 0..20 {
                    let request = append(
                        &format!("c-{task}-{i}"),
                        &[],
                        vec![event(&format!("s-{task}"), b"payload")],
                    );
                    let result = store.append(request).await.unwrap();
                    let last = result.last_position;
                    assert!(store.head().await.unwrap().position >= last);
                    assert!(*store.watch_head().borrow() >= last);
                    assert!(head::read(&directory).unwrap() >= last);
                    let events = store.read_all(result.first_position, 1).await.unwrap();
                    assert_eq!(events[0].command_id.as_str(), format!("c-{task}-{i}"));
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    let mut pending = Vec::new();
    for i in 0..64 {
        let request = append(&format!("last-{i}"), &[], vec![event("s-last", b"x")]);
        pending.push(store.submit(request).await.unwrap());
    }
    store.close().await;
    for (i, pending) in pending.into_iter().enumerate() {
        let answered = pending
            .now_or_never()
            .expect("answered before close returned");
        assert_eq!(answered.unwrap().first_position, 32 * 20 + 1 + i as u64);
    }
}

/// Opened on a runtime that is gone by the time it appends, the store answers from its
/// own threads.
#[test]
fn a_store_outliving_the_runtime_it_was_opened_on_still_answers() {
    let directory = tempfile::tempdir().unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let (store, _) = first
        .block_on(EmbeddedStore::open(directory.path(), small_segments()))
        .unwrap();
    first
        .block_on(store.append(append("c-1", &[], vec![event("s-1", b"x")])))
        .unwrap();
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let result = store
            .append(append("c-2", &[], vec![event("s-1", b"y")]))
            .await
            .unwrap();
        assert_eq!(result.first_position, 2);
        store.close().await;
    });
}

#[tokio::test]
async fn segments_keep_their_size_when_the_option_changes() {
    let directory = tempfile::tempdir().unwrap();
    {
        let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
            .await
            .unwrap();
        for i in 0..20 {
            store
                .append(append(
                    &format!("a{i}"),
                    &[],
                    vec![event("s-1", &[1u8; 700])],
                ))
                .await
                .unwrap();
        }
        store.close().await;
    }
    let larger = EmbeddedOptions {
        segment_size_bytes: 64 * 1024,
        ..EmbeddedOptions::default()
    };
    let (store, report) = EmbeddedStore::open(directory.path(), larger.clone())
        .await
        .unwrap();
    assert!(report.segments >= 2, "{report:?}");
    for i in 0..100 {
        store
            .append(append(
                &format!("b{i}"),
                &[],
                vec![event("s-1", &[2u8; 700])],
            ))
            .await
            .unwrap();
    }
    store.close().await;
    drop(store);
    let (store, report) = EmbeddedStore::open(directory.path(), larger).await.unwrap();
    assert_eq!(report.head.position, 120);
    let events = conformance::read_everything(&store).await;
    assert!(events[..20].iter().all(|e| e.payload == vec![1u8; 700]));
    assert!(events[20..].iter().all(|e| e.payload == vec![2u8; 700]));
}

/// The writer pads each write with zeroes to the end of its page, but never past the end
/// of a segment whose size is not a whole number of pages (whose spare is zero-filled
/// through the page cache): the log reads back whole, across rolls and a reopen.
#[tokio::test]
async fn segments_of_a_size_that_is_no_whole_number_of_pages_fill_and_roll() {
    let directory = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        segment_size_bytes: 2 * 4096 + 100,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options.clone())
        .await
        .unwrap();
    for i in 0..60u8 {
        let result = store
            .append(append(&format!("c{i}"), &[], vec![event("s-1", &[i; 700])]))
            .await
            .unwrap();
        assert_eq!(result.first_position, u64::from(i) + 1);
    }
    store.close().await;
    drop(store);
    let (store, report) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    assert_eq!(report.head.position, 60);
    assert!(report.segments >= 6, "{report:?}");
    assert!(report.torn_tail.is_none());
    let events = conformance::read_everything(&store).await;
    assert!(events
        .iter()
        .enumerate()
        .all(|(i, e)| e.payload == vec![i as u8; 700]));
    for entry in std::fs::read_dir(directory.path().join("segments")).unwrap() {
        assert_eq!(entry.unwrap().metadata().unwrap().len(), 2 * 4096 + 100);
    }
}

/// Fails the `fdatasync` of the commit after `healthy_syncs` good ones.
struct FailingSync {
    healthy_syncs: std::sync::atomic::AtomicU32,
    /// The thread each failed `fdatasync` was on.
    failed_on: std::sync::Mutex<Vec<String>>,
}

impl FailingSync {
    fn after(healthy_syncs: u32) -> FailingSync {
        FailingSync {
            healthy_syncs: healthy_syncs.into(),
            failed_on: std::sync::Mutex::new(Vec::new()),
        }
    }
}

/// The name of the thread an I/O operation runs on: the builder (`stemma-writer`) or the
/// syncer (`stemma-syncer`).
fn this_thread() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

impl ledger::store::embedded::IoFaults for FailingSync {
    fn before(&self, operation: ledger::store::embedded::IoOperation) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if operation != ledger::store::embedded::IoOperation::Sync {
            return Ok(());
        }
        match self
            .healthy_syncs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) => Ok(()),
            Err(_) => {
                self.failed_on.lock().unwrap().push(this_thread());
                Err(std::io::Error::other("injected fdatasync failure"))
            }
        }
    }
}

#[tokio::test]
async fn a_failed_fdatasync_fails_the_store_until_it_is_reopened() {
    let directory = tempfile::tempdir().unwrap();
    let faults = std::sync::Arc::new(FailingSync::after(3));
    let options = EmbeddedOptions {
        faults: Some(faults.clone()),
        ..small_segments()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    for i in 0..3 {
        store
            .append(append(&format!("ok-{i}"), &[], vec![event("s-1", b"x")]))
            .await
            .unwrap();
    }
    let error = store
        .append(append("failed", &[], vec![event("s-1", b"y")]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Unavailable(ref why) if why.contains("injected fdatasync failure")),
        "{error}"
    );
    // One append at a time: the builder wrote the failed commit itself.
    assert_eq!(*faults.failed_on.lock().unwrap(), ["stemma-writer"]);
    // The outcome of the failed commit is unknown, so nothing after it is accepted.
    let error = store
        .append(append("after", &[], vec![event("s-1", b"z")]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    assert_eq!(
        store.head().await.unwrap().position,
        3,
        "readers never see the unsynced commit"
    );
    assert_eq!(store.read_all(1, 10).await.unwrap().len(), 3);
    store.close().await;
    drop(store);
    // Reopening re-reads the disk: the three acknowledged appends are there; the failed one
    // may be (its bytes reached the file), and a retry with its command id is answered
    // either way without writing twice.
    let (store, report) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    assert!(report.head.position >= 3);
    let retried = store
        .append(append("failed", &[], vec![event("s-1", b"y")]))
        .await
        .unwrap();
    assert_eq!(retried.first_position, 4);
    assert_eq!(store.head().await.unwrap().position, 4);
    conformance::read_everything(&store).await;
}

/// Holds the next `fdatasync` once armed: says when the syncer reached it and keeps it
/// there until released, so a test can act while a commit is certainly in flight.
#[derive(Default)]
struct SyncGate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    entered: bool,
    released: bool,
    /// The thread of every `fdatasync` so far, in order.
    synced_on: Vec<String>,
}

impl SyncGate {
    fn arm(&self) {
        let mut state = self.state.lock().unwrap();
        state.armed = true;
        state.entered = false;
        state.released = false;
    }

    /// Blocks until the syncer is held at the gate.
    fn wait_entered(&self) {
        let state = self.state.lock().unwrap();
        drop(self.changed.wait_while(state, |s| !s.entered).unwrap());
    }

    fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }

    fn synced_on(&self) -> Vec<String> {
        self.state.lock().unwrap().synced_on.clone()
    }
}

impl ledger::store::embedded::IoFaults for SyncGate {
    fn before(&self, operation: ledger::store::embedded::IoOperation) -> std::io::Result<()> {
        if operation == ledger::store::embedded::IoOperation::Sync {
            let mut state = self.state.lock().unwrap();
            state.synced_on.push(this_thread());
            if state.armed {
                state.armed = false;
                state.entered = true;
                self.changed.notify_all();
                drop(self.changed.wait_while(state, |s| !s.released).unwrap());
            }
        }
        Ok(())
    }
}

/// Appends submitted while a commit is in flight are decided against it: retries of its
/// command ids wait and are answered with its result, retries of the commit being built
/// join it, nothing is written twice and versions stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_a_commit_in_flight_are_answered_once_it_is_durable() {
    let directory = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(SyncGate::default());
    let options = EmbeddedOptions {
        faults: Some(gate.clone()),
        // With room for one append in the queue, a `submit` returns only once the builder
        // has taken (and so decided) the append before it. The builder takes appends
        // while a commit is in flight unless the one it builds is full or must start a
        // new segment: the default limits and segment size keep every round far from both.
        append_queue_depth_max: 1,
        // The builder keeps taking appends during every sync (it never writes a commit
        // itself, which would hold it at the gate).
        sync_on_builder_when_quiet: false,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    for round in 0..40 {
        gate.arm();
        // Alone in the queue: the commit the gate holds is exactly this append.
        let first = store.submit(retried_request(round, 0)).await.unwrap();
        let held = gate.clone();
        tokio::task::spawn_blocking(move || held.wait_entered())
            .await
            .unwrap();
        let mut pending = vec![first];
        for i in 1..16 {
            pending.push(store.submit(retried_request(round, i)).await.unwrap());
        }
        let mut retries = Vec::new();
        for i in 0..16 {
            retries.push(store.submit(retried_request(round, i)).await.unwrap());
        }
        // Once this is queued the builder has decided every retry, all while the commit
        // the gate holds was not durable yet.
        let marker = append(&format!("m-{round}"), &[], vec![event("marker", b"m")]);
        let marker = store.submit(marker).await.unwrap();
        gate.release();
        for (p, retry) in pending.into_iter().zip(retries) {
            assert_eq!(p.await.unwrap(), retry.await.unwrap());
        }
        marker.await.unwrap();
    }
    assert_eq!(store.head().await.unwrap().position, 40 * 17);
    assert_versions_gap_free(&store, 160).await;
}

/// The appends of `retries_of_…`: 16 a round over 4 streams.
fn retried_request(round: usize, i: usize) -> ledger::store::AppendRequest {
    append(
        &format!("c-{round}-{i}"),
        &[],
        vec![event(&format!("s-{}", i % 4), &[round as u8; 100])],
    )
}

async fn assert_versions_gap_free(store: &EmbeddedStore, per_stream: u64) {
    let events = conformance::read_everything(store).await;
    for stream in 0..4 {
        let versions: Vec<u64> = events
            .iter()
            .filter(|e| e.stream_id.as_str() == format!("s-{stream}"))
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(versions, (1..=per_stream).collect::<Vec<u64>>());
    }
}

/// Appends and their retries queued back to back, across many segment rolls: however they
/// fall into commits (in flight, being built, durable), each retry gets the original
/// result and the log survives a reopen whole.
#[tokio::test]
async fn retries_across_segment_rolls_are_answered_once() {
    let directory = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    for round in 0..40 {
        let mut pending = Vec::new();
        for i in 0..16 {
            pending.push(store.submit(retried_request(round, i)).await.unwrap());
        }
        let mut retries = Vec::new();
        for i in 0..16 {
            retries.push(store.submit(retried_request(round, i)).await.unwrap());
        }
        for (p, retry) in pending.into_iter().zip(retries) {
            assert_eq!(p.await.unwrap(), retry.await.unwrap());
        }
    }
    assert_eq!(store.head().await.unwrap().position, 40 * 16);
    assert_versions_gap_free(&store, 160).await;
    store.close().await;
    drop(store);
    let (_store, report) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    assert_eq!(report.head.position, 40 * 16);
    assert!(report.segments > 10, "segments rolled: {}", report.segments);
}

/// A failed commit fails every append decided after it too, although the builder had
/// already decided (and maybe refused) them against the failed commit.
#[tokio::test]
async fn a_failed_fdatasync_fails_the_appends_built_on_the_commit_in_flight() {
    let directory = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        faults: Some(std::sync::Arc::new(FailingSync::after(0))),
        ..small_segments()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..32 {
        // Every other append expects a stream the one before it creates.
        let expectations = [("s-1", ExpectedVersion::NoStream)];
        let expectations: &[_] = if i % 2 == 0 { &[] } else { &expectations };
        let request = append(&format!("c-{i}"), expectations, vec![event("s-1", b"x")]);
        // Once the failure is recorded, `submit` itself refuses.
        pending.push(store.submit(request).await);
    }
    for p in pending {
        let error = match p {
            Ok(p) => p.await.unwrap_err(),
            Err(error) => error,
        };
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    }
    assert_eq!(store.head().await.unwrap().position, 0);
    store.close().await;
}

/// Lets `fdatasync`s through one at a time, on request, and says how many reached it:
/// a test can hold two commits in a row.
#[derive(Default)]
struct SyncTurnstile {
    state: std::sync::Mutex<Turns>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct Turns {
    arrived: usize,
    passes: usize,
}

impl SyncTurnstile {
    /// Blocks until `count` syncs in all have reached the turnstile.
    fn wait_arrived(&self, count: usize) {
        let state = self.state.lock().unwrap();
        drop(
            self.changed
                .wait_while(state, |s| s.arrived < count)
                .unwrap(),
        );
    }

    fn pass(&self, count: usize) {
        self.state.lock().unwrap().passes += count;
        self.changed.notify_all();
    }
}

impl ledger::store::embedded::IoFaults for SyncTurnstile {
    fn before(&self, operation: ledger::store::embedded::IoOperation) -> std::io::Result<()> {
        if operation == ledger::store::embedded::IoOperation::Sync {
            let mut state = self.state.lock().unwrap();
            state.arrived += 1;
            self.changed.notify_all();
            let mut state = self.changed.wait_while(state, |s| s.passes == 0).unwrap();
            state.passes -= 1;
        }
        Ok(())
    }
}

/// The append queue holds `append_queue_depth_max` appends the builder has not taken:
/// with the builder unable to take more (its commit full, the one before held at its
/// sync), a `submit` beyond the bound waits until the builder takes from the queue again,
/// and then everything is committed in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_append_queue_holds_submit_back_until_the_builder_takes_again() {
    use futures::FutureExt;

    let directory = tempfile::tempdir().unwrap();
    let turnstile = std::sync::Arc::new(SyncTurnstile::default());
    let options = EmbeddedOptions {
        faults: Some(turnstile.clone()),
        append_queue_depth_max: 1,
        commit_appends_max: 1,
        sync_on_builder_when_quiet: false,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    let request = |i: usize| append(&format!("q-{i}"), &[], vec![event("s-1", b"q")]);
    let first = store.submit(request(1)).await.unwrap();
    let arrived = turnstile.clone();
    tokio::task::spawn_blocking(move || arrived.wait_arrived(1))
        .await
        .unwrap();
    // Commit 1 is held at its sync. The second append fills commit 2; the third can only
    // wait in the queue, which it fills.
    let second = store.submit(request(2)).await.unwrap();
    let third = store.submit(request(3)).await.unwrap();
    assert!(
        store.submit(request(4)).now_or_never().is_none(),
        "the queue is full"
    );
    turnstile.pass(usize::MAX / 2);
    let fourth = store.submit(request(4)).await.unwrap();
    let positions: Vec<u64> = futures::future::join_all([first, second, third, fourth])
        .await
        .into_iter()
        .map(|r| r.unwrap().first_position)
        .collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    store.close().await;
}

/// Both ways a durable commit is published: handed back so that the many appends waiting
/// go first (commit 1 here), or published by the syncer when only a few wait, which the
/// builder then keeps for the answered appenders to rejoin (commit 2). Either way nothing is
/// visible before the commit's `fdatasync` returned, the few that waited follow in order,
/// and a retry of one of its commands, queued while it was in flight, gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_few_appends_waiting_is_published_after_its_sync_and_they_follow() {
    let directory = tempfile::tempdir().unwrap();
    let turnstile = std::sync::Arc::new(SyncTurnstile::default());
    let options = EmbeddedOptions {
        faults: Some(turnstile.clone()),
        // A `submit` returns once the builder has taken the append before it.
        append_queue_depth_max: 1,
        // What this test holds is the syncer's way; the builder's own is tested apart.
        sync_on_builder_when_quiet: false,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    let wait_arrived = |count| {
        let turnstile = turnstile.clone();
        tokio::task::spawn_blocking(move || turnstile.wait_arrived(count))
    };
    // Commit 1 is the first append alone; the 16 after it wait for it and then, many
    // enough, are handed over before it is published: commit 2.
    let first = store.submit(retried_request(0, 0)).await.unwrap();
    wait_arrived(1).await.unwrap();
    let mut held = Vec::new();
    for i in 1..17 {
        held.push(store.submit(retried_request(0, i)).await.unwrap());
    }
    let marker = append("m-0", &[], vec![event("marker", b"m")]);
    held.push(store.submit(marker).await.unwrap());
    turnstile.pass(1);
    assert_eq!(first.await.unwrap().first_position, 1);
    wait_arrived(2).await.unwrap();
    // Commit 2 (17 appends) is at its sync: two new appends and a retry of one of its
    // commands are few next to it.
    let retry = store.submit(retried_request(0, 5)).await.unwrap();
    let mut after = Vec::new();
    for i in 17..19 {
        after.push(store.submit(retried_request(0, i)).await.unwrap());
    }
    assert_eq!(
        store.head().await.unwrap().position,
        1,
        "nothing of commit 2 yet"
    );
    assert!(store.read_all(2, 100).await.unwrap().is_empty());
    turnstile.pass(usize::MAX / 2);
    let held_results: Vec<_> = futures::future::join_all(held).await;
    let positions: Vec<u64> = held_results
        .iter()
        .map(|r| r.as_ref().unwrap().first_position)
        .collect();
    assert_eq!(positions, (2..19).collect::<Vec<u64>>());
    assert_eq!(retry.await.unwrap(), *held_results[4].as_ref().unwrap());
    for (i, pending) in after.into_iter().enumerate() {
        assert_eq!(pending.await.unwrap().first_position, 19 + i as u64);
    }
    assert_eq!(store.head().await.unwrap().position, 20);
    store.close().await;
}

/// One append at a time, the appenders wait for their answers: the builder writes and
/// syncs each commit itself (after the first, which shows that nothing arrives during a
/// sync). Held at that `fdatasync`, nothing of the commit is visible or answered, and
/// nothing is decided: appends that arrive wait, are decided against the durable commit
/// once it is indexed (a retry gets its result, a stale expectation is refused), and,
/// since they arrived during a sync, go to the syncer; once a sync sees no arrival, the
/// builder writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_syncs_a_lone_commit_itself_and_publishes_it_only_once_durable() {
    use futures::FutureExt;
    use ledger::store::embedded::head;

    let directory = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(SyncGate::default());
    let options = EmbeddedOptions {
        faults: Some(gate.clone()),
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    let lone = |id: &str, expectations: &[(&str, ExpectedVersion)], payload: &[u8]| {
        append(id, expectations, vec![event("s-1", payload)])
    };
    for i in 0..3 {
        let result = store
            .append(lone(&format!("c-{i}"), &[], b"x"))
            .await
            .unwrap();
        assert_eq!(result.first_position, i + 1);
    }
    assert_eq!(
        gate.synced_on(),
        ["stemma-syncer", "stemma-writer", "stemma-writer"]
    );

    gate.arm();
    let mut held = store.submit(lone("held", &[], b"h")).await.unwrap();
    let entered = gate.clone();
    tokio::task::spawn_blocking(move || entered.wait_entered())
        .await
        .unwrap();
    assert_eq!(gate.synced_on().last().unwrap(), "stemma-writer");
    let retry = store.submit(lone("held", &[], b"h")).await.unwrap();
    let stale = store
        .submit(lone("stale", &[("s-1", ExpectedVersion::Exact(3))], b"s"))
        .await
        .unwrap();
    let next = store
        .submit(lone("next", &[("s-1", ExpectedVersion::Exact(4))], b"n"))
        .await
        .unwrap();
    // Written, not yet synced: not answered, not indexed, not in `HEAD`.
    assert!((&mut held).now_or_never().is_none());
    assert_eq!(store.head().await.unwrap().position, 3);
    assert_eq!(*store.watch_head().borrow(), 3);
    assert!(store.read_all(4, 10).await.unwrap().is_empty());
    assert_eq!(head::read(directory.path()), Some(3));

    gate.release();
    let held = held.await.unwrap();
    assert_eq!((held.first_position, held.last_position), (4, 4));
    assert_eq!(retry.await.unwrap(), held);
    let error = stale.await.unwrap_err();
    assert!(
        matches!(error, StoreError::WrongExpectedVersion { actual: 4, .. }),
        "{error}"
    );
    assert_eq!(next.await.unwrap().first_position, 5);
    let after = store.append(lone("after", &[], b"a")).await.unwrap();
    assert_eq!(after.first_position, 6);
    assert_eq!(
        gate.synced_on()[3..],
        ["stemma-writer", "stemma-syncer", "stemma-writer"]
    );
    assert_eq!(head::read(directory.path()), Some(6));
    let events = conformance::read_everything(&store).await;
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    store.close().await;
    assert_eq!(head::read(directory.path()), Some(6));
}
