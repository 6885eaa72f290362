//! Checking the hash chain: each event's stored hash against `blake3(previous ‖ body)`,
//! one by one (`chain::link`) and in batches (`chain::Links::link_many`, one event per
//! SIMD lane), over 16,384 events of 200–400 bytes, the size of the log's events.
//!
//! `cargo bench -p benches --bench chain`.

/// The allocator of the `stemma` binary, so the numbers are the ones it gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger::store::chain::{link, Links};
use ledger::store::Hash32;

const EVENTS: usize = 16_384;

fn bodies() -> (Vec<Hash32>, Vec<Vec<u8>>) {
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as usize
    };
    let previous = (0..EVENTS).map(|i| Hash32([i as u8; 32])).collect();
    let bodies = (0..EVENTS)
        .map(|i| (0..200 + next() % 200).map(|j| (i + j) as u8).collect())
        .collect();
    (previous, bodies)
}

fn chain(c: &mut Criterion) {
    let (previous, bodies) = bodies();
    let inputs: Vec<(&[u8; 32], &[u8])> = previous
        .iter()
        .zip(&bodies)
        .map(|(p, b)| (&p.0, b.as_slice()))
        .collect();
    let mut group = c.benchmark_group("chain_check_16384_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("link_one_by_one", |b| {
        b.iter(|| {
            for (p, body) in &inputs {
                black_box(link(&Hash32(**p), body));
            }
        })
    });
    // The batch size verify hands each worker.
    for batch in [64, 256] {
        let mut links = Links::default();
        let mut out = Vec::new();
        group.bench_function(format!("link_many_batches_of_{batch}"), |b| {
            b.iter(|| {
                for chunk in inputs.chunks(batch) {
                    links.link_many(chunk, &mut out);
                    black_box(&out);
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
    targets = chain
}
criterion_main!(benches);
