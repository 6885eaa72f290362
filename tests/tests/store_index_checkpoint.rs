//! The index checkpoint (`<data>/INDEX`, written by `close`): used when it fits the log,
//! ignored (and the index built from the log) when it does not, and never a reason to
//! check less of the log.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ledger::store::codec::{self, Frame};
use ledger::store::{
    AppendRequest, CorruptionKind, EmbeddedOptions, EmbeddedStore, EventStore, ExpectedVersion,
    Head, StoreError,
};
use stemma_tests::{append, conformance, copy_segments, event, segments};

const SEGMENT_BYTES: u64 = 64 * 1024;
const STREAMS: usize = 7;

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: SEGMENT_BYTES,
        ..EmbeddedOptions::default()
    }
}

/// Commit `i`: two events, on two of `STREAMS` streams.
fn commit(i: usize) -> AppendRequest {
    let payload = vec![i as u8; 200];
    append(
        &format!("c{i}"),
        &[],
        vec![
            event(&format!("s-{}", i % STREAMS), &payload),
            event(&format!("s-{}", (i * 3 + 1) % STREAMS), &payload),
        ],
    )
}

/// Appends commits `from..to` (two events each, on two of `STREAMS` streams) to the store
/// in `directory`, and closes it; returns the head.
async fn append_commits(directory: &Path, from: usize, to: usize) -> Head {
    let (store, _) = EmbeddedStore::open(directory, options()).await.unwrap();
    for i in from..to {
        store.append(commit(i)).await.unwrap();
    }
    let head = store.head().await.unwrap();
    store.close().await;
    head
}

/// The bytes of every segment, in log order.
fn segment_bytes(directory: &Path) -> Vec<Vec<u8>> {
    segments(directory)
        .iter()
        .map(|segment| fs::read(segment).unwrap())
        .collect()
}

/// What a reader and a writer can see of the index: every stream's events, and what
/// retrying each command answers.
async fn observe(directory: &Path, commands: usize) -> (Vec<Vec<u64>>, Vec<u64>) {
    let (store, _) = EmbeddedStore::open(directory, options()).await.unwrap();
    let mut streams = Vec::new();
    for s in 0..STREAMS {
        let stream = stemma_tests::stream(&format!("s-{s}"));
        let events = store.read_stream(&stream, 1, 10_000).await.unwrap();
        streams.push(events.iter().map(|e| e.position).collect());
    }
    let mut retries = Vec::new();
    for i in 0..commands {
        let result = store.append(commit(i)).await.unwrap();
        retries.push(result.first_position);
    }
    // A retry writes nothing.
    assert_eq!(
        store.head().await.unwrap().position,
        2 * commands as u64,
        "a retry was written again"
    );
    store.close().await;
    (streams, retries)
}

/// The store in `directory` answers as one whose index is built from its log alone.
async fn assert_answers_as_a_rebuild(
    directory: &Path,
    commands: usize,
) -> (Vec<Vec<u64>>, Vec<u64>) {
    let rebuilt = tempfile::tempdir().unwrap();
    copy_segments(directory, rebuilt.path());
    assert_eq!(
        open_report(rebuilt.path()).await.index_from_checkpoint,
        None
    );
    let answers = observe(directory, commands).await;
    assert_eq!(answers, observe(rebuilt.path(), commands).await);
    answers
}

async fn open_report(directory: &Path) -> ledger::store::OpenReport {
    let (store, report) = EmbeddedStore::open(directory, options()).await.unwrap();
    store.close().await;
    report
}

#[tokio::test]
async fn a_reopen_takes_the_maps_from_the_checkpoint_and_answers_as_a_rebuild_would() {
    let directory = tempfile::tempdir().unwrap();
    let head = append_commits(directory.path(), 0, 400).await;
    assert!(segments(directory.path()).len() > 2, "several segments");
    assert!(directory.path().join("INDEX").exists(), "close wrote it");
    let report = open_report(directory.path()).await;
    assert_eq!(report.index_from_checkpoint, Some(head.position));
    assert_eq!(report.head, head);
    let from_checkpoint = assert_answers_as_a_rebuild(directory.path(), 400).await;
    // Expected versions are decided against the checkpoint's maps too.
    let (store, _) = EmbeddedStore::open(directory.path(), options())
        .await
        .unwrap();
    let versions = &from_checkpoint.0;
    let stale = store
        .append(append(
            "stale",
            &[("s-3", ExpectedVersion::Exact(versions[3].len() as u64 - 1))],
            vec![event("s-3", b"late")],
        ))
        .await;
    assert!(
        matches!(stale, Err(StoreError::WrongExpectedVersion { .. })),
        "{stale:?}"
    );
    let fresh = store
        .append(append(
            "fresh",
            &[("s-3", ExpectedVersion::Exact(versions[3].len() as u64))],
            vec![event("s-3", b"on time")],
        ))
        .await
        .unwrap();
    assert_eq!(fresh.first_position, head.position + 1);
    store.close().await;
}

#[tokio::test]
async fn an_older_checkpoint_is_used_and_the_events_after_it_are_indexed_from_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let older = append_commits(directory.path(), 0, 150).await;
    let older_checkpoint = fs::read(directory.path().join("INDEX")).unwrap();
    append_commits(directory.path(), 150, 300).await;
    // As after a crash: the last close's checkpoint never made it, the older one is there.
    fs::write(directory.path().join("INDEX"), older_checkpoint).unwrap();
    let report = open_report(directory.path()).await;
    assert_eq!(report.index_from_checkpoint, Some(older.position));
    assert_answers_as_a_rebuild(directory.path(), 300).await;
}

#[tokio::test]
async fn a_checkpoint_of_another_log_is_ignored() {
    let one = tempfile::tempdir().unwrap();
    let head = append_commits(one.path(), 0, 120).await;
    // Another log of the same length: other payloads, so other hashes.
    let other = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(other.path(), options()).await.unwrap();
    for i in 0..120 {
        store
            .append(append(
                &format!("other-{i}"),
                &[],
                vec![event("x", b"other"), event("y", b"other")],
            ))
            .await
            .unwrap();
    }
    store.close().await;
    fs::copy(other.path().join("INDEX"), one.path().join("INDEX")).unwrap();
    let report = open_report(one.path()).await;
    assert_eq!(report.head, head);
    assert_eq!(report.index_from_checkpoint, None);
    assert_answers_as_a_rebuild(one.path(), 120).await;
}

#[tokio::test]
async fn a_checkpoint_past_the_end_of_the_log_is_ignored_and_nothing_is_cut() {
    let directory = tempfile::tempdir().unwrap();
    append_commits(directory.path(), 0, 100).await;
    // The log restored from a copy taken before the last 50 commits, with the later
    // checkpoint left in place.
    let restored = tempfile::tempdir().unwrap();
    copy_segments(directory.path(), restored.path());
    let short = append_commits(restored.path(), 100, 100).await;
    append_commits(directory.path(), 100, 150).await;
    fs::copy(
        directory.path().join("INDEX"),
        restored.path().join("INDEX"),
    )
    .unwrap();
    let before = segment_bytes(restored.path());
    let report = open_report(restored.path()).await;
    assert_eq!(report.head, short);
    assert_eq!(report.index_from_checkpoint, None);
    assert_eq!(report.torn_tail, None);
    let after = segment_bytes(restored.path());
    assert_eq!(before, after, "the log was changed");
}

#[tokio::test]
async fn a_torn_tail_after_the_checkpoint_is_cut_as_without_one() {
    let directory = tempfile::tempdir().unwrap();
    let checkpointed = append_commits(directory.path(), 0, 60).await;
    let checkpoint = fs::read(directory.path().join("INDEX")).unwrap();
    append_commits(directory.path(), 60, 61).await;
    fs::write(directory.path().join("INDEX"), checkpoint).unwrap();
    // Tear the last commit (two events): zero its second frame.
    let last = segments(directory.path()).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    let mut at = 64;
    let mut frames = Vec::new();
    while let Frame::Valid { frame_bytes, .. } = codec::parse_frame(&bytes[at..], usize::MAX) {
        frames.push((at, frame_bytes));
        at += frame_bytes;
    }
    let (second_at, second_bytes) = *frames.last().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .write_all_at(&vec![0u8; second_bytes], second_at as u64)
        .unwrap();
    let (store, report) = EmbeddedStore::open(directory.path(), options())
        .await
        .unwrap();
    assert_eq!(report.index_from_checkpoint, Some(checkpointed.position));
    assert_eq!(report.head, checkpointed, "the whole torn commit is cut");
    assert!(report.torn_tail.is_some());
    // The cut commit can be made again, at the same positions.
    let again = store
        .append(append(
            "c60",
            &[],
            vec![event("s-4", &[60; 200]), event("s-5", &[60; 200])],
        ))
        .await
        .unwrap();
    assert_eq!(again.first_position, checkpointed.position + 1);
    assert_eq!(
        conformance::read_everything(&store).await.len() as u64,
        checkpointed.position + 2
    );
    store.close().await;
}

#[tokio::test]
async fn damage_before_the_checkpoint_still_refuses_to_open() {
    let directory = tempfile::tempdir().unwrap();
    let head = append_commits(directory.path(), 0, 200).await;
    let first = segments(directory.path()).remove(0);
    let bytes = fs::read(&first).unwrap();
    // A byte in the body of the third frame: its checksum no longer matches.
    let mut at = 64;
    for _ in 0..2 {
        let Frame::Valid { frame_bytes, .. } = codec::parse_frame(&bytes[at..], usize::MAX) else {
            panic!("three frames");
        };
        at += frame_bytes;
    }
    let flipped = at + 40;
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .write_all_at(&[bytes[flipped] ^ 0x01], flipped as u64)
        .unwrap();
    match EmbeddedStore::open(directory.path(), options()).await {
        Ok((_, report)) => panic!("a damaged log opened: {report:?}"),
        Err(StoreError::Corrupt {
            segment,
            offset,
            position,
            kind,
        }) => {
            assert_eq!(segment, first);
            assert_eq!(offset, at as u64);
            assert_eq!(position, 3);
            assert!(
                matches!(
                    kind,
                    CorruptionKind::BadChecksum | CorruptionKind::BadFrame(_)
                ),
                "{kind:?}"
            );
        }
        Err(other) => panic!("another error: {other}"),
    }
    assert!(head.position > 3);
}
