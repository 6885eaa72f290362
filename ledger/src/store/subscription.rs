//! Catch-up then live, by position.
//!
//! A subscription only ever asks the store for "the events from position p on" and then
//! waits for the head to move past p. There is no separate live channel to switch to, so
//! there is no switch-over at which an event could be missed or delivered twice, and a
//! slow subscriber holds no buffer in the store: it reads at its own pace.

use std::sync::Arc;

use tokio::sync::watch;

use super::{EventStore, Position, RecordedEvent, StoreError};

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
