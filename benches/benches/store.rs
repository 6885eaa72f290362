//! The embedded store's durable appends and full reads, beside the disk's limit.
//!
//! - `durable_append/store/<n>`: `n` concurrent appenders (tokio tasks on a multi-thread runtime),
//!   each appending one event (payload `STEMMA_BENCH_PAYLOAD_BYTES`, default 300) per
//!   append and waiting until it is durable. One iteration is one event from each
//!   appender; throughput is events/s.
//! - `durable_append/raw/<n>`, run right after `store/<n>`: the same framed bytes, `n`
//!   records per `pwrite` + `fdatasync` to a preallocated, zero-filled file, and nothing
//!   else: what the disk allows for commits of `n` events.
//! - `store_read_all/<batch>`: the whole log of 1,000,000 events through `read_all` in
//!   batches of `batch` (the log is written once, before measuring; it is then in the page
//!   cache, so this measures decoding and copying, not the disk).
//! - `store_read_all_batch/<batch>`: the same log through `read_all_batch` into one reused
//!   `RecordBatch`, reading each event's type and payload in place.
//!
//! Besides criterion's estimates it prints, per benchmark, its own totals over every timed
//! iteration (warm-up included): events/s, commits (fsyncs) and events per commit. The
//! store's commits are counted with a clock that counts its calls: the writer reads the
//! clock once per group commit. After each store sample, the raw loop runs for as long
//! (untimed for criterion; `raw-paired`), and `RATIO` compares the two: fsync latency on a
//! shared machine drifts, and this pairs like with like.
//!
//! `cargo bench -p benches --bench store -- --noplot` (`STEMMA_BENCH_SKIP_READS=1` skips the
//! reads and the 1M-event log they need; `STEMMA_BENCH_DIR` sets where data goes).

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The appenders' client, as the examples `store_cpu` and `append_floor` run it.
#[path = "../examples/common/client.rs"]
#[allow(dead_code)] // `process_cpu_ns` is the examples'
mod client;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{framed_records, payload_bytes, CountingClock, RawLog};
use client::{next_request, runtime, temp_dir, template};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ledger::store::{AppendRequest, EmbeddedOptions, EmbeddedStore, EventStore, RecordBatch};

const CONCURRENCY: [usize; 3] = [1, 16, 256];
const READ_EVENTS: u64 = 1_000_000;
const READ_BATCHES: [usize; 2] = [4_096, 65_536];
const RAW_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One append of one event: what each benchmark appender sends.
fn one_event_append(command_id: &str, stream_id: &str, payload: &[u8]) -> AppendRequest {
    stemma_tests::append(
        command_id,
        &[],
        vec![stemma_tests::event(stream_id, payload)],
    )
}

/// Totals over every timed iteration of one benchmark.
#[derive(Default)]
struct Totals {
    events: u64,
    commits: u64,
    elapsed: Duration,
}

impl Totals {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        if self.events == 0 {
            return; // filtered out
        }
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "SUMMARY {name}: {} events in {:.3} s = {:.0} events/s; {} fsyncs = {:.0} fsyncs/s, \
             {:.1} events/fsync",
            self.events,
            seconds,
            self.events as f64 / seconds,
            self.commits,
            self.commits as f64 / seconds,
            self.events as f64 / self.commits.max(1) as f64,
        );
    }
}

fn durable_appends(c: &mut Criterion) {
    let runtime = runtime();
    let payload = vec![0x5a; payload_bytes()];
    let (records, frame_bytes) = framed_records(
        &runtime,
        temp_dir("frames").path(),
        template(0, &payload),
        *CONCURRENCY.iter().max().unwrap(),
    );
    println!(
        "payload {} bytes, framed record {frame_bytes} bytes",
        payload.len()
    );
    let raw_directory = temp_dir("raw");
    let mut raw = RawLog::create(&raw_directory.path().join("raw.log"), RAW_FILE_BYTES).unwrap();

    // Each store benchmark is followed at once by its raw baseline, so that both see the
    // same machine (fsync latency moves with whatever else writes to the disk).
    let mut group = c.benchmark_group("durable_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sampling_mode(SamplingMode::Flat);
    for appenders in CONCURRENCY {
        group.throughput(Throughput::Elements(appenders as u64));

        let directory = temp_dir("store-append");
        let clock = Arc::new(CountingClock::default());
        let options = EmbeddedOptions {
            clock: clock.clone(),
            ..EmbeddedOptions::default()
        };
        let store = Arc::new(
            runtime
                .block_on(EmbeddedStore::open(directory.path(), options))
                .unwrap()
                .0,
        );
        let next_command = Arc::new(AtomicU64::new(1_000_000));
        let bytes = &records[..appenders * frame_bytes];
        let mut totals = Totals::default();
        let mut paired_raw = Totals::default();
        group.bench_function(BenchmarkId::new("store", appenders), |b| {
            b.iter_custom(|iters| {
                let commits_before = clock.calls();
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|task| {
                            let (store, next_command, payload) =
                                (store.clone(), next_command.clone(), payload.clone());
                            tokio::spawn(async move {
                                let template = template(task, &payload);
                                for _ in 0..iters {
                                    let request = next_request(&template, &next_command);
                                    store.append(request).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    start.elapsed()
                });
                totals.events += iters * appenders as u64;
                totals.commits += clock.calls() - commits_before;
                totals.elapsed += elapsed;
                // Untimed for criterion: the raw loop for as long right after, so store and
                // disk are compared sample by sample on the same machine state.
                let mut raw_elapsed = Duration::ZERO;
                while raw_elapsed < elapsed {
                    raw_elapsed += raw.write_durably(bytes).unwrap();
                    paired_raw.events += appenders as u64;
                    paired_raw.commits += 1;
                }
                paired_raw.elapsed += raw_elapsed;
                elapsed
            })
        });
        totals.print(&format!("durable_append/store/{appenders}"));
        paired_raw.print(&format!("durable_append/raw-paired/{appenders}"));
        if totals.events > 0 {
            println!(
                "RATIO durable_append/{appenders}: store / raw loop (interleaved samples) = {:.2}",
                totals.rate() / paired_raw.rate()
            );
        }
        runtime.block_on(store.close());
        drop(store);
        drop(directory);

        // The same bytes, `appenders` records per pwrite + fdatasync.
        let mut totals = Totals::default();
        group.bench_function(BenchmarkId::new("raw", appenders), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    elapsed += raw.write_durably(bytes).unwrap();
                }
                totals.events += iters * appenders as u64;
                totals.commits += iters;
                totals.elapsed += elapsed;
                elapsed
            })
        });
        totals.print(&format!("durable_append/raw/{appenders}"));
    }
    group.finish();
}

fn full_reads(c: &mut Criterion) {
    // Writing the 1M-event log takes a while; skip it when profiling appends.
    if std::env::var_os("STEMMA_BENCH_SKIP_READS").is_some() {
        return;
    }
    let runtime = runtime();
    let payload = vec![0x5a; payload_bytes()];
    let directory = temp_dir("store-read");
    let prepare = Instant::now();
    let store = runtime.block_on(async {
        let store = Arc::new(
            EmbeddedStore::open(directory.path(), EmbeddedOptions::default())
                .await
                .unwrap()
                .0,
        );
        // 1,000 appends of 1,000 events, 4 at a time.
        let per_append = 1_000u64;
        let appends = READ_EVENTS / per_append;
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (store, payload) = (store.clone(), payload.clone());
                tokio::spawn(async move {
                    for a in (w..appends).step_by(4) {
                        let stream_id = format!("bench-{}", 100 + a % 64);
                        let mut request = one_event_append(&format!("b{a}"), &stream_id, &payload);
                        let proposed = request.events.pop().unwrap();
                        request.events = vec![proposed; per_append as usize];
                        store.append(request).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        store.close().await;
        drop(store);
        let reopen = Instant::now();
        let (store, report) = EmbeddedStore::open(directory.path(), EmbeddedOptions::default())
            .await
            .unwrap();
        println!(
            "read log: {} events in {} segments written in {:.1} s; open (full scan and \
             check) {:.2} s",
            report.head.position,
            report.segments,
            (reopen - prepare).as_secs_f64(),
            reopen.elapsed().as_secs_f64()
        );
        assert_eq!(report.head.position, READ_EVENTS);
        store
    });

    let mut group = read_group(c, "store_read_all");
    for batch in READ_BATCHES {
        let mut totals = Totals::default();
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut position = 1;
                        while position <= READ_EVENTS {
                            let events = store.read_all(position, batch).await.unwrap();
                            assert!(!events.is_empty());
                            position += events.len() as u64;
                        }
                    }
                    start.elapsed()
                });
                totals.events += iters * READ_EVENTS;
                totals.elapsed += elapsed;
                elapsed
            })
        });
        totals.print(&format!("store_read_all/{batch}"));
    }
    group.finish();

    let mut group = read_group(c, "store_read_all_batch");
    for batch_events in READ_BATCHES {
        let mut totals = Totals::default();
        let mut batch = RecordBatch::new();
        group.bench_function(BenchmarkId::from_parameter(batch_events), |b| {
            b.iter_custom(|iters| {
                let elapsed = runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut position = 1;
                        while position <= READ_EVENTS {
                            store
                                .read_all_batch(position, batch_events, &mut batch)
                                .await
                                .unwrap();
                            assert!(!batch.is_empty());
                            // What a consumer reads of each event, at the least.
                            for view in batch.iter() {
                                std::hint::black_box((view.event_type(), view.payload()));
                            }
                            position += batch.len() as u64;
                        }
                    }
                    start.elapsed()
                });
                totals.events += iters * READ_EVENTS;
                totals.elapsed += elapsed;
                elapsed
            })
        });
        totals.print(&format!("store_read_all_batch/{batch_events}"));
    }
    group.finish();
    runtime.block_on(store.close());
}

criterion_group! {
    name = benches;
    // The allocator set up as the `stemma` binary sets it up.
    config = {
        services::allocator::configure();
        Criterion::default()
    };
    targets = durable_appends, full_reads
}
criterion_main!(benches);

/// A group reading the whole log of `READ_EVENTS` per iteration; the two read paths are
/// measured alike.
fn read_group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(READ_EVENTS));
    group
}
