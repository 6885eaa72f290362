//! The most any store behind this interface could do with `n` concurrent appenders: the
//! durable-append benchmark's client (the same tasks, building the same requests, each
//! waiting for its answer before the next append), in front of a "store" that does nothing
//! but the raw loop's disk work. Each append goes over a channel to one committer thread,
//! which waits until every appender's request has arrived (the ideal group: as many events
//! per commit as the raw loop has), writes that many framed records with one `pwrite` +
//! `fdatasync` to a preallocated, zero-filled file, and answers them. No deciding, encoding,
//! hashing or indexing at all.
//!
//! It then runs the raw loop (the same bytes, same batch size, nothing in front) for as
//! long, alternating rounds of both, and prints the ratio `floor / raw`: the ceiling of
//! `store / raw` in `durable_append` for this machine, whatever the store does.
//!
//! `cargo run --release -p benches --example append_floor -- [appenders] [appends each]
//! [rounds]` (defaults 256, 2,000, 3). Answers go back two ways, each measured:
//! `direct` (the committer thread completes each reply channel) and `runtime` (it hands the
//! whole group to one task on the runtime, which answers them: what the store does).

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/client.rs"]
mod client;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{framed_records, payload_bytes, RawLog};
use client::{next_request, process_cpu_ns, runtime, temp_dir, template};
use ledger::store::AppendRequest;
use tokio::sync::{mpsc, oneshot};

const RAW_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One append in flight: the request (freed where the store would free it, after the
/// answer) and where its answer goes.
struct Append {
    request: AppendRequest,
    reply: oneshot::Sender<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answers {
    Direct,
    Runtime,
}

struct Run {
    events: u64,
    commits: u64,
    elapsed: Duration,
    cpu_ns: u64,
}

/// What every run shares.
struct Setup {
    appenders: usize,
    appends_each: u64,
    /// `appenders` framed records back to back, and the size of one.
    records: Arc<Vec<u8>>,
    frame_bytes: usize,
    payload: Vec<u8>,
}

/// One run: the appenders against the committer thread, which answers `answers` and
/// commits once at least `gather_at_least` appends (and then whatever else waits) have
/// arrived. The raw log is lent to the committer and handed back.
fn floor_run(
    runtime: &tokio::runtime::Runtime,
    setup: &Setup,
    raw: RawLog,
    answers: Answers,
    gather_at_least: usize,
) -> (Run, RawLog) {
    let Setup {
        appenders,
        appends_each,
        frame_bytes,
        ..
    } = *setup;
    let records = setup.records.clone();
    let payload = &setup.payload;
    let (sender, mut receiver) = mpsc::unbounded_channel::<Append>();
    let (answer_sender, mut answer_receiver) = mpsc::unbounded_channel::<Vec<Append>>();
    let answerer = runtime.spawn(async move {
        while let Some(group) = answer_receiver.recv().await {
            for append in group {
                let _ = append.reply.send(7);
                drop(append.request);
            }
        }
    });
    let committer = std::thread::Builder::new()
        .name("floor-committer".into())
        .spawn(move || {
            let mut raw = raw;
            let mut commits = 0u64;
            let mut group = Vec::with_capacity(appenders);
            loop {
                let mut closed = false;
                while group.len() < gather_at_least.max(1) {
                    match receiver.blocking_recv() {
                        Some(append) => group.push(append),
                        None => {
                            closed = true;
                            break;
                        }
                    }
                }
                while group.len() < appenders {
                    match receiver.try_recv() {
                        Ok(append) => group.push(append),
                        Err(_) => break,
                    }
                }
                if !group.is_empty() {
                    raw.write_durably(&records[..group.len() * frame_bytes])
                        .unwrap();
                    commits += 1;
                    match answers {
                        Answers::Direct => {
                            for append in group.drain(..) {
                                let _ = append.reply.send(7);
                            }
                        }
                        Answers::Runtime => {
                            let full = std::mem::replace(&mut group, Vec::with_capacity(appenders));
                            answer_sender.send(full).unwrap();
                        }
                    }
                }
                if closed {
                    return (raw, commits);
                }
            }
        })
        .unwrap();
    let next_command = Arc::new(AtomicU64::new(1_000_000));
    let cpu_before = process_cpu_ns();
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|task| {
                let (sender, next_command, payload) =
                    (sender.clone(), next_command.clone(), payload.to_vec());
                tokio::spawn(async move {
                    let template = template(task, &payload);
                    for _ in 0..appends_each {
                        let request = next_request(&template, &next_command);
                        let (reply, answer) = oneshot::channel();
                        sender.send(Append { request, reply }).unwrap();
                        std::hint::black_box(answer.await.unwrap());
                    }
                })
            })
            .collect();
        drop(sender);
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = start.elapsed();
    let cpu_ns = process_cpu_ns() - cpu_before;
    let (raw, commits) = committer.join().unwrap();
    runtime.block_on(answerer).unwrap();
    let run = Run {
        events: appenders as u64 * appends_each,
        commits,
        elapsed,
        cpu_ns,
    };
    (run, raw)
}

fn main() {
    services::allocator::configure();
    let mut args = std::env::args().skip(1);
    let appenders: usize = args.next().map_or(256, |a| a.parse().unwrap());
    let appends_each: u64 = args.next().map_or(2_000, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(3, |a| a.parse().unwrap());
    let runtime = runtime();
    let directory = temp_dir("append-floor");
    let payload = vec![0x5a; payload_bytes()];
    let frames_directory = directory.path().join("frames");
    let (records, frame_bytes) = framed_records(
        &runtime,
        &frames_directory,
        template(0, &payload),
        appenders,
    );
    let setup = Setup {
        appenders,
        appends_each,
        records: Arc::new(records),
        frame_bytes,
        payload,
    };
    let mut raw = RawLog::create(&directory.path().join("raw.log"), RAW_FILE_BYTES).unwrap();
    println!(
        "payload {} bytes, framed record {frame_bytes} bytes",
        setup.payload.len()
    );
    for round in 0..rounds {
        for (answers, gather_at_least) in [
            (Answers::Direct, appenders),
            (Answers::Runtime, appenders),
            (Answers::Direct, 1),
            (Answers::Runtime, 1),
        ] {
            let (run, back) = floor_run(&runtime, &setup, raw, answers, gather_at_least);
            raw = back;
            // The raw loop right after, for as long: the same machine state.
            let bytes = &setup.records[..appenders * frame_bytes];
            let (mut raw_events, mut raw_elapsed) = (0u64, Duration::ZERO);
            let raw_cpu_before = process_cpu_ns();
            while raw_elapsed < run.elapsed {
                raw_elapsed += raw.write_durably(bytes).unwrap();
                raw_events += appenders as u64;
            }
            let raw_cpu_ns = process_cpu_ns() - raw_cpu_before;
            let floor_rate = run.events as f64 / run.elapsed.as_secs_f64();
            let raw_rate = raw_events as f64 / raw_elapsed.as_secs_f64();
            println!(
                "FLOOR round={round} answers={answers:?} gather={gather_at_least} \
                 appenders={appenders}: \
                 {floor_rate:.0} events/s, {:.1} events/commit, CPU {:.0} ns/event | raw loop \
                 {raw_rate:.0} events/s, CPU {:.0} ns/event | floor / raw = {:.2}",
                run.events as f64 / run.commits.max(1) as f64,
                run.cpu_ns as f64 / run.events as f64,
                raw_cpu_ns as f64 / raw_events as f64,
                floor_rate / raw_rate,
            );
        }
    }
}
