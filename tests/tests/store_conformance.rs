//! The conformance suite against the embedded store, on a real file system. Small
//! segments make every check roll across several segment files.

use std::future::Future;
use std::sync::Arc;

use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore};
use stemma_tests::conformance;

async fn with_store<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let directory = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        segment_size_bytes: 16 * 1024,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory.path(), options.clone())
        .await
        .unwrap();
    let store = Arc::new(store);
    check(store.clone()).await;
    // Whatever the check wrote reopens intact.
    let head = store.head().await.unwrap();
    store.close().await;
    drop(store);
    let (reopened, report) = EmbeddedStore::open(directory.path(), options)
        .await
        .unwrap();
    assert_eq!(report.head, head);
    assert_eq!(report.torn_tail, None);
    conformance::read_everything(&reopened).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_reads() {
    with_store(conformance::appends_and_reads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_versions_are_enforced() {
    with_store(conformance::expected_versions_are_enforced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectations_on_read_streams_and_atomicity() {
    with_store(conformance::expectations_on_read_streams_and_atomicity).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_ids_are_idempotent() {
    with_store(conformance::command_ids_are_idempotent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_write_once() {
    with_store(conformance::concurrent_duplicates_write_once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_appends_write_nothing() {
    with_store(conformance::invalid_appends_write_nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_catch_up_then_go_live() {
    with_store(conformance::subscriptions_catch_up_then_go_live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders() {
    with_store(conformance::concurrent_appenders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_reads_match_read_all() {
    with_store(conformance::batch_reads_match_read_all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_subscriptions_catch_up_then_go_live() {
    with_store(conformance::batch_subscriptions_catch_up_then_go_live).await;
}
