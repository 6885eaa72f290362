//! The read side at scale.
//!
//! 1. Family tree walks on a generated tree of 1,000,000 records and ~3,000,000 links:
//!    ancestors and descendants at depth ≤ 10 and up to 10,000 records (criterion), plus
//!    p50/p99/max latencies over random records for node limits from 100 to 100,000,
//!    printed before criterion runs (criterion reports means), with the records visited.
//! 2. Rebuild throughput of all four projections from a generated embedded log
//!    (`STEMMA_BENCH_EVENTS`, 1,000,000 by default) with the process's peak memory during
//!    the rebuild (VmHWM, reset through /proc/self/clear_refs before it starts).
//!
//! `cargo bench -p benches --bench projections`. Generators are seeded: runs compare.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use ledger::domain::events::*;
use ledger::domain::ids::*;
use ledger::money::{split_pool, ArtistShare, Currency, Money, Weight};
use ledger::store::{
    Actor, AppendRequest, CommandId, EmbeddedOptions, EmbeddedStore, EventStore, RecordBatch,
    ServiceName,
};
use ledger::time::Timestamp;
use projections::family_tree::{Direction, FamilyTree};
use projections::{AppliedEvent, Catalog, Projection, ReadModels, WalkLimits};

const RECORDS: usize = 1_000_000;
const WALK_DEPTH_MAX: u32 = 10;
/// The node limit of the walk benchmarks: a caller showing a family would ask for no more.
const WALK_NODES_MAX: usize = 10_000;

/// SplitMix64: small, deterministic.
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
        (self.next() % n.max(1) as u64) as usize
    }
}

fn record_id(i: usize) -> RecordId {
    RecordId::new(format!("r{i}")).unwrap()
}

fn member_id(i: usize) -> MemberId {
    MemberId::new(format!("m{i}")).unwrap()
}

fn media() -> MediaRef {
    MediaRef {
        blake3: [7; 32],
        size_bytes: 4_096,
    }
}

fn licence() -> Licence {
    Licence {
        terms_version: "2026-01".into(),
    }
}

/// Up to `max` distinct sources for record `i`: mostly among the 1,000 before it (remix
/// chains), one in ten anywhere older.
fn sources(random: &mut Random, i: usize, count: usize) -> Vec<usize> {
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        if i == 0 {
            break;
        }
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

fn upload(i: usize, contributor: usize, sources: Vec<usize>) -> DomainEvent {
    let project_id = ProjectId::new("p0").unwrap();
    if sources.is_empty() {
        RecordUploaded {
            record_id: record_id(i),
            project_id,
            contributor: member_id(contributor),
            kind: RecordKind::Audio,
            title: format!("piece {i}"),
            media: media(),
            licence: licence(),
        }
        .into()
    } else {
        RemixUploaded {
            record_id: record_id(i),
            project_id,
            contributor: member_id(contributor),
            kind: RecordKind::Audio,
            title: format!("piece {i}"),
            media: media(),
            licence: licence(),
            sources: sources.into_iter().map(record_id).collect(),
        }
        .into()
    }
}

/// 1,000,000 records: one in twenty an original, the rest remixes of 1–5 records (about
/// 3 on average); then late citations up to 3,000,000 links in all.
fn family_tree() -> FamilyTree {
    let catalog = Catalog::new();
    let mut tree = FamilyTree::new(catalog.clone());
    let mut random = Random(7);
    let mut position = 0;
    let mut apply = |tree: &mut FamilyTree, event: DomainEvent| {
        position += 1;
        let mut applied = AppliedEvent::new(
            position,
            Timestamp::EPOCH,
            ledger::store::Hash32::GENESIS,
            event,
        );
        catalog.resolve(std::slice::from_mut(&mut applied));
        tree.apply(&applied);
    };
    for i in 0..RECORDS {
        let count = if random.below(20) == 0 {
            0
        } else {
            1 + random.below(5)
        };
        let sources = sources(&mut random, i, count);
        apply(&mut tree, upload(i, i % 50_000, sources));
    }
    while tree.link_count() < 3 * RECORDS {
        let record = 1 + random.below(RECORDS - 1);
        let source = sources(&mut random, record, 1)[0];
        apply(
            &mut tree,
            SourceCited {
                record_id: record_id(record),
                source_id: record_id(source),
            }
            .into(),
        );
    }
    tree
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    )
}

/// This thread's CPU time: unlike wall time, it does not count the time the thread was
/// descheduled, which on a machine shared with other work dominates a wall-clock p99.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Wall and CPU time of `f` on each record.
struct Latencies {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall {}; CPU {}",
            percentiles(self.wall.clone()),
            percentiles(self.cpu.clone())
        )
    }
}

fn time_each(records: &[RecordId], mut f: impl FnMut(&RecordId)) -> Latencies {
    let mut latencies = Latencies {
        wall: Vec::with_capacity(records.len()),
        cpu: Vec::with_capacity(records.len()),
    };
    for record in records {
        let cpu = thread_cpu_time();
        let start = Instant::now();
        f(record);
        latencies.wall.push(start.elapsed());
        latencies.cpu.push(thread_cpu_time() - cpu);
    }
    latencies
}

fn walks(c: &mut Criterion) {
    let started = Instant::now();
    let before = current_rss_bytes().unwrap_or(0);
    let tree = family_tree();
    println!(
        "family tree: {} records, {} links, built in {:.1?}, resident {:.0} MiB",
        tree.record_count(),
        tree.link_count(),
        started.elapsed(),
        current_rss_bytes().unwrap_or(0).saturating_sub(before) as f64 / 1_048_576.0
    );
    let limits = WalkLimits::new(WALK_DEPTH_MAX, WALK_NODES_MAX);
    let mut random = Random(11);
    // Each sample: a uniformly random record, depth ≤ 10, the node limit shown. Three ways
    // to answer, each timed from the record's id to the finished answer:
    // - `nodes`: the walk alone (`lineage_nodes`: node ids and depths);
    // - `ids`: the walk, then every record's id borrowed as `&str` (what a server needs
    //   to copy into its response);
    // - `owned`: `ancestors`/`descendants` as the query API returns them, a `RecordId`
    //   (an owned, checked `String`) per record.
    for (name, nodes_max, samples) in [
        ("100", 100, 20_000),
        ("1,000", 1_000, 20_000),
        ("10,000", WALK_NODES_MAX, 5_000),
        ("100,000", WalkLimits::NODES_MAX, 200),
    ] {
        let limits = WalkLimits::new(WALK_DEPTH_MAX, nodes_max);
        for direction in [Direction::Ancestors, Direction::Descendants] {
            // Each way gets its own pass over the same records: a record walked a moment
            // ago would be answered from warm caches, which a random query never is.
            let records: Vec<RecordId> = (0..samples)
                .map(|_| record_id(random.below(RECORDS)))
                .collect();
            let mut visited = 0usize;
            let mut truncated = 0usize;
            let nodes = time_each(&records, |record| {
                let walk = tree
                    .lineage_nodes(record.as_str(), limits, direction)
                    .unwrap();
                visited += walk.nodes.len();
                truncated += usize::from(walk.truncated);
                black_box(walk);
            });
            let ids = time_each(&records, |record| {
                let walk = tree
                    .lineage_nodes(record.as_str(), limits, direction)
                    .unwrap();
                let bytes: usize = tree.with_names(|names| {
                    walk.nodes
                        .iter()
                        .map(|(node, depth)| names.record(*node).len() + *depth as usize)
                        .sum()
                });
                black_box(bytes);
            });
            let owned = time_each(&records, |record| {
                black_box(match direction {
                    Direction::Ancestors => tree.ancestors(record, limits),
                    Direction::Descendants => tree.descendants(record, limits),
                });
            });
            println!(
                "{direction:?} depth ≤ 10, ≤ {name} records: {} visited on average, {:.0}% \
                 truncated by a limit\n  nodes: {}\n  ids:   {}\n  owned: {}",
                visited / samples,
                100.0 * truncated as f64 / samples as f64,
                nodes,
                ids,
                owned,
            );
        }
    }
    let mut group = c.benchmark_group("family_tree_1m_records");
    group.bench_function("ancestors_depth_10_nodes_10000", |b| {
        b.iter(|| black_box(tree.ancestors(&record_id(random.below(RECORDS)), limits)))
    });
    group.bench_function("descendants_depth_10_nodes_10000", |b| {
        b.iter(|| black_box(tree.descendants(&record_id(random.below(RECORDS)), limits)))
    });
    group.bench_function("sources_and_remixes", |b| {
        b.iter(|| {
            let record = record_id(random.below(RECORDS));
            black_box((tree.sources(&record), tree.remixes(&record)))
        })
    });
    group.finish();
}

/// A realistic mix: members, records and remixes with 1–3 sources, citations, comments,
/// productions with inclusions, money, and distributions taken through proposal, comments,
/// finalization and payouts.
struct LogGenerator {
    random: Random,
    members: usize,
    records: usize,
    /// Record → contributor.
    contributors: Vec<usize>,
    comments: usize,
    productions: usize,
    /// The open production's included records and money.
    included: Vec<usize>,
    revenue_cents: i64,
}

impl LogGenerator {
    fn new() -> LogGenerator {
        LogGenerator {
            random: Random(3),
            members: 0,
            records: 0,
            contributors: Vec::new(),
            comments: 0,
            productions: 0,
            included: Vec::new(),
            revenue_cents: 0,
        }
    }

    fn production_id(&self) -> ProductionId {
        ProductionId::new(format!("pr{}", self.productions)).unwrap()
    }

    fn usd(cents: i64) -> Money {
        Money::from_minor_units(cents, Currency::USD)
    }

    /// The next few events (a distribution's life comes as one burst).
    fn next(&mut self, out: &mut Vec<DomainEvent>) {
        if self.members < 100 {
            self.member(out);
            if self.members == 1 {
                out.push(
                    ProjectStarted {
                        project_id: ProjectId::new("p0").unwrap(),
                        title: "the community".into(),
                    }
                    .into(),
                );
                self.open_production(out);
            }
            return;
        }
        match self.random.below(100) {
            0..=4 => self.member(out),
            5..=19 => self.record(out, 0),
            20..=54 => {
                let count = 1 + self.random.below(3);
                self.record(out, count)
            }
            55..=57 => {
                let record = self.random.below(self.records);
                let source = sources(&mut self.random, record, 1);
                if let Some(source) = source.first() {
                    out.push(
                        SourceCited {
                            record_id: record_id(record),
                            source_id: record_id(*source),
                        }
                        .into(),
                    );
                }
            }
            58..=79 => {
                self.comments += 1;
                out.push(
                    CommentPosted {
                        comment_id: CommentId::new(format!("k{}", self.comments)).unwrap(),
                        author: member_id(self.random.below(self.members)),
                        staff: false,
                        target: CommentTarget::Record(record_id(self.random.below(self.records))),
                        reply_to: None,
                        body: "love the bass line in the second half".into(),
                    }
                    .into(),
                );
            }
            80..=93 => {
                let record = self.records - 1 - self.random.below(self.records.min(5_000));
                if !self.included.contains(&record) {
                    self.included.push(record);
                    out.push(
                        RecordIncluded {
                            production_id: self.production_id(),
                            record_id: record_id(record),
                        }
                        .into(),
                    );
                }
            }
            94..=96 => {
                let cents = 100_000 + self.random.below(5_000_000) as i64;
                self.revenue_cents += cents;
                out.push(
                    RevenueRecorded {
                        production_id: self.production_id(),
                        amount: Self::usd(cents),
                        description: "streaming".into(),
                    }
                    .into(),
                );
            }
            97 => out.push(
                ExpenseRecorded {
                    production_id: self.production_id(),
                    amount: Self::usd(10_000),
                    description: "mastering".into(),
                }
                .into(),
            ),
            _ => {
                if self.included.len() >= 20 && self.revenue_cents > 0 {
                    self.distribution(out);
                }
            }
        }
    }

    fn member(&mut self, out: &mut Vec<DomainEvent>) {
        out.push(
            MemberRegistered {
                member_id: member_id(self.members),
                handle: format!("@m{}", self.members),
                personal_data: SealedPersonalData {
                    nonce: [1; 12],
                    ciphertext: vec![9; 80],
                },
            }
            .into(),
        );
        self.members += 1;
    }

    fn record(&mut self, out: &mut Vec<DomainEvent>, count: usize) {
        let i = self.records;
        let contributor = self.random.below(self.members);
        let sources = sources(&mut self.random, i, count);
        out.push(upload(i, contributor, sources));
        self.contributors.push(contributor);
        self.records += 1;
    }

    fn open_production(&mut self, out: &mut Vec<DomainEvent>) {
        self.productions += 1;
        self.included.clear();
        self.revenue_cents = 0;
        out.push(
            ProductionOpened {
                production_id: self.production_id(),
                project_id: ProjectId::new("p0").unwrap(),
                title: format!("episode {}", self.productions),
                currency: Currency::USD,
                artist_share: ArtistShare::half(),
                feedback_window_micros: 1_000_000,
            }
            .into(),
        );
    }

    /// Proposal (one line per contributor of an included record), two comments and a
    /// staff reply, finalization, payouts and their settlement; then the next production.
    fn distribution(&mut self, out: &mut Vec<DomainEvent>) {
        let distribution_id = DistributionId::new(format!("d{}", self.productions)).unwrap();
        let mut lines: Vec<Line> = Vec::new();
        for record in &self.included {
            let member = member_id(self.contributors[*record]);
            match lines.iter_mut().find(|l| l.member == member) {
                Some(line) if line.records.len() < 16 => line.records.push(record_id(*record)),
                Some(_) => {}
                None => lines.push(Line {
                    member,
                    weight: Weight::parse(&format!("{}", 1 + record % 4)).unwrap(),
                    rationale: "in the final cut".into(),
                    records: vec![record_id(*record)],
                }),
            }
        }
        let lines: Vec<Line> = lines.into_iter().take(400).collect();
        let pool = Self::usd(self.revenue_cents / 2);
        out.push(
            AllocationProposed {
                distribution_id: distribution_id.clone(),
                production_id: self.production_id(),
                revenue_total: Self::usd(self.revenue_cents),
                expense_total: Self::usd(0),
                earlier_pools: Self::usd(0),
                pool,
                published_at: Timestamp::EPOCH,
                window_closes_at: Timestamp(1_000_000),
                line_count: lines.len() as u32,
                lines: lines.clone(),
            }
            .into(),
        );
        for staff in [false, true] {
            self.comments += 1;
            out.push(
                CommentPosted {
                    comment_id: CommentId::new(format!("k{}", self.comments)).unwrap(),
                    author: lines[0].member.clone(),
                    staff,
                    target: CommentTarget::Line {
                        distribution_id: distribution_id.clone(),
                        member: lines[0].member.clone(),
                    },
                    reply_to: staff
                        .then(|| CommentId::new(format!("k{}", self.comments - 1)).unwrap()),
                    body: "why this weight?".into(),
                }
                .into(),
            );
        }
        let weights: Vec<Weight> = lines.iter().map(|l| l.weight).collect();
        let amounts = split_pool(pool, &weights);
        out.push(
            AllocationFinalized {
                distribution_id: distribution_id.clone(),
                pool,
                amounts: amounts.clone(),
            }
            .into(),
        );
        for (line, amount) in lines.iter().zip(&amounts) {
            let payout_id = PayoutId::for_line(&distribution_id, &line.member);
            out.push(
                PayoutIssued {
                    payout_id: payout_id.clone(),
                    member: line.member.clone(),
                    amount: *amount,
                    payout_for: PayoutFor::Line {
                        distribution_id: distribution_id.clone(),
                    },
                }
                .into(),
            );
            out.push(
                PayoutSettled {
                    payout_id,
                    attempt: 1,
                    reference: "tx".into(),
                }
                .into(),
            );
        }
        self.open_production(out);
    }
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User + system CPU seconds of this process or thread (`/proc/self/stat`,
/// `/proc/thread-self/stat`), in clock ticks of 10 ms. On a shared machine wall time
/// swings with the other load; the CPU time a phase took swings much less, so the bench
/// prints both.
fn cpu_seconds(stat: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f`, returning its wall time and the CPU time the calling thread spent in it.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, f64) {
    let cpu = cpu_seconds("/proc/thread-self/stat");
    let started = Instant::now();
    let value = f();
    let wall = started.elapsed();
    (value, wall, cpu_seconds("/proc/thread-self/stat") - cpu)
}

async fn breakdown(store: &Arc<EmbeddedStore>, head: u64) {
    // The batch read first, into one reused batch: what the runner reads through.
    let batch_cpu = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    let mut next = 1;
    let mut batch = RecordBatch::new();
    while next <= head {
        store.read_all_batch(next, 4_096, &mut batch).await.unwrap();
        for view in batch.iter() {
            black_box((view.event_type(), view.payload()));
        }
        next = batch.last_position().unwrap() + 1;
    }
    let batch_read = started.elapsed();
    let batch_cpu = cpu_seconds("/proc/self/stat") - batch_cpu;
    drop(batch);
    let read_cpu = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    let mut next = 1;
    let mut recorded = Vec::with_capacity(head as usize);
    while next <= head {
        let events = store.read_all(next, 4_096).await.unwrap();
        next = events.last().unwrap().position + 1;
        recorded.extend(events);
    }
    let read = started.elapsed();
    let read_cpu = cpu_seconds("/proc/self/stat") - read_cpu;
    let (mut owned, decode, decode_cpu) = timed(|| {
        recorded
            .iter()
            .map(|event| AppliedEvent::decode(event).unwrap())
            .collect::<Vec<AppliedEvent>>()
    });
    drop(recorded);
    let owned_catalog = Catalog::new();
    let ((), resolve, resolve_cpu) = timed(|| {
        for chunk in owned.chunks_mut(1_024) {
            owned_catalog.resolve(chunk);
        }
    });
    drop(owned_catalog);
    drop(owned);
    // The runner's path: read in batches, decode in place (the ids of most events
    // borrowed) and number the ids at once, for all four models.
    let catalog = Catalog::new();
    let runner_cpu = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    let mut decoded = Vec::with_capacity(head as usize);
    let mut next = 1;
    let mut batch = RecordBatch::new();
    while next <= head {
        store.read_all_batch(next, 4_096, &mut batch).await.unwrap();
        let mut views = batch.iter();
        while decoded.len() < (next as usize - 1) + batch.len() {
            catalog
                .decode_views(views.by_ref().take(1_024), &mut decoded)
                .unwrap();
        }
        next = batch.last_position().unwrap() + 1;
    }
    let runner_path = started.elapsed();
    let runner_cpu = cpu_seconds("/proc/self/stat") - runner_cpu;
    drop(batch);
    let rate = |elapsed: Duration| head as f64 / elapsed.as_secs_f64();
    let per_event = |cpu: f64| cpu * 1e9 / head as f64;
    println!(
        "read_all_batch only: {:.0} events/s ({:.0} ns CPU/event); read_all only (kept): \
         {:.0} events/s ({:.0} ns CPU/event); owned decode only: {:.0} events/s ({:.0} ns \
         CPU/event), then resolve ids: {:.0} events/s ({:.0} ns CPU/event); the runner's \
         read, in-place decode and resolve: {:.0} events/s ({:.0} ns CPU/event)",
        rate(batch_read),
        per_event(batch_cpu),
        rate(read),
        per_event(read_cpu),
        rate(decode),
        per_event(decode_cpu),
        rate(resolve),
        per_event(resolve_cpu),
        rate(runner_path),
        per_event(runner_cpu)
    );
    fn apply_alone<P: Projection>(catalog: &Catalog, events: &[AppliedEvent]) -> (Duration, f64) {
        let ((), wall, cpu) = timed(|| {
            let mut model = P::new(catalog.clone());
            for event in events {
                model.apply(event);
            }
            black_box(&model);
        });
        (wall, cpu)
    }
    let models = [
        ("family_tree", apply_alone::<FamilyTree>(&catalog, &decoded)),
        (
            "allocations",
            apply_alone::<projections::allocation::Allocations>(&catalog, &decoded),
        ),
        (
            "credits",
            apply_alone::<projections::credits::Credits>(&catalog, &decoded),
        ),
        (
            "statements",
            apply_alone::<projections::statement::Statements>(&catalog, &decoded),
        ),
    ];
    let line: Vec<String> = models
        .iter()
        .map(|(name, (wall, cpu))| {
            format!(
                "{name} {:.0}/s ({:.0} ns CPU)",
                rate(*wall),
                per_event(*cpu)
            )
        })
        .collect();
    println!("apply alone, per event: {}", line.join(", "));
    drop(decoded);
}

fn rebuild_throughput() {
    let events_total: usize = std::env::var("STEMMA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // `STEMMA_BENCH_LOG_DIR` keeps the generated log between runs (generating 10M
        // events takes longer than rebuilding from them); a log already there is reused.
        let temporary = tempfile::tempdir().unwrap();
        let directory = std::env::var_os("STEMMA_BENCH_LOG_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| temporary.path().to_path_buf());
        let (store, _) = EmbeddedStore::open(&directory, EmbeddedOptions::default())
            .await
            .unwrap();
        let store = Arc::new(store);
        let reused = store.head().await.unwrap().position;
        let events_total = if reused > 0 { 0 } else { events_total };
        let started = Instant::now();
        let mut generator = LogGenerator::new();
        let mut pending = Vec::new();
        let mut written = 0usize;
        let mut batch = Vec::new();
        let actor = Actor {
            service: ServiceName::new("bench").unwrap(),
            on_behalf_of: None,
        };
        while written < events_total {
            while batch.len() < 1_000 {
                generator.next(&mut batch);
            }
            let events: Vec<_> = batch.drain(..).map(|e| e.to_proposed()).collect();
            written += events.len();
            let request = AppendRequest {
                command_fingerprint: None,
                command_id: CommandId::new(format!("g{written}")).unwrap(),
                correlation_id: None,
                causation_id: None,
                actor: actor.clone(),
                expectations: Vec::new(),
                events,
            };
            pending.push(store.submit(request).await.unwrap());
            if pending.len() >= 64 {
                for append in pending.drain(..) {
                    append.await.unwrap();
                }
            }
        }
        for append in pending.drain(..) {
            append.await.unwrap();
        }
        let head = store.head().await.unwrap().position;
        println!(
            "generated log: {head} events ({} members, {} records, {} productions) in {:.1?}",
            generator.members,
            generator.records,
            generator.productions,
            started.elapsed()
        );

        // Reading alone, then decoding, then each model's apply alone, for where time goes
        // (skipped on large logs: it holds every decoded event in memory).
        if head <= 2_000_000 && std::env::var_os("STEMMA_BENCH_NO_BREAKDOWN").is_none() {
            breakdown(&store, head).await;
        }

        // Reset the peak so it measures the rebuild, not the generator.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = current_rss_bytes().unwrap_or(0);
        let cpu = cpu_seconds("/proc/self/stat");
        let started = Instant::now();
        let models = ReadModels::start(store.clone(), None).await;
        // Queries wait at most `QUERY_WAIT_MAX` each: ask again until caught up.
        let wait = Duration::from_secs(60);
        while models.family_tree.query(head, wait, |_| ()).await.is_err() {}
        while models.allocations.query(head, wait, |_| ()).await.is_err() {}
        while models.credits.query(head, wait, |_| ()).await.is_err() {}
        while models.statements.query(head, wait, |_| ()).await.is_err() {}
        let elapsed = started.elapsed();
        let cpu = cpu_seconds("/proc/self/stat") - cpu;
        let peak = peak_rss_bytes().unwrap_or(0);
        println!(
            "rebuild of all 4 projections: {head} events in {elapsed:.2?} = {:.0} events/s, \
             {:.0} ns CPU/event (all threads); peak RSS {:.0} MiB (RSS before {:.0} MiB)",
            head as f64 / elapsed.as_secs_f64(),
            cpu * 1e9 / head as f64,
            peak as f64 / 1_048_576.0,
            before as f64 / 1_048_576.0,
        );
        let sizes: Vec<(&str, usize)> = vec![
            (
                "family_tree",
                models.family_tree.query_now(|m| m.encode().len()).value,
            ),
            (
                "allocations",
                models.allocations.query_now(|m| m.encode().len()).value,
            ),
            (
                "credits",
                models.credits.query_now(|m| m.encode().len()).value,
            ),
            (
                "statements",
                models.statements.query_now(|m| m.encode().len()).value,
            ),
        ];
        println!("snapshot sizes (bytes): {sizes:?}");
        models.stop().await;
        store.close().await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = walks
}

fn main() {
    // The allocator set up as the `stemma` binary sets it up.
    services::allocator::configure();
    if std::env::var_os("STEMMA_BENCH_WALKS_ONLY").is_none() {
        rebuild_throughput();
    }
    if std::env::var_os("STEMMA_BENCH_REBUILD_ONLY").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
