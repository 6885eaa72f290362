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

/// Where a subscription is: the next position to deliver, and the store's head it waits on.
struct Cursor<S: EventStore + ?Sized> {
    store: Arc<S>,
    head: watch::Receiver<Position>,
    next_position: Position,
}

impl<S: EventStore + ?Sized> Cursor<S> {
    fn new(store: Arc<S>, from_position: Position) -> Cursor<S> {
        let head = store.watch_head();
        Cursor {
            store,
            head,
            next_position: from_position.max(1),
        }
    }

    /// The head has reached the next position: there is something to read.
    fn behind_head(&mut self) -> bool {
        *self.head.borrow_and_update() >= self.next_position
    }

    /// Waits for the head to move. `Err(StoreError::Closed)` once the store has shut down.
    async fn head_moved(&mut self) -> Result<(), StoreError> {
        self.head.changed().await.map_err(|_| StoreError::Closed)
    }

    /// Reads the next events (at least one) into `batch`, waiting for them if caught up.
    async fn read_into(&mut self, batch: &mut RecordBatch) -> Result<(), StoreError> {
        loop {
            if self.behind_head() {
                self.store
                    .read_all_batch(self.next_position, SUBSCRIPTION_BATCH_EVENTS_MAX, batch)
                    .await?;
                if let (Some(first), Some(last)) = (batch.first_position(), batch.last_position()) {
                    assert_eq!(first, self.next_position, "read_all_batch returned a gap");
                    assert_eq!(
                        last - first + 1,
                        batch.len() as Position,
                        "read_all_batch returned a gap"
                    );
                    self.next_position = last + 1;
                    return Ok(());
                }
            }
            self.head_moved().await?;
        }
    }
}

pub struct Subscription<S: EventStore + ?Sized> {
    cursor: Cursor<S>,
}

impl<S: EventStore + ?Sized> Subscription<S> {
    pub(super) fn new(store: Arc<S>, from_position: Position) -> Subscription<S> {
        Subscription {
            cursor: Cursor::new(store, from_position),
        }
    }

    /// The position of the next event this subscription will deliver.
    pub fn next_position(&self) -> Position {
        self.cursor.next_position
    }

    /// The next events in order (at least one), waiting for them if the subscription has
    /// caught up. `Err(StoreError::Closed)` once the store has shut down.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let cursor = &mut self.cursor;
        loop {
            if cursor.behind_head() {
                let events = cursor
                    .store
                    .read_all(cursor.next_position, SUBSCRIPTION_BATCH_EVENTS_MAX)
                    .await?;
                if let Some(last) = events.last() {
                    assert_eq!(
                        events[0].position, cursor.next_position,
                        "read_all returned a gap"
                    );
                    cursor.next_position = last.position + 1;
                    return Ok(events);
                }
            }
            cursor.head_moved().await?;
        }
    }
}

/// A `Subscription` that reads into one `RecordBatch`, reused from step to step.
pub struct BatchSubscription<S: EventStore + ?Sized> {
    cursor: Cursor<S>,
    batch: RecordBatch,
}

impl<S: EventStore + ?Sized> BatchSubscription<S> {
    pub(super) fn new(store: Arc<S>, from_position: Position) -> BatchSubscription<S> {
        BatchSubscription {
            cursor: Cursor::new(store, from_position),
            batch: RecordBatch::new(),
        }
    }

    /// The position of the next event this subscription will deliver.
    pub fn next_position(&self) -> Position {
        self.cursor.next_position
    }

    /// The next events in order (at least one), waiting for them if the subscription has
    /// caught up; valid until the next call. `Err(StoreError::Closed)` once the store has
    /// shut down.
    pub async fn next_batch(&mut self) -> Result<&RecordBatch, StoreError> {
        self.cursor.read_into(&mut self.batch).await?;
        Ok(&self.batch)
    }

    /// As `next_batch`, into a batch the caller keeps: for a reader that keeps several
    /// batches in circulation (one read while another is decoded).
    pub async fn next_into(&mut self, batch: &mut RecordBatch) -> Result<(), StoreError> {
        self.cursor.read_into(batch).await
    }
}
