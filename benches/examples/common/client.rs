//! The durable-append examples' client, written once: `store_cpu` and `append_floor` put the
//! same appenders in front of the store and of the bare disk.

use std::sync::atomic::{AtomicU64, Ordering};

use benches::data_root;
use ledger::store::{AppendRequest, CommandId};

/// The runtime the appenders run on: tokio's default, one worker per core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A new directory under the benchmarks' data root, removed when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let root = data_root();
    std::fs::create_dir_all(&root).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .unwrap()
}

/// ns on CPU of this process, threads that have exited included (the one that zero-fills
/// the next segment ends once it is ready).
pub fn process_cpu_ns() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(status, 0, "getrusage");
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Appender `task`'s request, but for its command id: one event on a stream of its own.
pub fn template(task: usize, payload: &[u8]) -> AppendRequest {
    let stream_id = format!("bench-{}", 100 + task);
    stemma_tests::append("b0", &[], vec![stemma_tests::event(&stream_id, payload)])
}

/// The template with the next command id: what the client does per append.
pub fn next_request(template: &AppendRequest, next_command: &AtomicU64) -> AppendRequest {
    let n = next_command.fetch_add(1, Ordering::Relaxed);
    let mut request = template.clone();
    request.command_id = CommandId::new(format!("b{n}")).unwrap();
    request
}
