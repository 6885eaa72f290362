//! Crash test with a real process: a child appends under load and is killed with SIGKILL
//! at random moments, repeatedly, on one data directory. After each kill the log must open
//! (recovery cuts only a torn tail) and hold every append the child acknowledged, at its
//! acknowledged positions, with intact hashes; every append in the log must be whole.
//!
//! The kill moments come from a seeded RNG: the seed is printed, and
//! `STEMMA_CRASH_SEED=<seed>` replays a run (`STEMMA_CRASH_ROUNDS` changes the rounds).

#[path = "../src/bin/crash_child.rs"]
#[allow(dead_code)]
mod crash_child;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use crash_child::{plan, request, splitmix64, Plan};
use ledger::store::chain::expected_hash;
use ledger::store::{
    AppendResult, EmbeddedStore, EventId, EventStore, Hash32, RecordedEvent, StoreError,
};
use ledger::time::Timestamp;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stemma_tests::{actor, stream};

const ROUNDS_DEFAULT: u32 = 20;
/// A round kills the child after 0 (at once, maybe while it opens) to this many acks.
const ACKS_PER_ROUND_MAX: u64 = 500;

/// An acknowledged append, as the child reported it.
#[derive(Clone, Debug)]
struct Ack {
    result: AppendResult,
    /// Each event's (stream, version).
    events: Vec<(String, u64)>,
}

/// Kills the child if the test fails while it runs.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_versions(text: &str) -> Vec<(String, u64)> {
    text.split(',')
        .map(|pair| {
            let (s, v) = pair.rsplit_once('@').expect("stream@version");
            (s.to_string(), v.parse().expect("a version"))
        })
        .collect()
}

/// Applies one line of the child's report.
fn take_line(
    line: &str,
    acks: &mut HashMap<String, Ack>,
    acked_order: &mut Vec<String>,
    rejected: &mut HashSet<String>,
) {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields[0] {
        "ready" => {}
        "ack" => {
            assert_eq!(fields.len(), 7, "bad ack line {line:?}");
            let id = fields[1].to_string();
            let ack = Ack {
                result: AppendResult {
                    first_position: fields[2].parse().unwrap(),
                    last_position: fields[3].parse().unwrap(),
                    recorded_at: Timestamp::from_unix_micros(fields[4].parse().unwrap()),
                    stream_versions: parse_versions(fields[6])
                        .into_iter()
                        .map(|(s, v)| (stream(&s), v))
                        .collect(),
                },
                events: parse_versions(fields[5]),
            };
            assert!(
                acks.insert(id.clone(), ack).is_none(),
                "{id} acknowledged twice"
            );
            acked_order.push(id);
        }
        "rej" => {
            rejected.insert(fields[1].to_string());
        }
        _ => panic!("unexpected line from the child: {line:?}"),
    }
}

/// Reads complete lines until `stop` says so or the pipe ends. A last line without its
/// newline (the child died while writing it) is not an acknowledgement.
fn read_lines(reader: &mut BufReader<ChildStdout>, mut on_line: impl FnMut(&str) -> bool) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .expect("reading the child's report");
        if read == 0 || !line.ends_with('\n') {
            return false;
        }
        if on_line(line.trim_end()) {
            return true;
        }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        splitmix64(&mut self.0) % n
    }
}

/// The `AppendResult` of the append whose events are `events`.
fn result_of(events: &[RecordedEvent]) -> AppendResult {
    let mut stream_versions: Vec<(ledger::store::StreamId, u64)> = Vec::new();
    for e in events {
        match stream_versions.iter_mut().find(|(s, _)| *s == e.stream_id) {
            Some((_, v)) => *v = e.stream_version,
            None => stream_versions.push((e.stream_id.clone(), e.stream_version)),
        }
    }
    AppendResult {
        first_position: events[0].position,
        last_position: events[events.len() - 1].position,
        stream_versions,
        recorded_at: events[0].recorded_at,
    }
}

/// Reads the whole log and checks it against everything acknowledged so far. Returns each
/// command's events.
async fn check_log(
    store: &EmbeddedStore,
    acks: &HashMap<String, Ack>,
    rejected: &HashSet<String>,
) -> HashMap<String, Vec<RecordedEvent>> {
    let head = store.head().await.unwrap();
    let mut commands: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
    let mut stream_versions: HashMap<String, u64> = HashMap::new();
    let mut previous_hash = Hash32::GENESIS;
    let mut previous_recorded_at = Timestamp::EPOCH;
    let mut open: Option<(String, Plan, usize)> = None; // the command being read, events seen
    let mut position = 1;
    while position <= head.position {
        let batch = store.read_all(position, 4096).await.unwrap();
        assert!(
            !batch.is_empty(),
            "read_all({position}) is empty below the head"
        );
        for e in batch {
            let id = e.command_id.as_str().to_string();
            let at = format!("position {} ({id})", e.position);
            assert_eq!(e.position, position, "positions are gap-free: {at}");
            assert_eq!(e.previous_hash, previous_hash, "hash link: {at}");
            assert_eq!(expected_hash(&e), e.hash, "hash of the content: {at}");
            assert!(e.recorded_at >= previous_recorded_at, "recorded_at: {at}");
            let version = stream_versions
                .entry(e.stream_id.as_str().to_string())
                .or_insert(0);
            *version += 1;
            assert_eq!(e.stream_version, *version, "stream versions: {at}");
            // Appends are atomic: each command's events are contiguous and complete.
            let continues = matches!(&open, Some((current, _, _)) if *current == id);
            if !continues {
                if let Some((previous, plan, seen)) = open.take() {
                    assert_eq!(
                        seen,
                        plan.events.len(),
                        "append {previous} is not whole: {seen} of its {} events are in the \
                         log, then {at}",
                        plan.events.len()
                    );
                }
                assert!(
                    !commands.contains_key(&id),
                    "command {id} appears twice: {at}"
                );
                let plan = plan(&id).unwrap_or_else(|| panic!("unknown command id: {at}"));
                open = Some((id.clone(), plan, 0));
            }
            let (_, plan, seen) = open.as_mut().unwrap();
            let k = *seen;
            *seen += 1;
            assert!(k < plan.events.len(), "too many events: {at}");
            let (planned_stream, planned_payload) = &plan.events[k];
            assert_eq!(e.stream_id.as_str(), planned_stream, "stream: {at}");
            assert_eq!(&e.payload, planned_payload, "payload: {at}");
            assert_eq!(e.event_id, EventId::derive(&e.command_id, k as u32), "{at}");
            assert_eq!(e.event_type.as_str(), "TestEvent", "{at}");
            assert_eq!(e.schema_version, 1, "{at}");
            assert_eq!(e.actor, actor(), "{at}");
            assert_eq!((&e.correlation_id, &e.causation_id), (&None, &None), "{at}");
            if let Some(ack) = acks.get(&id) {
                assert_eq!(
                    e.position,
                    ack.result.first_position + k as u64,
                    "acknowledged position: {at}"
                );
                assert_eq!(
                    (e.stream_id.as_str(), e.stream_version),
                    (ack.events[k].0.as_str(), ack.events[k].1),
                    "acknowledged stream version: {at}"
                );
                assert_eq!(e.recorded_at, ack.result.recorded_at, "{at}");
            }
            assert!(
                !rejected.contains(&id),
                "a refused append is in the log: {at}"
            );
            previous_hash = e.hash;
            previous_recorded_at = e.recorded_at;
            commands.entry(id).or_default().push(e);
            position += 1;
        }
    }
    if let Some((last, plan, seen)) = open {
        assert_eq!(
            seen,
            plan.events.len(),
            "the last append {last} is not whole: {seen} of its {} events are in the log",
            plan.events.len()
        );
    }
    assert_eq!(head.hash, previous_hash, "the head's hash");
    for (id, ack) in acks {
        let events = commands
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged append {id} ({:?}) is lost", ack.result));
        assert_eq!(&result_of(events), &ack.result, "{id}");
    }
    commands
}

/// Retries commands with the same content (they must get their original result) and one
/// with other content (refused).
async fn check_retries(
    store: &EmbeddedStore,
    round: u32,
    rng: &mut Rng,
    acked_order: &[String],
    acks: &HashMap<String, Ack>,
    commands: &HashMap<String, Vec<RecordedEvent>>,
) -> (usize, usize) {
    // Appends of the last run that are durable but were never acknowledged (the child died
    // between the fsync and its report): the retries a client that saw no answer makes.
    let last_run = format!("r{round}-");
    let mut ids: Vec<&String> = commands
        .keys()
        .filter(|id| id.starts_with(&last_run) && !acks.contains_key(*id))
        .collect();
    ids.sort();
    ids.truncate(4);
    let unacknowledged = ids.len();
    if !acked_order.is_empty() {
        for _ in 0..4 {
            ids.push(&acked_order[rng.below(acked_order.len() as u64) as usize]);
        }
    }
    let retried = ids.len();
    for id in ids {
        let plan = plan(id).unwrap();
        let original = result_of(&commands[id]);
        let result = store
            .append(request(id, &plan, vec![]))
            .await
            .unwrap_or_else(|e| panic!("retry of {id}: {e}"));
        assert_eq!(result, original, "a retry of {id} got another result");
        let mut other = plan.clone();
        other.events[0].1.push(0);
        match store.append(request(id, &other, vec![])).await {
            Err(StoreError::CommandIdReused {
                original_position, ..
            }) => assert_eq!(original_position, original.first_position, "{id}"),
            other => panic!("reusing {id} for other content: {other:?}"),
        }
    }
    (retried - unacknowledged, unacknowledged)
}

fn seed() -> u64 {
    match std::env::var("STEMMA_CRASH_SEED") {
        Ok(text) => text.parse().expect("STEMMA_CRASH_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn spawn_child(directory: &Path, run: u32) -> (ChildGuard, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .arg(directory)
        .arg(run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning crash_child");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), stdout)
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = seed();
    let rounds: u32 = std::env::var("STEMMA_CRASH_ROUNDS")
        .map(|r| r.parse().expect("STEMMA_CRASH_ROUNDS is a number"))
        .unwrap_or(ROUNDS_DEFAULT);
    println!("store_crash: seed {seed} (replay with STEMMA_CRASH_SEED={seed}), {rounds} rounds");
    let mut rng = Rng(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let mut acks: HashMap<String, Ack> = HashMap::new();
    let mut acked_order: Vec<String> = Vec::new();
    let mut rejected: HashSet<String> = HashSet::new();
    let (mut torn_tails, mut retries, mut unacknowledged_retries) = (0, 0, 0);
    for round in 0..rounds {
        // One round in ten kills the child at once, maybe while it opens and recovers.
        let kill_after = if rng.below(10) == 0 {
            0
        } else {
            1 + rng.below(ACKS_PER_ROUND_MAX)
        };
        let acks_before = acks.len();
        let (mut child, mut reader) = spawn_child(&data, round);
        let pid = Pid::from_raw(child.0.id() as i32);
        if kill_after > 0 {
            let mut seen = 0;
            let mut checked_lock = round != 0;
            let reached = read_lines(&mut reader, |line| {
                if !checked_lock && line.starts_with("ready") {
                    // While the child runs, nobody else may open its directory.
                    let opened =
                        runtime.block_on(EmbeddedStore::open(&data, crash_child::options()));
                    assert!(
                        matches!(opened, Err(StoreError::Locked(_))),
                        "a second open while the child runs: {:?}",
                        opened.map(|(_, report)| report)
                    );
                    checked_lock = true;
                }
                take_line(line, &mut acks, &mut acked_order, &mut rejected);
                if line.starts_with("ack") {
                    seen += 1;
                }
                seen == kill_after
            });
            assert!(
                reached,
                "round {round}: the child stopped before {kill_after} acks: {:?}",
                child.0.wait()
            );
        }
        kill(pid, Signal::SIGKILL).expect("SIGKILL");
        // Lines the child wrote before it died were acknowledged too.
        read_lines(&mut reader, |line| {
            take_line(line, &mut acks, &mut acked_order, &mut rejected);
            false
        });
        let status = child.0.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(Signal::SIGKILL as i32),
            "round {round}: the child ended by itself: {status:?}"
        );
        runtime.block_on(async {
            let (store, report) = EmbeddedStore::open(&data, crash_child::options())
                .await
                .unwrap_or_else(|e| panic!("round {round}: open after SIGKILL failed: {e}"));
            torn_tails += usize::from(report.torn_tail.is_some());
            let commands = check_log(&store, &acks, &rejected).await;
            let (acked, unacked) =
                check_retries(&store, round, &mut rng, &acked_order, &acks, &commands).await;
            retries += acked;
            unacknowledged_retries += unacked;
            println!(
                "round {round}: killed after {kill_after} acks ({} new), head {}, {} segments, \
                 torn tail {:?}",
                acks.len() - acks_before,
                report.head.position,
                report.segments,
                report.torn_tail.map(|t| (t.offset, t.bytes_discarded)),
            );
            store.close().await;
        });
    }
    println!(
        "store_crash: {} acks over {rounds} rounds, {} refused, {torn_tails} torn tails cut, \
         {retries} retries of acknowledged appends, {unacknowledged_retries} of durable \
         unacknowledged ones",
        acks.len(),
        rejected.len()
    );
    assert!(
        acks.len() >= 100,
        "too few acknowledged appends to mean much"
    );
}
