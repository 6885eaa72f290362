//! `audit::verify` on real data directories written through the domain (the decider and
//! the embedded store), then tampered with byte by byte: every change is found, located
//! by position, and reported without stopping at the first; the writer's lock is never
//! needed; a commit still being written is left out, not reported.

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};

use common::*;
use ledger::audit::{self, Check, Checkpoint, Finding, VerifyOptions, VerifyReport};
use ledger::domain::commands::IssuePayouts;
use ledger::domain::events::{DomainEvent, PayoutFor, PayoutIssued, RevenueRecorded};
use ledger::domain::ids::PayoutId;
use ledger::domain::Command;
use ledger::store::codec::{self, CommitRange, FRAME_HEADER_BYTES};
use ledger::store::embedded::snapshot::{LogSnapshot, ScanItem};
use ledger::store::{
    CommandId, EmbeddedOptions, EmbeddedStore, EventStore, RecordedEvent, StoreError,
};
use stemma_testkit::forge::{intruder_append, proposed};
use stemma_testkit::Harness;

/// A data directory with the fixture's history, written through the decider, closed.
/// With `issue_d1_payouts` false, d1 is finalized but its payouts are not issued.
async fn written_through_the_domain(issue_d1_payouts: bool) -> (Harness, PathBuf) {
    let harness = Harness::new().await;
    for command in fixture() {
        harness.ok(command).await;
    }
    for (at, command) in late_fixture() {
        if !issue_d1_payouts
            && matches!(
                command,
                Command::IssuePayouts(IssuePayouts::Distribution(_)) | Command::SettlePayout(_)
            )
        {
            continue;
        }
        harness.clock.set(at);
        harness.ok(command).await;
    }
    let log = harness.directory.path().join("log");
    (harness, log)
}

fn verify(log: &Path, semantic: bool) -> VerifyReport {
    audit::verify(
        log,
        VerifyOptions {
            semantic,
            checkpoint: None,
            workers: 0,
        },
        &mut |_| {},
    )
    .unwrap()
}

fn summary(findings: &[Finding]) -> Vec<(u64, Check)> {
    findings.iter().map(|f| (f.position, f.check)).collect()
}

/// One frame of the (single) segment.
struct FrameAt {
    offset: usize,
    bytes: usize,
    commit: CommitRange,
    event: RecordedEvent,
}

/// The segment file and its frames, in order.
struct Segment {
    path: PathBuf,
    bytes: Vec<u8>,
    frames: Vec<FrameAt>,
}

impl Segment {
    fn read(log: &Path) -> Segment {
        let snapshot = LogSnapshot::open(log).unwrap();
        assert_eq!(snapshot.segments.len(), 1, "the fixture fits one segment");
        let mut frames = Vec::new();
        snapshot
            .scan(|item| {
                if let ScanItem::Commit { frames: f, .. } = item {
                    for frame in f {
                        frames.push(FrameAt {
                            offset: frame.offset as usize,
                            bytes: FRAME_HEADER_BYTES + frame.body.len(),
                            commit: frame.commit,
                            event: codec::decode_event(frame.body).unwrap(),
                        });
                    }
                }
                true
            })
            .unwrap();
        let path = snapshot.segments[0].1.clone();
        let bytes = std::fs::read(&path).unwrap();
        Segment {
            path,
            bytes,
            frames,
        }
    }

    fn position_of(&self, event_type: &str) -> u64 {
        self.frames
            .iter()
            .find(|f| f.event.event_type.as_str() == event_type)
            .map(|f| f.event.position)
            .unwrap_or_else(|| panic!("no {event_type}"))
    }

    fn frame(&self, position: u64) -> &FrameAt {
        &self.frames[position as usize - 1]
    }

    fn range(&self, position: u64) -> Range<usize> {
        let frame = self.frame(position);
        frame.offset..frame.offset + frame.bytes
    }

    /// Replaces `range` with `with`, keeping the file's size (zeroes in or out at the end).
    fn splice(&mut self, range: Range<usize>, with: &[u8]) {
        let size = self.bytes.len();
        self.bytes.splice(range, with.iter().copied());
        self.bytes.resize(size, 0);
    }

    fn write(&self) {
        std::fs::write(&self.path, &self.bytes).unwrap();
    }
}

/// A frame holding `event` (its hash as given, not recomputed) in `commit`.
fn frame_of(event: &RecordedEvent, commit: CommitRange) -> Vec<u8> {
    let mut body = codec::encode_unhashed(event);
    body.extend_from_slice(&event.hash.0);
    let mut out = Vec::new();
    codec::append_frame(&mut out, commit, &body);
    out
}

async fn open_refuses(log: &Path) {
    match EmbeddedStore::open(log, EmbeddedOptions::default()).await {
        Err(StoreError::Corrupt { .. }) => {}
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("the store opened a tampered log"),
    }
}

#[tokio::test]
async fn a_log_written_through_the_domain_verifies_clean() {
    let (harness, log) = written_through_the_domain(true).await;
    // The store is still open and holds the lock: verify does not need it.
    let report = verify(&log, true);
    assert_eq!(report.findings, vec![], "{:#?}", report.findings);
    assert!(report.is_clean());
    let head = harness.store.head().await.unwrap();
    assert_eq!(report.head_position, head.position);
    assert_eq!(report.head_hash, head.hash.to_hex());
    assert_eq!(report.events, head.position);
    assert_eq!(audit::verify::head(&log).unwrap(), head);
    assert!(report.tail_ignored.is_none());
}

#[tokio::test]
async fn a_changed_payload_byte_with_a_repaired_checksum_is_found_by_the_chain() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let position = segment.position_of("RevenueRecorded");
    let frame = segment.frame(position);
    let mut event = frame.event.clone();
    let at = event
        .payload
        .windows(9)
        .position(|w| w == b"broadcast")
        .unwrap();
    event.payload[at] = b'B';
    let forged = frame_of(&event, frame.commit);
    assert_eq!(forged.len(), frame.bytes, "same length, valid checksum");
    let range = segment.range(position);
    segment.splice(range, &forged);
    segment.write();

    let report = verify(&log, true);
    assert_eq!(
        summary(&report.findings),
        vec![(position, Check::Hash)],
        "{:#?}",
        report.findings
    );
    let finding = &report.findings[0];
    assert_eq!(finding.event_type.as_deref(), Some("RevenueRecorded"));
    assert_eq!(finding.stream_id.as_deref(), Some("production-pr1"));
    assert!(finding.found.contains(&event.hash.to_hex()), "{finding}");
    open_refuses(&log).await;
}

#[tokio::test]
async fn a_deleted_event_is_found_where_it_was() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let position = segment.position_of("ExpenseRecorded");
    let range = segment.range(position);
    segment.splice(range, &[]);
    segment.write();

    let report = verify(&log, false);
    assert_eq!(
        summary(&report.findings),
        vec![
            (position + 1, Check::Position),
            (position + 1, Check::HashLink)
        ],
        "{:#?}",
        report.findings
    );
    assert_eq!(report.findings[0].expected, format!("position {position}"));
    // The replay notices too: the pool no longer follows from the recorded expenses.
    let report = verify(&log, true);
    assert!(
        report.findings.iter().any(
            |f| f.check == Check::Pool && f.event_type.as_deref() == Some("AllocationProposed")
        ),
        "{:#?}",
        report.findings
    );
    open_refuses(&log).await;
}

#[tokio::test]
async fn two_swapped_events_are_found_at_both_positions() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let first = segment.position_of("RevenueRecorded");
    let second = first + 1;
    assert_eq!(
        segment.frame(second).event.event_type.as_str(),
        "ExpenseRecorded"
    );
    let a = segment.bytes[segment.range(first)].to_vec();
    let b = segment.bytes[segment.range(second)].to_vec();
    let both = segment.range(first).start..segment.range(second).end;
    segment.splice(both, &[b, a].concat());
    segment.write();

    let report = verify(&log, false);
    let positions: Vec<u64> = report.findings.iter().map(|f| f.position).collect();
    assert!(
        positions.iter().all(|p| (first..=second + 1).contains(p)),
        "{:#?}",
        report.findings
    );
    for (position, check) in [
        (second, Check::Position),
        (first, Check::Position),
        (second, Check::HashLink),
        (first, Check::HashLink),
        (second, Check::StreamVersion),
        (first, Check::StreamVersion),
    ] {
        assert!(
            summary(&report.findings).contains(&(position, check)),
            "missing {check} at {position}: {:#?}",
            report.findings
        );
    }
    open_refuses(&log).await;
}

#[tokio::test]
async fn a_forged_event_inserted_with_a_valid_hash_is_found() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let position = segment.position_of("RevenueRecorded");
    // The forger links the new event properly to the one before and hashes it.
    let mut forged = segment.frame(position).event.clone();
    forged.command_id = CommandId::new("forged").unwrap();
    forged.payload = DomainEvent::from(RevenueRecorded {
        production_id: production("pr1"),
        amount: usd("1000000"),
        description: "invented".into(),
    })
    .to_proposed()
    .payload;
    codec::encode_and_hash(&mut forged);
    let commit = CommitRange {
        first_position: position,
        last_position: position,
    };
    let frame = frame_of(&forged, commit);
    let at = segment.frame(position).offset;
    segment.splice(at..at, &frame);
    segment.write();

    let report = verify(&log, false);
    assert_eq!(
        summary(&report.findings),
        vec![
            (position, Check::Position),
            (position, Check::HashLink),
            (position, Check::StreamVersion)
        ],
        "the original event at {position} no longer follows the forged one: {:#?}",
        report.findings
    );
    let report = verify(&log, true);
    assert!(
        report.findings.iter().any(|f| f.check == Check::Pool),
        "the invented revenue changes the pool: {:#?}",
        report.findings
    );
    open_refuses(&log).await;
}

#[tokio::test]
async fn bytes_cut_from_the_middle_are_found_and_reading_resumes_after_them() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let position = segment.position_of("RevenueRecorded");
    // From inside the revenue's frame to inside the frame two after it.
    let start = segment.range(position).start + 10;
    let end = segment.range(position + 2).start + 10;
    segment.splice(start..end, &[]);
    segment.write();

    let report = verify(&log, false);
    let found = summary(&report.findings);
    assert_eq!(found[0], (position, Check::Frame), "{:#?}", report.findings);
    assert_eq!(
        report.findings[0].offset,
        Some(segment.frame(position).offset as u64)
    );
    assert!(
        found.contains(&(position + 3, Check::Position)),
        "{found:?}"
    );
    assert!(
        found.contains(&(position + 3, Check::HashLink)),
        "{found:?}"
    );
    assert!(found
        .iter()
        .all(|(p, _)| (position..=position + 3).contains(p)));
    // Everything after the cut was still read.
    assert_eq!(report.head_position, segment.frames.len() as u64);
    open_refuses(&log).await;
}

#[tokio::test]
async fn several_tamperings_are_all_reported() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let revenue = segment.position_of("RevenueRecorded");
    let finalized = segment.position_of("AllocationFinalized");
    // Cut the later one first so the earlier offsets stay valid.
    let range = segment.range(finalized);
    segment.splice(range, &[]);
    let range = segment.range(revenue);
    segment.splice(range, &[]);
    segment.write();
    let report = verify(&log, false);
    let found = summary(&report.findings);
    // Each deletion: the next event is out of place and unlinked, and the next event of
    // the same stream skips a version.
    for position in [revenue + 1, finalized + 1] {
        assert!(found.contains(&(position, Check::Position)), "{found:?}");
        assert!(found.contains(&(position, Check::HashLink)), "{found:?}");
    }
    assert_eq!(
        found
            .iter()
            .filter(|(_, check)| *check == Check::StreamVersion)
            .count(),
        2,
        "{found:?}"
    );
    assert_eq!(found.len(), 6, "{:#?}", report.findings);
}

#[tokio::test]
async fn a_commit_being_written_is_left_out_not_reported() {
    let (harness, log) = written_through_the_domain(true).await;
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let head = segment.frames.len() as u64;
    let end = segment.range(head).end;
    // A two-event commit of which only the first frame has reached the file.
    let mut next = segment.frame(head).event.clone();
    next.position = head + 1;
    next.previous_hash = segment.frame(head).event.hash;
    next.command_id = CommandId::new("in-progress").unwrap();
    codec::encode_and_hash(&mut next);
    let commit = CommitRange {
        first_position: head + 1,
        last_position: head + 2,
    };
    let partial = frame_of(&next, commit);
    segment.splice(end..end, &partial);
    segment.write();

    let report = verify(&log, true);
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.head_position, head);
    let tail = report.tail_ignored.unwrap();
    assert_eq!(tail.offset, end as u64);
    assert_eq!(tail.bytes, partial.len() as u64);
    // Nothing was cut: the bytes are still there.
    assert_eq!(std::fs::read(&segment.path).unwrap(), segment.bytes);
}

#[tokio::test]
async fn a_checkpoint_proves_the_history_up_to_it_unchanged() {
    let (harness, log) = written_through_the_domain(true).await;
    let checkpoint_head = audit::verify::head(&log).unwrap();
    // The ledger goes on while the auditor is away.
    harness.ok(register("erin")).await;
    harness.ok(register("frank")).await;
    let checkpoint = Checkpoint {
        position: checkpoint_head.position,
        hash: checkpoint_head.hash,
    };
    let options = VerifyOptions {
        semantic: true,
        checkpoint: Some(checkpoint),
        workers: 0,
    };
    let report = audit::verify(&log, options, &mut |_| {}).unwrap();
    assert_eq!(
        report.checkpoint_verified,
        Some(true),
        "{:#?}",
        report.findings
    );
    assert_eq!(report.head_position, checkpoint.position);

    // A wrong hash for the checkpoint is a finding.
    let wrong = VerifyOptions {
        checkpoint: Some(Checkpoint {
            hash: harness.store.head().await.unwrap().hash,
            ..checkpoint
        }),
        ..options
    };
    let report = audit::verify(&log, wrong, &mut |_| {}).unwrap();
    assert_eq!(report.checkpoint_verified, Some(false));
    assert_eq!(
        summary(&report.findings),
        vec![(checkpoint.position, Check::Checkpoint)]
    );

    // A history rewritten whole from some point (every hash recomputed, so the chain is
    // consistent) is caught only by the checkpoint.
    let _directory = harness.close().await;
    let mut segment = Segment::read(&log);
    let position = segment.position_of("RevenueRecorded");
    let mut previous = segment.frame(position - 1).event.hash;
    let mut rewritten = Vec::new();
    for frame in &segment.frames[position as usize - 1..] {
        let mut event = frame.event.clone();
        if event.position == position {
            event.payload = DomainEvent::from(RevenueRecorded {
                production_id: production("pr1"),
                amount: usd("50000"),
                description: "broadcast licence, rewritten".into(),
            })
            .to_proposed()
            .payload;
        }
        event.previous_hash = previous;
        codec::encode_and_hash(&mut event);
        previous = event.hash;
        rewritten.extend(frame_of(&event, frame.commit));
    }
    let start = segment.range(position).start;
    let end = segment.frames.last().map(|f| f.offset + f.bytes).unwrap();
    segment.splice(start..end, &rewritten);
    segment.write();
    assert!(
        verify(&log, false).is_clean(),
        "the chain alone cannot tell"
    );
    let report = audit::verify(&log, options, &mut |_| {}).unwrap();
    assert_eq!(report.checkpoint_verified, Some(false));
    assert_eq!(
        summary(&report.findings),
        vec![(checkpoint.position, Check::Checkpoint)]
    );

    // A log cut short before the checkpoint does not reach it.
    let mut segment = Segment::read(&log);
    let start = segment.range(position).start;
    let len = segment.bytes.len();
    segment.splice(start..len, &[]);
    segment.write();
    let report = audit::verify(&log, options, &mut |_| {}).unwrap();
    assert_eq!(report.checkpoint_verified, Some(false));
    assert_eq!(
        summary(&report.findings),
        vec![(position, Check::Checkpoint)]
    );
}

#[tokio::test]
async fn a_payout_appended_past_the_domain_with_a_wrong_amount_is_named() {
    let (harness, log) = written_through_the_domain(false).await;
    let d1 = distribution("d1");
    let (lines, amounts) = harness
        .handle
        .inspect(move |s| {
            let d = s.distribution(&d1).unwrap();
            (d.lines.clone(), d.amounts.clone().unwrap())
        })
        .await
        .unwrap();
    // Every line's payout, but carol's is one cent too high.
    let events: Vec<DomainEvent> = lines
        .iter()
        .zip(&amounts)
        .map(|(line, amount)| {
            let amount = if line.member == member("carol") {
                amount.checked_add(usd("0.01")).unwrap()
            } else {
                *amount
            };
            PayoutIssued {
                payout_id: PayoutId::for_line(&distribution("d1"), &line.member),
                member: line.member.clone(),
                amount,
                payout_for: PayoutFor::Line {
                    distribution_id: distribution("d1"),
                },
            }
            .into()
        })
        .collect();
    let appended = harness
        .store
        .append(intruder_append("intruder-1", proposed(&events)))
        .await
        .unwrap();
    let carol_index = lines
        .iter()
        .position(|l| l.member == member("carol"))
        .unwrap();
    let carol_position = appended.first_position + carol_index as u64;

    let report = verify(&log, true);
    assert_eq!(
        summary(&report.findings),
        vec![
            (carol_position, Check::Payout),
            (appended.last_position, Check::PayoutsSum)
        ],
        "{:#?}",
        report.findings
    );
    let finding = &report.findings[0];
    assert_eq!(finding.event_type.as_deref(), Some("PayoutIssued"));
    assert!(
        finding.expected.contains(&amounts[carol_index].to_string()),
        "{finding}"
    );
    assert!(finding.found.contains("carol"), "{finding}");
    assert!(finding.rule.starts_with("rule 8"), "{finding}");
    assert!(
        report.findings[1].expected.contains("23500.00"),
        "{}",
        report.findings[1]
    );
    assert!(
        report.findings[1].found.contains("23500.01"),
        "{}",
        report.findings[1]
    );
    // The chain is intact: only the rules can tell.
    assert!(verify(&log, false).is_clean());
}

#[tokio::test]
async fn a_payout_issued_twice_past_the_domain_is_named() {
    let (harness, log) = written_through_the_domain(true).await;
    let carol = PayoutId::for_line(&distribution("d1"), &member("carol"));
    let amount = harness
        .handle
        .inspect({
            let carol = carol.clone();
            move |s| s.payout(&carol).unwrap().amount
        })
        .await
        .unwrap();
    let again: DomainEvent = PayoutIssued {
        payout_id: carol.clone(),
        member: member("carol"),
        amount,
        payout_for: PayoutFor::Line {
            distribution_id: distribution("d1"),
        },
    }
    .into();
    let appended = harness
        .store
        .append(intruder_append("intruder-2", proposed(&[again])))
        .await
        .unwrap();
    let report = verify(&log, true);
    let found = summary(&report.findings);
    assert_eq!(
        found[0],
        (appended.first_position, Check::PayoutTwice),
        "{:#?}",
        report.findings
    );
    assert!(report.findings[0].expected.contains(carol.as_str()));
    assert!(
        found.contains(&(appended.first_position, Check::PayoutsSum)),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_log_while_the_store_appends_to_it() {
    const APPENDS: usize = 400;
    let directory = tempfile::tempdir().unwrap();
    let log = directory.path().join("log");
    let options = EmbeddedOptions {
        // Small segments: the writer rolls to new ones while the auditor reads.
        segment_size_bytes: 64 * 1024,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(&log, options).await.unwrap();
    let store = std::sync::Arc::new(store);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..APPENDS {
                // Three events per append: a reader may see a commit in part.
                let events: Vec<DomainEvent> = (0..3)
                    .map(|j| {
                        RevenueRecorded {
                            production_id: production(&format!("pr{}", j)),
                            amount: usd("1"),
                            description: format!("sale {i}.{j}"),
                        }
                        .into()
                    })
                    .collect();
                store
                    .append(intruder_append(&format!("append-{i}"), proposed(&events)))
                    .await
                    .unwrap();
            }
        })
    };
    let mut passes = 0u64;
    loop {
        let finished = writer.is_finished();
        let log = log.clone();
        let report = tokio::task::spawn_blocking(move || verify(&log, false))
            .await
            .unwrap();
        passes += 1;
        assert!(report.is_clean(), "pass {passes}: {:#?}", report.findings);
        assert_eq!(report.head_position % 3, 0, "whole appends only");
        // No `<= store head` here: a reader in another process sees a commit once it is
        // written whole, which may be just before its fdatasync returns and the store's
        // head moves (see `snapshot`). Once the writer is done, both agree.
        if finished {
            let head = store.head().await.unwrap();
            assert_eq!(report.head_position, head.position);
            assert_eq!(report.head_hash, head.hash.to_hex());
            break;
        }
    }
    writer.await.unwrap();
    assert!(passes >= 1);
}
