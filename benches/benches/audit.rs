//! `audit::verify` throughput on a generated log: chain only, and chain + semantic replay.
//!
//! The log (`STEMMA_BENCH_AUDIT_EVENTS`, default 1,000,000 events) is a production with a
//! stream of members registering, uploading records, the records included and commented
//! on, and revenue coming in; written once through the import path (`LogWriter`), so
//! generating it costs no fsync per commit. Each iteration verifies the whole log; the
//! log is in the page cache after the first, so this measures CPU, not the disk.
//!
//! Besides criterion's estimates it prints events/s of a single timed run and the peak
//! resident memory of that run (`VmHWM`, reset through `/proc/self/clear_refs` first).
//!
//! `cargo bench -p benches --bench audit -- --noplot` (`STEMMA_BENCH_DIR` sets where the
//! log goes). `STEMMA_BENCH_AUDIT_LOG=DIR` keeps the log in `DIR` and reuses it when it is
//! there already (generating 10,000,000 events takes minutes), and
//! `STEMMA_BENCH_AUDIT_PLAIN=1` runs only the plain timed runs, not criterion's loop: for
//! comparing two builds on the same log; `STEMMA_BENCH_AUDIT_ONLY=chain` (or `semantic`)
//! runs only that pass, and `STEMMA_BENCH_AUDIT_WORKERS=N` only that many workers (0: one
//! per core, the command line's default), for a profiler.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use benches::data_root;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ledger::audit::{self, VerifyOptions};
use ledger::domain::events::*;
use ledger::domain::ids::*;
use ledger::money::{ArtistShare, Currency, Money};
use ledger::store::embedded::import::LogWriter;
use ledger::store::{
    codec, Actor, CommandId, EventId, EventType, Hash32, RecordedEvent, ServiceName, StreamId,
};
use ledger::time::Timestamp;

const EVENTS_DEFAULT: u64 = 1_000_000;
/// Events per command (one commit each) in the generated log.
const EVENTS_PER_COMMAND: u64 = 100;
const SEGMENT_SIZE_BYTES: u64 = 128 * 1024 * 1024;

fn events_wanted() -> u64 {
    std::env::var("STEMMA_BENCH_AUDIT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS_DEFAULT)
}

/// The domain event at index `i` of the generated history.
fn event_at(i: u64) -> DomainEvent {
    let production = ProductionId::new("pr").unwrap();
    if i == 0 {
        return ProjectStarted {
            project_id: ProjectId::new("p").unwrap(),
            title: "The generated project".into(),
        }
        .into();
    }
    if i == 1 {
        return ProductionOpened {
            production_id: production,
            project_id: ProjectId::new("p").unwrap(),
            title: "The generated production".into(),
            currency: Currency::USD,
            artist_share: ArtistShare::half(),
            feedback_window_micros: 14 * 86_400 * 1_000_000,
        }
        .into();
    }
    let n = (i - 2) / 5;
    let member = MemberId::new(format!("member-{n:08}")).unwrap();
    let record = RecordId::new(format!("record-{n:08}")).unwrap();
    match (i - 2) % 5 {
        0 => MemberRegistered {
            member_id: member,
            handle: format!("@member{n}"),
            personal_data: SealedPersonalData {
                nonce: [7; 12],
                ciphertext: vec![0xab; 64],
            },
        }
        .into(),
        1 => RecordUploaded {
            record_id: record,
            project_id: ProjectId::new("p").unwrap(),
            contributor: member,
            kind: RecordKind::Audio,
            title: format!("A loop number {n}"),
            media: MediaRef {
                blake3: [n as u8; 32],
                size_bytes: 1_000_000,
            },
            licence: Licence {
                terms_version: "2026-01".into(),
            },
        }
        .into(),
        2 => RecordIncluded {
            production_id: production,
            record_id: record,
        }
        .into(),
        3 => CommentPosted {
            comment_id: CommentId::new(format!("comment-{n:08}")).unwrap(),
            author: member,
            staff: false,
            target: CommentTarget::Record(record),
            reply_to: None,
            body: "I love how the bass line comes in on the second verse.".into(),
        }
        .into(),
        _ => RevenueRecorded {
            production_id: production,
            amount: Money::parse("12.34", Currency::USD).unwrap(),
            description: "streaming revenue".into(),
        }
        .into(),
    }
}

/// Writes the generated log into `directory` (which must be new).
fn generate(directory: &Path, events: u64) {
    let mut writer = LogWriter::create(directory, SEGMENT_SIZE_BYTES).unwrap();
    let mut previous = Hash32::GENESIS;
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let actor = Actor {
        service: ServiceName::new("gateway").unwrap(),
        on_behalf_of: None,
    };
    for i in 0..events {
        let proposed = event_at(i).to_proposed();
        let command_id = CommandId::new(format!("cmd-{}", i / EVENTS_PER_COMMAND)).unwrap();
        let version = versions.entry(proposed.stream_id.clone()).or_insert(0);
        *version += 1;
        let mut event = RecordedEvent {
            position: i + 1,
            stream_id: proposed.stream_id,
            stream_version: *version,
            event_id: EventId::derive(&command_id, (i % EVENTS_PER_COMMAND) as u32),
            event_type: EventType::new(proposed.event_type.as_str()).unwrap(),
            schema_version: proposed.schema_version,
            recorded_at: Timestamp::from_unix_seconds(1_767_225_600 + i as i64),
            command_id,
            command_fingerprint: Some(u128::from(i / EVENTS_PER_COMMAND)),
            correlation_id: None,
            causation_id: None,
            actor: actor.clone(),
            payload: proposed.payload,
            previous_hash: previous,
            hash: Hash32::GENESIS,
        };
        codec::encode_and_hash(&mut event);
        previous = event.hash;
        writer.push(event).unwrap();
    }
    writer.finish().unwrap();
}

fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn reset_peak_resident() {
    // "5" resets the peak resident set size (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn verify_once(log: &Path, semantic: bool, workers: usize) -> audit::VerifyReport {
    audit::verify(
        log,
        VerifyOptions {
            semantic,
            checkpoint: None,
            workers,
        },
        &mut |_| {},
    )
    .unwrap()
}

fn bench_verify(c: &mut Criterion) {
    services::allocator::configure();
    let events = events_wanted();
    let root = data_root();
    std::fs::create_dir_all(&root).unwrap();
    let directory = tempfile::tempdir_in(&root).unwrap();
    let log = match std::env::var_os("STEMMA_BENCH_AUDIT_LOG") {
        Some(kept) => std::path::PathBuf::from(kept),
        None => directory.path().join("audit-log"),
    };
    if log.join("segments").is_dir() {
        eprintln!("reusing the log in {}", log.display());
    } else {
        let started = Instant::now();
        generate(&log, events);
        eprintln!(
            "generated {events} events in {:.1} s ({} MiB of segments)",
            started.elapsed().as_secs_f64(),
            dir_bytes(&log.join("segments")) / (1024 * 1024)
        );
    }
    let only = std::env::var("STEMMA_BENCH_AUDIT_ONLY").ok();
    for (name, semantic) in [("chain", false), ("semantic", true)] {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let workers_wanted: Vec<usize> = match std::env::var("STEMMA_BENCH_AUDIT_WORKERS") {
            Ok(workers) => vec![workers
                .parse()
                .expect("STEMMA_BENCH_AUDIT_WORKERS: a number")],
            Err(_) => vec![1, 0],
        };
        for workers in workers_wanted {
            // Plain runs first: events/s, CPU time and peak memory, outside criterion's
            // loop. CPU time is the steadier number on a shared, busy machine.
            reset_peak_resident();
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let report = verify_once(&log, semantic, workers);
            let elapsed = started.elapsed();
            let cpu = cpu_seconds() - cpu_before;
            assert!(
                report.is_clean(),
                "{:#?}",
                &report.findings[..report.findings.len().min(5)]
            );
            assert_eq!(report.events, events);
            let workers = if workers == 0 {
                "auto".to_string()
            } else {
                workers.to_string()
            };
            eprintln!(
                "verify/{name} workers={workers}: {events} events in {:.2} s = {:.0} events/s wall, \
                 {cpu:.2} s CPU = {:.0} events per CPU-second, peak RSS {} MiB",
                elapsed.as_secs_f64(),
                events as f64 / elapsed.as_secs_f64(),
                events as f64 / cpu,
                peak_resident_kib().unwrap_or(0) / 1024
            );
        }
    }
    if std::env::var_os("STEMMA_BENCH_AUDIT_PLAIN").is_some() {
        return;
    }
    let mut group = c.benchmark_group("audit_verify");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(events));
    // One worker: the steadier figure on a shared machine (the plain runs above give the
    // command line's default, one worker per core, too).
    group.bench_function("chain", |b| b.iter(|| verify_once(&log, false, 1)));
    group.bench_function("semantic", |b| b.iter(|| verify_once(&log, true, 1)));
    group.finish();
}

fn dir_bytes(directory: &Path) -> u64 {
    std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
