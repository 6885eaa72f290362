//! The domain's hot paths on a family tree of 1,000,000 records: the cycle check of a late
//! citation (`decide(CiteSource)`), which must stay fast at that size, and the line rule
//! over 10,000 lines.
//!
//! The tree is generated deterministically: each record remixes 0–3 earlier records,
//! mostly recent ones (as remix chains do), sometimes any older one.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ledger::dag::Dag;
use ledger::domain::commands::{CiteSource, Command};
use ledger::domain::events::{
    DomainEvent, Licence, MediaRef, MemberRegistered, ProjectStarted, RecordKind, RecordUploaded,
    RemixUploaded, SealedPersonalData,
};
use ledger::domain::ids::{MemberId, ProjectId, RecordId};
use ledger::domain::{decide, evolve, State};
use ledger::money::{split_pool, Currency, Money, Weight};
use ledger::time::Timestamp;
use rust_decimal::Decimal;

const RECORDS: usize = 1_000_000;

/// A small deterministic generator (SplitMix64), so runs are comparable.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Sources of record `i`: up to three, mostly among the 1,000 before it.
fn sources(random: &mut Random, i: usize) -> Vec<usize> {
    if i == 0 {
        return Vec::new();
    }
    let count = random.below(4);
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let source = if random.below(10) == 0 {
            random.below(i)
        } else {
            i - 1 - random.below(i.min(1_000))
        };
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    sources
}

fn record_id(i: usize) -> RecordId {
    RecordId::new(format!("r{i}")).unwrap()
}

fn build_state() -> State {
    let mut state = State::new();
    let member = MemberId::new("m").unwrap();
    let project = ProjectId::new("p").unwrap();
    evolve(
        &mut state,
        &MemberRegistered {
            member_id: member.clone(),
            handle: "m".into(),
            personal_data: SealedPersonalData {
                nonce: [0; 12],
                ciphertext: Vec::new(),
            },
        }
        .into(),
    );
    evolve(
        &mut state,
        &ProjectStarted {
            project_id: project.clone(),
            title: "p".into(),
        }
        .into(),
    );
    let mut random = Random(7);
    for i in 0..RECORDS {
        let sources = sources(&mut random, i);
        let media = MediaRef {
            blake3: [0; 32],
            size_bytes: 1,
        };
        let licence = Licence {
            terms_version: "1".into(),
        };
        let event: DomainEvent = if sources.is_empty() {
            RecordUploaded {
                record_id: record_id(i),
                project_id: project.clone(),
                contributor: member.clone(),
                kind: RecordKind::Text,
                title: String::new(),
                media,
                licence,
            }
            .into()
        } else {
            RemixUploaded {
                record_id: record_id(i),
                project_id: project.clone(),
                contributor: member.clone(),
                kind: RecordKind::Text,
                title: String::new(),
                media,
                licence,
                sources: sources.into_iter().map(record_id).collect(),
            }
            .into()
        };
        evolve(&mut state, &event);
    }
    state
}

fn cycle_check(c: &mut Criterion) {
    let state = build_state();
    let tree: &Dag = state.tree();
    println!(
        "tree: {} records, {} citations",
        tree.node_count(),
        tree.edge_count()
    );
    let mut group = c.benchmark_group("cite_source_1m_records");
    let mut random = Random(11);
    // The cheap case: a new record cites an older one (the edge agrees with the order).
    group.bench_function("newer_cites_older", |b| {
        b.iter(|| {
            let citing = RECORDS / 2 + random.below(RECORDS / 2);
            let source = random.below(RECORDS / 2);
            let command = Command::CiteSource(CiteSource {
                record_id: record_id(citing),
                source_id: record_id(source),
            });
            black_box(decide(&state, &command, Timestamp::EPOCH).is_ok())
        })
    });
    // The expensive case: an old record cites a newer one ("you forgot to source me",
    // against the order), the search spanning `distance` positions of the order.
    for distance in [10usize, 1_000, 100_000] {
        group.bench_function(format!("older_cites_newer_{distance}_apart"), |b| {
            b.iter(|| {
                let citing = random.below(RECORDS - distance);
                let source = citing + 1 + random.below(distance);
                let command = Command::CiteSource(CiteSource {
                    record_id: record_id(citing),
                    source_id: record_id(source),
                });
                black_box(decide(&state, &command, Timestamp::EPOCH).is_ok())
            })
        });
    }
    group.finish();

    // Applying accepted late citations (Pearce–Kelly reorders only the affected region).
    let mut tree = tree.clone();
    let mut random = Random(13);
    c.bench_function("add_edge_against_order_1m_records", |b| {
        b.iter(|| {
            let from = random.below(RECORDS);
            let to = random.below(RECORDS);
            black_box(tree.add_edge(from as u32, to as u32).is_ok())
        })
    });
}

fn line_rule(c: &mut Criterion) {
    let pool = Money::parse("25000", Currency::USD).unwrap();
    let weights: Vec<Weight> = (0..10_000u32)
        .map(|i| Weight::new(Decimal::new(i64::from(i % 97 + 1), 1)).unwrap())
        .collect();
    c.bench_function("split_pool_10000_lines", |b| {
        b.iter(|| black_box(split_pool(pool, &weights)))
    });
}

/// Commands through the decider and the embedded store (durable, fsync'd): `callers`
/// tasks each upload records one after another, so their appends share group commits.
fn decider_throughput(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use ledger::decider::{CommandEnvelope, Decider};
    use ledger::domain::commands::{RegisterMember, StartProject, UploadRecord};
    use ledger::domain::privacy::FileKeyVault;
    use ledger::store::{Actor, CommandId, EmbeddedOptions, EmbeddedStore, ServiceName};
    use ledger::time::SystemClock;

    const COMMANDS_PER_ITERATION: u64 = 1_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let directory = tempfile::tempdir().unwrap();
    let (handle, _task) = runtime.block_on(async {
        let (store, _) =
            EmbeddedStore::open(directory.path().join("log"), EmbeddedOptions::default())
                .await
                .unwrap();
        let vault = Arc::new(FileKeyVault::open(directory.path().join("keys")).unwrap());
        Decider::start(Arc::new(store), Arc::new(SystemClock), vault)
            .await
            .unwrap()
    });
    let next = Arc::new(AtomicU64::new(0));
    let envelope = move |command: Command, next: &AtomicU64| CommandEnvelope {
        expected_version: None,
        command_id: CommandId::new(format!("c{}", next.fetch_add(1, Ordering::Relaxed))).unwrap(),
        correlation_id: None,
        causation_id: None,
        actor: Actor {
            service: ServiceName::new("bench").unwrap(),
            on_behalf_of: None,
        },
        command,
    };
    runtime.block_on(async {
        let member = MemberId::new("m").unwrap();
        handle
            .execute(envelope(
                Command::RegisterMember(RegisterMember {
                    member_id: member,
                    handle: "m".into(),
                    personal_data: SealedPersonalData {
                        nonce: [0; 12],
                        ciphertext: Vec::new(),
                    },
                }),
                &next,
            ))
            .await
            .unwrap();
        handle
            .execute(envelope(
                Command::StartProject(StartProject {
                    project_id: ProjectId::new("p").unwrap(),
                    title: "p".into(),
                }),
                &next,
            ))
            .await
            .unwrap();
    });
    let mut group = c.benchmark_group("decider_durable_uploads");
    group.throughput(criterion::Throughput::Elements(COMMANDS_PER_ITERATION));
    for callers in [1u64, 10, 250] {
        group.bench_function(format!("{callers}_callers"), |b| {
            b.to_async(&runtime).iter(|| {
                let handle = handle.clone();
                let next = next.clone();
                async move {
                    let tasks = (0..callers).map(|_| {
                        let handle = handle.clone();
                        let next = next.clone();
                        async move {
                            for _ in 0..COMMANDS_PER_ITERATION / callers {
                                let id = next.load(Ordering::Relaxed);
                                let command = Command::UploadRecord(UploadRecord {
                                    record_id: RecordId::new(format!(
                                        "r{id}-{}",
                                        next.fetch_add(1, Ordering::Relaxed)
                                    ))
                                    .unwrap(),
                                    project_id: ProjectId::new("p").unwrap(),
                                    contributor: MemberId::new("m").unwrap(),
                                    kind: RecordKind::Audio,
                                    title: "a take".into(),
                                    media: MediaRef {
                                        blake3: [3; 32],
                                        size_bytes: 1_000,
                                    },
                                    licence_terms_version: "2026-01".into(),
                                });
                                handle.execute(envelope(command, &next)).await.unwrap();
                            }
                        }
                    });
                    futures::future::join_all(tasks).await;
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // The allocator set up as the `stemma` binary sets it up.
    config = {
        services::allocator::configure();
        Criterion::default().sample_size(20)
    };
    targets = cycle_check, line_rule, decider_throughput
}
criterion_main!(benches);
