//! The read-only reader beside a running writer: it stops at the durable head the writer
//! publishes, not at the last commit that merely reached the page cache.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use ledger::store::embedded::snapshot::{LogSnapshot, ScanItem};
use ledger::store::embedded::{IoFaults, IoOperation};
use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore};
use stemma_tests::{append, event};

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: 64 * 1024,
        ..EmbeddedOptions::default()
    }
}

/// Once armed, holds the next commit between its `pwrite` and its `fdatasync`: says so on
/// `held`, then waits for `release`.
struct HoldSync {
    armed: Mutex<bool>,
    held: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl IoFaults for HoldSync {
    fn before(&self, operation: IoOperation) -> std::io::Result<()> {
        if operation != IoOperation::Sync {
            return Ok(());
        }
        let armed = std::mem::take(&mut *self.armed.lock().unwrap());
        if armed {
            self.held.lock().unwrap().send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        Ok(())
    }
}

/// The positions of the commits a scan hands out, and whether it reported a tail.
fn scan(snapshot: &LogSnapshot) -> (Vec<u64>, bool) {
    let mut positions = Vec::new();
    let mut tail = false;
    snapshot
        .scan(|item| {
            match item {
                ScanItem::Commit {
                    commit, complete, ..
                } => {
                    assert!(complete);
                    positions.extend(commit.first_position..=commit.last_position);
                }
                ScanItem::Tail { .. } => tail = true,
                ScanItem::Damage { kind, .. } => panic!("damage: {kind}"),
                ScanItem::Segment { .. } => {}
            }
            true
        })
        .unwrap();
    (positions, tail)
}

#[tokio::test]
async fn the_reader_stops_at_the_durable_head_not_at_a_written_unsynced_commit() {
    let directory = tempfile::tempdir().unwrap();
    let (held_sender, held) = channel();
    let (release, release_receiver) = channel();
    let faults = Arc::new(HoldSync {
        armed: Mutex::new(false),
        held: Mutex::new(held_sender),
        release: Mutex::new(release_receiver),
    });
    let options = EmbeddedOptions {
        faults: Some(faults.clone()),
        ..small_segments()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    store
        .append(append(
            "durable",
            &[],
            vec![event("s-1", b"a"), event("s-1", b"b")],
        ))
        .await
        .unwrap();

    *faults.armed.lock().unwrap() = true;
    let pending = store
        .submit(append(
            "written",
            &[],
            vec![event("s-2", b"c"), event("s-2", b"d"), event("s-2", b"e")],
        ))
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || held.recv().unwrap())
        .await
        .unwrap();

    // The commit is in the file, whole: a reader that trusted whole commits would count it.
    let snapshot = LogSnapshot::open(directory.path()).unwrap();
    assert_eq!(snapshot.durable_head, Some(2));
    let trusting = LogSnapshot {
        durable_head: None,
        ..snapshot.clone()
    };
    assert_eq!(scan(&trusting), (vec![1, 2, 3, 4, 5], false));
    assert_eq!(scan(&snapshot), (vec![1, 2], true));

    release.send(()).unwrap();
    let result = pending.await.unwrap();
    assert_eq!((result.first_position, result.last_position), (3, 5));
    let snapshot = LogSnapshot::open(directory.path()).unwrap();
    assert_eq!(snapshot.durable_head, Some(5));
    assert_eq!(scan(&snapshot), (vec![1, 2, 3, 4, 5], false));

    store.close().await;
    drop(store);
    // Reopened, the writer publishes the recovered head again.
    std::fs::remove_file(directory.path().join("HEAD")).unwrap();
    let (store, report) = EmbeddedStore::open(directory.path(), small_segments())
        .await
        .unwrap();
    assert_eq!(report.head.position, 5);
    assert_eq!(
        LogSnapshot::open(directory.path()).unwrap().durable_head,
        Some(5)
    );
    store.close().await;
}
