//! Decoding domain events from their stored payloads (`DomainEvent::decode`), the first
//! step of every projection rebuild and audit replay: the log's common events (uploads,
//! remixes with 1–3 sources, comments, inclusions) with ids of the size of ULIDs.
//!
//! `cargo bench -p benches --bench decode`.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger::domain::events::*;
use ledger::domain::ids::*;
use ledger::store::ProposedEvent;

const EVENTS: usize = 10_000;

/// A ULID-sized id (26 characters), distinct per `n`.
fn ulid(prefix: char, n: usize) -> String {
    format!("{prefix}{n:025}")
}

fn events() -> Vec<ProposedEvent> {
    let record = |n: usize| RecordId::new(ulid('R', n)).unwrap();
    let member = |n: usize| MemberId::new(ulid('M', n)).unwrap();
    let project = ProjectId::new(ulid('P', 0)).unwrap();
    let media = MediaRef {
        blake3: [7; 32],
        size_bytes: 4_096,
    };
    let licence = Licence {
        terms_version: "2026-01".into(),
    };
    (0..EVENTS)
        .map(|i| -> DomainEvent {
            match i % 4 {
                0 => RecordUploaded {
                    record_id: record(i),
                    project_id: project.clone(),
                    contributor: member(i % 97),
                    kind: RecordKind::Audio,
                    title: format!("piece {i}"),
                    media: media.clone(),
                    licence: licence.clone(),
                }
                .into(),
                1 => RemixUploaded {
                    record_id: record(i),
                    project_id: project.clone(),
                    contributor: member(i % 97),
                    kind: RecordKind::Audio,
                    title: format!("piece {i}"),
                    media: media.clone(),
                    licence: licence.clone(),
                    sources: (1..=1 + i % 3).map(|k| record(i - k)).collect(),
                }
                .into(),
                2 => CommentPosted {
                    comment_id: CommentId::new(ulid('C', i)).unwrap(),
                    author: member(i % 89),
                    staff: false,
                    target: CommentTarget::Record(record(i - 1)),
                    reply_to: None,
                    body: "love the bass line in the second half".into(),
                }
                .into(),
                _ => RecordIncluded {
                    production_id: ProductionId::new(ulid('D', 1)).unwrap(),
                    record_id: record(i - 2),
                }
                .into(),
            }
        })
        .map(|event| event.to_proposed())
        .collect()
}

fn decode(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("decode_domain_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("mix_of_uploads_remixes_comments_inclusions", |b| {
        b.iter(|| {
            for event in &events {
                black_box(
                    DomainEvent::decode(
                        event.event_type.as_str(),
                        event.schema_version,
                        &event.payload,
                    )
                    .unwrap(),
                );
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // The allocator set up as the `stemma` binary sets it up.
    config = {
        services::allocator::configure();
        Criterion::default().sample_size(30)
    };
    targets = decode
}
criterion_main!(benches);
