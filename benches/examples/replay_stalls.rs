//! The longest single steps of the decider's state as it grows: the log of a data directory
//! replayed as the decider rebuilds it (decode each event, `evolve` the state, record the
//! command's result), timing each event's `evolve` and each result's insert on their own.
//! Growing by doubling shows as a few steps thousands of times longer than the rest: with
//! one command at a time, every such step is a pause of every command behind it.
//!
//! `cargo run --release -p benches --example replay_stalls -- <data directory> [events]`
//! (the store's lock is taken: not while `stemma serve` runs on it). Prints the replay's
//! time, the worst steps of each kind with their positions, and the peak RSS.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use ledger::domain::{evolve, DomainEvent, State};
use ledger::sharded::ShardedMap;
use ledger::store::{CommandId, EmbeddedOptions, EmbeddedStore, EventStore, Position, RecordBatch};

/// What the decider keeps per command (`decider::Known`): the same size.
#[allow(dead_code)] // written only: its size is the point
struct Known {
    fingerprint: Option<u128>,
    first_position: Position,
    last_position: Position,
}

/// The `N` longest steps seen, longest first.
struct Worst<const N: usize>(Vec<(Duration, Position)>);

impl<const N: usize> Worst<N> {
    fn new() -> Self {
        Worst(Vec::with_capacity(N + 1))
    }

    fn see(&mut self, took: Duration, position: Position) {
        if self.0.len() == N && took <= self.0[N - 1].0 {
            return;
        }
        let at = self.0.partition_point(|(longer, _)| *longer >= took);
        self.0.insert(at, (took, position));
        self.0.truncate(N);
    }

    fn show(&self) -> String {
        self.0
            .iter()
            .map(|(took, position)| format!("{:.1} ms @{position}", took.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    services::allocator::configure();
    let mut args = std::env::args().skip(1);
    let directory = args.next().expect("a data directory");
    let events_max: u64 = args.next().map_or(u64::MAX, |a| a.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _) = EmbeddedStore::open(&directory, EmbeddedOptions::default())
            .await
            .unwrap();
        let mut state = State::new();
        let mut known: ShardedMap<CommandId, Known> = ShardedMap::default();
        let (mut worst_evolve, mut worst_known) = (Worst::<5>::new(), Worst::<5>::new());
        let mut batch = RecordBatch::default();
        let mut next: Position = 1;
        let mut replayed = 0u64;
        let start = Instant::now();
        while replayed < events_max {
            store.read_all_batch(next, 4_096, &mut batch).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for view in batch.iter() {
                let event =
                    DomainEvent::decode(view.event_type(), view.schema_version(), view.payload())
                        .unwrap();
                let step = Instant::now();
                evolve(&mut state, &event);
                worst_evolve.see(step.elapsed(), view.position());
                // The id as the decider gets it, made outside the timed step.
                let command_id = CommandId::new(view.command_id()).unwrap();
                let position = view.position();
                let step = Instant::now();
                known.upsert(
                    command_id,
                    |entry| entry.last_position = position,
                    || Known {
                        fingerprint: view.command_fingerprint(),
                        first_position: position,
                        last_position: position,
                    },
                );
                worst_known.see(step.elapsed(), position);
                next = position + 1;
                replayed += 1;
            }
        }
        println!(
            "REPLAY {replayed} events in {:.2} s; {} command results; peak RSS {} MiB",
            start.elapsed().as_secs_f64(),
            known.len(),
            peak_rss_kib() / 1024,
        );
        println!("worst evolve: {}", worst_evolve.show());
        println!("worst result insert: {}", worst_known.show());
        store.close().await;
    });
}
