//! Benchmark support: what `benches/store.rs` needs besides the store itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
