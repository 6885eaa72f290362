//! CPU time per durable append, by thread: what the store costs, apart from the disk and
//! from how busy the machine is (wall-clock throughput on a shared machine mostly measures
//! the neighbours; CPU time per event does not).
//!
//! `cargo run --release -p benches --example store_cpu -- [appenders] [appends each]`
//! (defaults 256 and 2,000; `STEMMA_BENCH_DIR` sets where data goes: a tmpfs takes the
//! disk out entirely). Prints ns of CPU per event for the builder (`stemma-writer`), the
//! syncer and the whole process, and events per commit; and, measured first in the same
//! run, the client's own share: the same tasks building the same requests and dropping
//! them instead of appending (`client=`); and the longest any one append took
//! (`worst_append=`: a stall of the publish path shows there).

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/client.rs"]
mod client;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use benches::{payload_bytes, CountingClock};
use client::{next_request, process_cpu_ns, runtime, temp_dir, template};
use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore};

/// ns on CPU of each of this process's threads named `name`, summed.
fn thread_cpu_ns(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let schedstat = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

fn main() {
    services::allocator::configure();
    let mut args = std::env::args().skip(1);
    let appenders: usize = args.next().map_or(256, |a| a.parse().unwrap());
    let appends_each: u64 = args.next().map_or(2_000, |a| a.parse().unwrap());
    let runtime = runtime();
    let directory = temp_dir("store-cpu");
    let payload = vec![0x5a; payload_bytes()];
    let clock = Arc::new(CountingClock::default());
    let options = EmbeddedOptions {
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    runtime.block_on(async {
        let store = Arc::new(
            EmbeddedStore::open(directory.path(), options)
                .await
                .unwrap()
                .0,
        );
        let next_command = Arc::new(AtomicU64::new(1_000_000));
        let client_before = process_cpu_ns();
        let tasks: Vec<_> = (0..appenders)
            .map(|task| {
                let (next_command, payload) = (next_command.clone(), payload.clone());
                tokio::spawn(async move {
                    let template = template(task, &payload);
                    for _ in 0..appends_each {
                        std::hint::black_box(next_request(&template, &next_command));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let client_ns = process_cpu_ns() - client_before;
        let (builder_before, syncer_before, all_before, commits_before) = (
            thread_cpu_ns("stemma-writer"),
            thread_cpu_ns("stemma-syncer"),
            process_cpu_ns(),
            clock.calls(),
        );
        let worst_ns = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|task| {
                let (store, next_command, payload, worst_ns) = (
                    store.clone(),
                    next_command.clone(),
                    payload.clone(),
                    worst_ns.clone(),
                );
                tokio::spawn(async move {
                    let template = template(task, &payload);
                    let mut worst = 0;
                    for _ in 0..appends_each {
                        let request = next_request(&template, &next_command);
                        let appended = Instant::now();
                        store.append(request).await.unwrap();
                        worst = worst.max(appended.elapsed().as_nanos() as u64);
                    }
                    worst_ns.fetch_max(worst, Ordering::Relaxed);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = start.elapsed();
        let events = appenders as u64 * appends_each;
        let per_event = |ns: u64| ns as f64 / events as f64;
        let commits = clock.calls() - commits_before;
        println!(
            "CPU appenders={appenders} events={events} wall={:.2}s ({:.0} events/s) \
             events/commit={:.1} ns/event: builder={:.0} syncer={:.0} process={:.0} \
             client={:.0} worst_append={:.1}ms",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            events as f64 / commits.max(1) as f64,
            per_event(thread_cpu_ns("stemma-writer") - builder_before),
            per_event(thread_cpu_ns("stemma-syncer") - syncer_before),
            per_event(process_cpu_ns() - all_before),
            per_event(client_ns),
            worst_ns.load(Ordering::Relaxed) as f64 / 1e6,
        );
        store.close().await;
    });
}
