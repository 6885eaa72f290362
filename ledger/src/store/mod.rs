//! The event store: an append-only, hash-chained log of envelopes.
//!
//! The store knows nothing of the domain. It keeps envelopes whose payload is bytes plus an
//! event type name and schema version; domain events are encoded and decoded above it.
//!
//! Every backend gives the same guarantees (see `EventStore`), checked by one conformance
//! suite (`tests/tests/store_conformance.rs`).

pub mod batch;
pub mod chain;
pub mod codec;
pub mod embedded;

pub mod error;
pub mod limits;
mod subscription;
pub mod types;
mod validate;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::watch;

pub use batch::{EventView, RecordBatch};
pub use embedded::{EmbeddedOptions, EmbeddedStore, OpenReport, TornTail};
pub use error::{CorruptionKind, InvalidInput, StoreError};
pub use subscription::{BatchSubscription, Subscription};
pub use types::*;
pub use validate::validate_append;

/// The contract every backend keeps.
///
/// - **Atomic appends.** An append writes all its events or none, to one or more streams,
///   each checked against its `ExpectedVersion`; expectations on streams the append does not
///   write are checked too, so a decision that read them stays valid.
/// - **Durability.** `append` returns `Ok` only once the events are durable (fsync'd, or
///   replicated on a networked backend). An error means nothing of the append was written,
///   or — for `Unavailable` — that the outcome is unknown and the caller must retry with
///   the same command id.
/// - **Idempotency.** A command id is used once, forever. A retry with the same id and the
///   same content returns the original `AppendResult`; with other content it fails with
///   `CommandIdReused`.
/// - **Order.** Positions are global and gap-free from 1; stream versions are gap-free
///   from 1; every event carries the hash of the one before it.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Queues an append and returns once it is queued, in call order: appends submitted one
    /// after another by one task are committed in that order. The returned `PendingAppend`
    /// resolves once the append is durable (or refused). A caller that decides appends one
    /// after another (the decider) awaits `submit` in order and the results concurrently,
    /// so its appends share group commits.
    async fn submit(&self, request: AppendRequest) -> Result<PendingAppend, StoreError>;

    /// `submit`, then wait until durable.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        self.submit(request).await?.await
    }

    /// Up to `max_count` events of one stream, from `from_version` (inclusive) on.
    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: StreamVersion,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max_count` events of the whole log, from `from_position` (inclusive) on.
    async fn read_all(
        &self,
        from_position: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The events `read_all(from_position, max_count)` returns, into `batch` (its contents
    /// replaced, its buffers reused): the same events with the same fields, checked the same
    /// way, but borrowed from one buffer instead of owned one by one. It may stop early:
    /// once it holds `limits::READ_BATCH_BYTES_MAX` bytes (always at least one event when
    /// there is one). On an error the batch is left empty.
    ///
    /// This default is correct for any backend (it copies what `read_all` returns); a
    /// backend that keeps envelopes as bytes fills the batch from them without the copy.
    async fn read_all_batch(
        &self,
        from_position: Position,
        max_count: usize,
        batch: &mut RecordBatch,
    ) -> Result<(), StoreError> {
        batch.clear();
        let events = self
            .read_all(from_position, max_count.min(limits::READ_EVENTS_MAX))
            .await?;
        for event in &events {
            if !batch.is_empty() && batch.size_bytes() >= limits::READ_BATCH_BYTES_MAX {
                break;
            }
            batch.push_recorded(event);
        }
        Ok(())
    }

    /// The current version of a stream (0 when it has no event).
    async fn stream_version(&self, stream_id: &StreamId) -> Result<StreamVersion, StoreError>;

    /// The last durable position and its hash.
    async fn head(&self) -> Result<Head, StoreError>;

    /// A receiver of the last durable position, updated after every commit.
    fn watch_head(&self) -> watch::Receiver<Position>;
}

/// Every event from `from_position` (inclusive) on: the events already in the log, then
/// new ones as they become durable, with no gap and no duplicate at the switch-over.
pub fn subscribe<S: EventStore + ?Sized>(
    store: std::sync::Arc<S>,
    from_position: Position,
) -> Subscription<S> {
    Subscription::new(store, from_position)
}

/// `subscribe`, delivering each step as a `RecordBatch` (`EventStore::read_all_batch`):
/// the same events with the same guarantee, without an owned `RecordedEvent` per event.
pub fn subscribe_batches<S: EventStore + ?Sized>(
    store: std::sync::Arc<S>,
    from_position: Position,
) -> BatchSubscription<S> {
    BatchSubscription::new(store, from_position)
}

/// An append that has been queued; resolves once it is durable or refused.
pub struct PendingAppend(BoxFuture<'static, Result<AppendResult, StoreError>>);

impl PendingAppend {
    pub fn new(
        future: impl Future<Output = Result<AppendResult, StoreError>> + Send + 'static,
    ) -> PendingAppend {
        PendingAppend(Box::pin(future))
    }
}

impl Future for PendingAppend {
    type Output = Result<AppendResult, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}
