//! Damage on disk: a torn tail is cut, anything else refuses to open and names where.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ledger::store::codec::{self, Frame};
use ledger::store::{CorruptionKind, EmbeddedOptions, EmbeddedStore, EventStore, Head, StoreError};
use stemma_tests::{append, conformance, copy_segments, event, segments};

const SEGMENT_BYTES: u64 = 64 * 1024;

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: SEGMENT_BYTES,
        ..EmbeddedOptions::default()
    }
}

/// A log of `appends` commits of one event each, closed cleanly; returns every head.
async fn write_log(directory: &Path, appends: usize, payload_bytes: usize) -> Vec<Head> {
    let (store, _) = EmbeddedStore::open(directory, options()).await.unwrap();
    let mut heads = vec![Head::EMPTY];
    for i in 0..appends {
        let payload: Vec<u8> = (0..payload_bytes).map(|j| (i * 31 + j) as u8).collect();
        store
            .append(append(
                &format!("c{i}"),
                &[],
                vec![event(&format!("s-{}", i % 3), &payload)],
            ))
            .await
            .unwrap();
        heads.push(store.head().await.unwrap());
    }
    store.close().await;
    heads
}

/// `[start, end)` of every record in a segment file.
fn frames(segment: &Path) -> Vec<(usize, usize)> {
    let bytes = fs::read(segment).unwrap();
    let mut at = 64;
    let mut out = Vec::new();
    while let Frame::Valid { frame_bytes, .. } = codec::parse_frame(&bytes[at..], usize::MAX) {
        out.push((at, at + frame_bytes));
        at += frame_bytes;
    }
    out
}

fn write_at(path: &Path, offset: usize, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset as u64).unwrap();
}

async fn open_error(directory: &Path) -> StoreError {
    match EmbeddedStore::open(directory, options()).await {
        Ok((_, report)) => panic!("a damaged log opened: {report:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn a_torn_last_record_is_cut_at_every_byte() {
    let original = tempfile::tempdir().unwrap();
    let heads = write_log(original.path(), 12, 150).await;
    let segment = segments(original.path()).pop().unwrap();
    let (start, end) = *frames(&segment).last().unwrap();
    let bytes = fs::read(&segment).unwrap();
    for cut in start..end {
        // What a torn tail cut at `cut` leaves: up to the last non-zero byte before it.
        let left = bytes[start..cut]
            .iter()
            .rposition(|b| *b != 0)
            .map(|last| last + 1);
        for really_truncate in [false, true] {
            let copy = tempfile::tempdir().unwrap();
            copy_segments(original.path(), copy.path());
            let torn = copy
                .path()
                .join("segments")
                .join(segment.file_name().unwrap());
            if really_truncate {
                OpenOptions::new()
                    .write(true)
                    .open(&torn)
                    .unwrap()
                    .set_len(cut as u64)
                    .unwrap();
            } else {
                write_at(&torn, cut, &vec![0u8; end - cut]);
            }
            let (store, report) = EmbeddedStore::open(copy.path(), options())
                .await
                .unwrap_or_else(|e| panic!("cut at {cut} (truncate: {really_truncate}): {e}"));
            assert_eq!(report.head, heads[11], "cut at {cut}");
            match (&report.torn_tail, left) {
                (None, None) => {}
                (Some(tail), Some(left)) => {
                    assert_eq!(tail.offset, start as u64);
                    assert_eq!(tail.bytes_discarded, left as u64);
                }
                (tail, left) => panic!("cut at {cut}: reported {tail:?}, {left:?} bytes left"),
            }
            // The store goes on from the cut: the lost append can be made again.
            let result = store
                .append(append("c11", &[], vec![event("s-2", b"again")]))
                .await
                .unwrap();
            assert_eq!(result.first_position, 12);
            store.close().await;
            drop(store);
            let (store, report) = EmbeddedStore::open(copy.path(), options()).await.unwrap();
            assert_eq!(report.torn_tail, None);
            assert_eq!(conformance::read_everything(&store).await.len(), 12);
        }
    }
}

#[tokio::test]
async fn a_flipped_byte_before_the_tail_refuses_to_open_and_names_the_position() {
    let original = tempfile::tempdir().unwrap();
    write_log(original.path(), 12, 150).await;
    let segment = segments(original.path()).pop().unwrap();
    let records = frames(&segment);
    for record in [0usize, 5, 10] {
        let (start, end) = records[record];
        for at in [start, start + 5, start + 17, (start + end) / 2, end - 1] {
            let copy = tempfile::tempdir().unwrap();
            copy_segments(original.path(), copy.path());
            let damaged = copy
                .path()
                .join("segments")
                .join(segment.file_name().unwrap());
            let mut byte = [0u8];
            OpenOptions::new()
                .read(true)
                .open(&damaged)
                .unwrap()
                .read_exact_at(&mut byte, at as u64)
                .unwrap();
            write_at(&damaged, at, &[byte[0] ^ 0x10]);
            match open_error(copy.path()).await {
                StoreError::Corrupt {
                    segment: named,
                    offset,
                    position,
                    kind,
                } => {
                    assert_eq!(named, damaged);
                    assert_eq!(offset, start as u64, "flip at {at}");
                    assert_eq!(position, record as u64 + 1, "flip at {at}");
                    assert!(
                        matches!(
                            kind,
                            CorruptionKind::BadChecksum | CorruptionKind::BadFrame(_)
                        ),
                        "{kind}"
                    );
                }
                other => panic!("flip at {at}: {other}"),
            }
        }
    }
}

#[tokio::test]
async fn a_payload_edit_with_a_repaired_checksum_breaks_the_hash_chain() {
    let original = tempfile::tempdir().unwrap();
    write_log(original.path(), 12, 150).await;
    let segment = segments(original.path()).pop().unwrap();
    let (start, end) = frames(&segment)[6];
    let mut frame = fs::read(&segment).unwrap()[start..end].to_vec();
    // Change a payload byte (well inside the body, before the 32-byte hash), then frame
    // the body again so the checksum is right: only the hash chain can notice.
    let body_at = codec::FRAME_HEADER_BYTES;
    let commit = codec::CommitRange {
        first_position: u64::from_le_bytes(frame[8..16].try_into().unwrap()),
        last_position: u64::from_le_bytes(frame[16..24].try_into().unwrap()),
    };
    let mut body = frame[body_at..].to_vec();
    // The body ends with previous_hash (32 bytes) then hash (32 bytes).
    let payload_byte = body.len() - 64 - 10;
    body[payload_byte] ^= 0xff;
    frame.clear();
    codec::append_frame(&mut frame, commit, &body);
    write_at(&segment, start, &frame);
    match open_error(original.path()).await {
        StoreError::Corrupt {
            position: 7,
            offset,
            kind: CorruptionKind::BadHash,
            ..
        } => {
            assert_eq!(offset, start as u64)
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_deleted_record_is_a_gap() {
    let original = tempfile::tempdir().unwrap();
    write_log(original.path(), 12, 150).await;
    let segment = segments(original.path()).pop().unwrap();
    let (start, end) = frames(&segment)[4];
    let bytes = fs::read(&segment).unwrap();
    let mut spliced = bytes[..start].to_vec();
    spliced.extend_from_slice(&bytes[end..]);
    spliced.resize(bytes.len(), 0);
    fs::write(&segment, &spliced).unwrap();
    match open_error(original.path()).await {
        StoreError::Corrupt {
            position: 5, kind, ..
        } => {
            assert!(
                matches!(
                    kind,
                    CorruptionKind::PositionGap {
                        expected: 5,
                        found: 6
                    }
                ),
                "{kind}"
            )
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn zeroed_records_before_a_later_commit_are_not_a_torn_tail() {
    let original = tempfile::tempdir().unwrap();
    write_log(original.path(), 12, 150).await;
    let segment = segments(original.path()).pop().unwrap();
    let records = frames(&segment);
    let (start, _) = records[8];
    let (_, end) = records[9];
    write_at(&segment, start, &vec![0u8; end - start]);
    match open_error(original.path()).await {
        StoreError::Corrupt {
            position: 9,
            offset,
            kind: CorruptionKind::DamageBeforeLaterCommit,
            ..
        } => {
            assert_eq!(offset, start as u64)
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn damage_in_an_earlier_segment_or_a_missing_segment_refuses_to_open() {
    let original = tempfile::tempdir().unwrap();
    write_log(original.path(), 60, 3_000).await;
    let all = segments(original.path());
    assert!(all.len() >= 3, "the log spans several segments: {all:?}");

    // The last record of the first segment: not a tail, because a later segment exists.
    let copy = tempfile::tempdir().unwrap();
    copy_segments(original.path(), copy.path());
    let first = copy
        .path()
        .join("segments")
        .join(all[0].file_name().unwrap());
    let (start, end) = *frames(&first).last().unwrap();
    let records_in_first = frames(&first).len() as u64;
    // Flip bits rather than write a constant: the byte is part of a hash and could already
    // hold any given value.
    let last = fs::read(&first).unwrap()[end - 1];
    write_at(&first, end - 1, &[last ^ 0xFF]);
    match open_error(copy.path()).await {
        StoreError::Corrupt {
            segment,
            offset,
            position,
            ..
        } => {
            assert_eq!(segment, first);
            assert_eq!(offset, start as u64);
            assert_eq!(position, records_in_first);
        }
        other => panic!("{other}"),
    }

    // A whole middle segment gone.
    let copy = tempfile::tempdir().unwrap();
    copy_segments(original.path(), copy.path());
    fs::remove_file(
        copy.path()
            .join("segments")
            .join(all[1].file_name().unwrap()),
    )
    .unwrap();
    match open_error(copy.path()).await {
        StoreError::Corrupt {
            segment,
            offset: 0,
            kind: CorruptionKind::PositionGap { .. },
            ..
        } => {
            assert_eq!(segment.file_name(), all[2].file_name())
        }
        other => panic!("{other}"),
    }
}

/// A crash can leave any pages of the last commit on disk: records of it after a missing
/// one must not survive, nor records before it. The whole commit goes, so no append is
/// recovered in part.
#[tokio::test]
async fn an_incomplete_last_commit_is_cut_whole() {
    let original = tempfile::tempdir().unwrap();
    let heads = write_log(original.path(), 6, 100).await;
    {
        let (store, _) = EmbeddedStore::open(original.path(), options())
            .await
            .unwrap();
        let five: Vec<_> = (0..5)
            .map(|i| event("multi-1", &[i as u8 + 1; 120]))
            .collect();
        store.append(append("multi", &[], five)).await.unwrap();
        store.close().await;
    }
    let segment = segments(original.path()).pop().unwrap();
    let records = frames(&segment);
    assert_eq!(records.len(), 11);
    let commit_start = records[6].0;
    for (missing, &(start, end)) in records.iter().enumerate().skip(6) {
        let copy = tempfile::tempdir().unwrap();
        copy_segments(original.path(), copy.path());
        let torn = copy
            .path()
            .join("segments")
            .join(segment.file_name().unwrap());
        write_at(&torn, start, &vec![0u8; end - start]);
        let (store, report) = EmbeddedStore::open(copy.path(), options()).await.unwrap();
        assert_eq!(report.head, heads[6], "record {missing} missing");
        let tail = report.torn_tail.expect("a torn tail");
        assert_eq!(tail.offset, commit_start as u64);
        assert_eq!(
            store
                .stream_version(&stemma_tests::stream("multi-1"))
                .await
                .unwrap(),
            0
        );
        // The command never happened: its id is free, and the append can be made again.
        let again = store
            .append(append("multi", &[], vec![event("multi-1", b"retry")]))
            .await
            .unwrap();
        assert_eq!((again.first_position, again.last_position), (7, 7));
    }
}
