//! The crash test's child process (see `tests/tests/store_crash.rs`).
//!
//! `crash_child <data-directory> <run>` opens an embedded store with small segments and
//! appends from many concurrent tasks until it is killed. After each acknowledged append it
//! writes one line to stdout and flushes it:
//!
//! ```text
//! ready <head>
//! ack <command> <first> <last> <recorded_at> <stream@version,…> <stream@version,…>
//! rej <command> <error>
//! ```
//!
//! `ack` names, in order, each event's stream and version, then the `AppendResult`'s
//! `stream_versions`. `rej` is an append refused for a wrong expected version (only the
//! `hot` stream is contended). Command ids are `r<run>-t<task>-<i>`, and everything an
//! append writes (streams, payloads) is a pure function of its command id (`plan`), so the
//! parent can recompute and check every event in the log, acknowledged or not.
//!
//! The parent includes this file as a module to share `plan`, so everything it needs is
//! `pub` and `main` is only an entry point.

use std::io::Write;
use std::sync::Arc;

use ledger::store::{
    AppendRequest, AppendResult, EmbeddedOptions, EmbeddedStore, EventStore, ExpectedVersion,
    StoreError, StreamExpectation,
};
use stemma_tests::{actor, command, event, stream};

/// Concurrent appenders.
pub const TASKS: u32 = 32;
/// Small, so that the test rolls to new segments.
pub const SEGMENT_SIZE_BYTES: u64 = 256 * 1024;

pub fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        ..EmbeddedOptions::default()
    }
}

pub fn command_id(run: u32, task: u32, i: u64) -> String {
    format!("r{run}-t{task}-{i}")
}

/// The stream only task `task` writes (in every run), with `Exact` expectations.
pub fn own_stream(task: u32) -> String {
    format!("own-t{task}")
}

pub const HOT_STREAM: &str = "hot";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One event to the task's own stream, `Exact`.
    Own,
    /// One event to a shared stream (no expectation), with an `Exact` expectation on the
    /// task's own stream, which it does not write.
    SharedReading,
    /// 2–5 events over the own stream and shared streams; submitted twice concurrently
    /// (the duplicate must get the same result).
    Mixed,
    /// 8–40 events to the own stream (several pages: a torn write can split it).
    Big,
    /// One event to the contended `hot` stream, `Exact` of a version read just before:
    /// may be refused.
    Hot,
}

/// What a command id appends: its kind, and each event's stream and payload.
#[derive(Clone, Debug)]
pub struct Plan {
    pub task: u32,
    pub kind: Kind,
    pub events: Vec<(String, Vec<u8>)>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn payload(hash: u64, k: usize) -> Vec<u8> {
    let mut state = hash ^ (k as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let len = 64 + (splitmix64(&mut state) % 320) as usize;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The plan of a command id made by `command_id`; `None` for any other string.
pub fn plan(command_id: &str) -> Option<Plan> {
    let mut parts = command_id.split('-');
    let _run: u32 = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let task: u32 = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let _i: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || task >= TASKS {
        return None;
    }
    let mut state = fnv1a(command_id.as_bytes());
    let hash = splitmix64(&mut state);
    let choice = splitmix64(&mut state);
    let shared = |k: u64| format!("shared-{}", (choice >> 8).wrapping_add(k) % 4);
    let own = own_stream(task);
    let (kind, streams): (Kind, Vec<String>) = match hash % 8 {
        0..=3 => (Kind::Own, vec![own]),
        4 => (Kind::SharedReading, vec![shared(0)]),
        5 => {
            let n = 2 + choice % 4;
            let streams = (0..n)
                .map(|k| if k % 2 == 0 { own.clone() } else { shared(k) })
                .collect();
            (Kind::Mixed, streams)
        }
        6 => (Kind::Big, vec![own; 8 + (choice % 33) as usize]),
        _ => (Kind::Hot, vec![HOT_STREAM.to_string()]),
    };
    let events = streams
        .into_iter()
        .enumerate()
        .map(|(k, stream_id)| (stream_id, payload(hash, k)))
        .collect();
    Some(Plan { task, kind, events })
}

/// The append of `command_id` with these expectations.
pub fn request(
    command_id: &str,
    plan: &Plan,
    expectations: Vec<(String, ExpectedVersion)>,
) -> AppendRequest {
    AppendRequest {
        command_id: command(command_id),
        correlation_id: None,
        causation_id: None,
        actor: actor(),
        expectations: expectations
            .into_iter()
            .map(|(stream_id, expected)| StreamExpectation {
                stream_id: stream(&stream_id),
                expected,
            })
            .collect(),
        events: plan
            .events
            .iter()
            .map(|(stream_id, payload)| event(stream_id, payload))
            .collect(),
    }
}

/// Each event's (stream, version), given the append's result: a stream's events in one
/// append take consecutive versions ending at the version the result names.
pub fn event_versions(plan: &Plan, result: &AppendResult) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(plan.events.len());
    for (k, (stream_id, _)) in plan.events.iter().enumerate() {
        let last = result
            .stream_versions
            .iter()
            .find(|(s, _)| s.as_str() == stream_id)
            .map(|(_, v)| *v)
            .expect("every written stream is in the result");
        let after = plan.events[k + 1..]
            .iter()
            .filter(|(s, _)| s == stream_id)
            .count() as u64;
        out.push((stream_id.clone(), last - after));
    }
    out
}

fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The parent is gone: stop.
    if stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn join_versions(versions: &[(String, u64)]) -> String {
    versions
        .iter()
        .map(|(s, v)| format!("{s}@{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn appender(store: Arc<EmbeddedStore>, run: u32, task: u32) {
    let own = own_stream(task);
    let mut own_version = store.stream_version(&stream(&own)).await.unwrap();
    for i in 0u64.. {
        let id = command_id(run, task, i);
        let plan = plan(&id).expect("a planned command id");
        let expectations = match plan.kind {
            Kind::Hot => {
                let hot = store.stream_version(&stream(HOT_STREAM)).await.unwrap();
                vec![(HOT_STREAM.to_string(), ExpectedVersion::Exact(hot))]
            }
            _ => vec![(own.clone(), ExpectedVersion::Exact(own_version))],
        };
        let request = request(&id, &plan, expectations);
        let outcome = if plan.kind == Kind::Mixed {
            let first = store.submit(request.clone()).await.unwrap();
            let second = store.submit(request).await.unwrap();
            let (first, second) = futures::join!(first, second);
            let (first, second) = (first.unwrap(), second.unwrap());
            assert_eq!(
                first, second,
                "{id}: a concurrent duplicate got another result"
            );
            Ok(first)
        } else {
            store.append(request).await
        };
        match outcome {
            Ok(result) => {
                let versions = event_versions(&plan, &result);
                if let Some((_, v)) = result
                    .stream_versions
                    .iter()
                    .find(|(s, _)| s.as_str() == own)
                {
                    own_version = *v;
                }
                let stream_versions: Vec<(String, u64)> = result
                    .stream_versions
                    .iter()
                    .map(|(s, v)| (s.to_string(), *v))
                    .collect();
                report(&format!(
                    "ack {id} {} {} {} {} {}\n",
                    result.first_position,
                    result.last_position,
                    result.recorded_at.unix_micros(),
                    join_versions(&versions),
                    join_versions(&stream_versions),
                ));
            }
            Err(error @ StoreError::WrongExpectedVersion { .. }) if plan.kind == Kind::Hot => {
                report(&format!("rej {id} {error}\n"));
            }
            Err(error) => panic!("{id}: unexpected error: {error}"),
        }
    }
}

#[tokio::main]
pub async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(directory), Some(run)) = (args.next(), args.next()) else {
        eprintln!("usage: crash_child <data-directory> <run>");
        std::process::exit(2);
    };
    let run: u32 = run.parse().expect("run is a number");
    // A failed assertion in any appender ends the process, so the parent sees it at once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(3);
    }));
    let (store, report_on_open) = EmbeddedStore::open(&directory, options())
        .await
        .expect("the store opens");
    let store = Arc::new(store);
    report(&format!("ready {}\n", report_on_open.head.position));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| tokio::spawn(appender(store.clone(), run, task)))
        .collect();
    for task in tasks {
        task.await
            .expect("appenders run until the process is killed");
    }
}
