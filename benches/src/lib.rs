//! Benchmark support: what the store benchmarks (`benches/store.rs`,
//! `examples/store_cpu.rs`, `examples/append_floor.rs`) need besides the store itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger::store::codec::{self, CommitRange};
use ledger::store::{
    AppendRequest, CommandId, EmbeddedOptions, EmbeddedStore, EventId, EventStore, Hash32,
};
use ledger::time::{Clock, SystemClock, Timestamp};

/// The system clock, counting its calls. The embedded writer reads the clock exactly once
/// per group commit (to stamp `recorded_at`), so the count is the number of commits, and
/// with every append accepted, the number of `fdatasync`s of commits.
#[derive(Debug, Default)]
pub struct CountingClock {
    calls: AtomicU64,
}

impl CountingClock {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Clock for CountingClock {
    fn now(&self) -> Timestamp {
        self.calls.fetch_add(1, Ordering::Relaxed);
        SystemClock.now()
    }
}

/// Where benchmark data goes: `STEMMA_BENCH_DIR`, else cargo's target tmp directory (on the
/// project's disk; /tmp may be tmpfs).
pub fn data_root() -> PathBuf {
    match std::env::var_os("STEMMA_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp"),
    }
}

/// Payload bytes of the benchmark's events (`STEMMA_BENCH_PAYLOAD_BYTES`, default 300).
pub fn payload_bytes() -> usize {
    std::env::var("STEMMA_BENCH_PAYLOAD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// The disk's limit: writes of a batch of records to a preallocated, zero-filled file with
/// `pwrite` + `fdatasync` and nothing else, wrapping to the start at the end of the file.
pub struct RawLog {
    file: File,
    size_bytes: u64,
    offset: u64,
}

impl RawLog {
    /// Creates `path`: `size_bytes` of zeroes, fsync'd (like a store segment).
    pub fn create(path: &Path, size_bytes: u64) -> std::io::Result<RawLog> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let zeroes = vec![0u8; 1 << 20];
        let mut written = 0;
        while written < size_bytes {
            let chunk = (size_bytes - written).min(zeroes.len() as u64) as usize;
            file.write_all(&zeroes[..chunk])?;
            written += chunk as u64;
        }
        file.sync_all()?;
        Ok(RawLog {
            file,
            size_bytes,
            offset: 0,
        })
    }

    /// One durable write of `bytes`; returns how long it took.
    pub fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<Duration> {
        if self.offset + bytes.len() as u64 > self.size_bytes {
            self.offset = 0;
        }
        let start = Instant::now();
        self.file.write_all_at(bytes, self.offset)?;
        self.file.sync_data()?;
        let elapsed = start.elapsed();
        self.offset += bytes.len() as u64;
        Ok(elapsed)
    }
}

/// `count` framed records as the embedded store writes them for one-event appends like
/// `first` (one event, one stream), with ids, positions and versions like the benchmarks',
/// back to back (the raw loop's bytes), and the size of one. The template record is one
/// the store wrote: `first`, appended to a new store in `directory`.
pub fn framed_records(
    runtime: &tokio::runtime::Runtime,
    directory: &Path,
    first: AppendRequest,
    count: usize,
) -> (Vec<u8>, usize) {
    let mut template = runtime.block_on(async {
        let (store, _) = EmbeddedStore::open(directory, EmbeddedOptions::default())
            .await
            .unwrap();
        store.append(first).await.unwrap();
        let events = store.read_all(1, 1).await.unwrap();
        store.close().await;
        events.into_iter().next().unwrap()
    });
    let first_position = 1_000_000;
    let range = CommitRange {
        first_position,
        last_position: first_position + count as u64 - 1,
    };
    let mut out = Vec::new();
    let mut previous_hash = Hash32::GENESIS;
    let mut frame_bytes = 0;
    for i in 0..count as u64 {
        template.position = first_position + i;
        template.stream_version = 10_000 + i;
        template.command_id = CommandId::new(format!("b{}", first_position + i)).unwrap();
        template.event_id = EventId::derive(&template.command_id, 0);
        template.previous_hash = previous_hash;
        let body = codec::encode_and_hash(&mut template);
        previous_hash = template.hash;
        let before = out.len();
        codec::append_frame(&mut out, range, &body);
        frame_bytes = out.len() - before;
    }
    (out, frame_bytes)
}
