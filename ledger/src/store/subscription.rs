//! Catch-up then live, by position.
//!
//! A subscription only ever asks the store for "the events from position p on" and then
//! waits for the head to move past p. There is no separate live channel to switch to, so
//! there is no switch-over at which an event could be missed or delivered twice, and a
//! slow subscriber holds no buffer in the store: it reads at its own pace.

use std::sync::Arc;

use tokio::sync::watch;

use super::{EventStore, Position, RecordBatch, RecordedEvent, StoreError};

/// Events per read while catching up.
const SUBSCRIPTION_BATCH_EVENTS_MAX: usize = 4_096;

pub struct Subscription<S: EventStore + ?Sized> {
    store: Arc<S>,
    head: watch::Receiver<Position>,
    next_position: Position,
}

impl<S: EventStore + ?Sized> Subscription<S> {
    pub(super) fn new(store: Arc<S>, from_position: Position) -> Subscription<S> {
        let head = store.watch_head();
        Subscription {
            store,
            head,
            next_position: from_position.max(1),
        }
    }

    /// The position of the next event this subscription will deliver.
    pub fn next_position(&self) -> Position {
        self.next_position
    }

    /// The next events in order (at least one), waiting for them if the subscription has
    /// caught up. `Err(StoreError::Closed)` once the store has shut down.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let head = *self.head.borrow_and_update();
            if head >= self.next_position {
                let events = self
                    .store
                    .read_all(self.next_position, SUBSCRIPTION_BATCH_EVENTS_MAX)
                    .await?;
                if let Some(last) = events.last() {
                    assert_eq!(
                        events[0].position, self.next_position,
                        "read_all returned a gap"
                    );
                    self.next_position = last.position + 1;
                    return Ok(events);
                }
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }
}

/// A `Subscription` that reads into one `RecordBatch`, reused from step to step.
pub struct BatchSubscription<S: EventStore + ?Sized> {
    store: Arc<S>,
    head: watch::Receiver<Position>,
    next_position: Position,
    batch: RecordBatch,
}

impl<S: EventStore + ?Sized> BatchSubscription<S> {
    pub(super) fn new(store: Arc<S>, from_position: Position) -> BatchSubscription<S> {
        let head = store.watch_head();
        BatchSubscription {
            store,
            head,
            next_position: from_position.max(1),
            batch: RecordBatch::new(),
        }
    }

    /// The position of the next event this subscription will deliver.
    pub fn next_position(&self) -> Position {
        self.next_position
    }

    /// The next events in order (at least one), waiting for them if the subscription has
    /// caught up; valid until the next call. `Err(StoreError::Closed)` once the store has
    /// shut down.
    pub async fn next_batch(&mut self) -> Result<&RecordBatch, StoreError> {
        loop {
            let head = *self.head.borrow_and_update();
            if head >= self.next_position {
                self.store
                    .read_all_batch(
                        self.next_position,
                        SUBSCRIPTION_BATCH_EVENTS_MAX,
                        &mut self.batch,
                    )
                    .await?;
                if let (Some(first), Some(last)) =
                    (self.batch.first_position(), self.batch.last_position())
                {
                    assert_eq!(first, self.next_position, "read_all_batch returned a gap");
                    assert_eq!(
                        last - first + 1,
                        self.batch.len() as Position,
                        "read_all_batch returned a gap"
                    );
                    self.next_position = last + 1;
                    return Ok(&self.batch);
                }
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }
}
