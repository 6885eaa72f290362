//! `Events`: the subscription (catch-up then live, bounded lag) and stream reads.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::Stream;
use ledger::domain::DomainEvent;
use ledger::store::{self, EventStore, Position, RecordedEvent, StreamId};
use proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status;
use crate::auth::{require, Role};

/// Events buffered per subscriber between the store and the connection.
pub const SUBSCRIBER_BUFFER_EVENTS: usize = 1_024;
/// Events one `ReadStream` call returns at the most.
pub const READ_STREAM_EVENTS_MAX: u32 = 1_000;

#[derive(Clone)]
pub struct EventRpcs {
    store: Arc<dyn EventStore>,
    subscriber_lag_events_max: u64,
    subscribers: Arc<AtomicU64>,
    /// Turns true when the server shuts down: open subscriptions end (a graceful
    /// shutdown waits for every open call, and a subscription never ends by itself).
    shutting_down: watch::Receiver<bool>,
}

impl EventRpcs {
    pub fn new(
        store: Arc<dyn EventStore>,
        subscriber_lag_events_max: u64,
        shutting_down: watch::Receiver<bool>,
    ) -> EventRpcs {
        EventRpcs {
            store,
            subscriber_lag_events_max,
            subscribers: Arc::new(AtomicU64::new(0)),
            shutting_down,
        }
    }

    /// The operator's view, sharing this service's subscriber count.
    pub fn admin(&self) -> AdminRpcs {
        AdminRpcs {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

/// The envelope and payload as the API shows them.
pub fn recorded_event(event: RecordedEvent) -> pb::RecordedEvent {
    let payload_json = DomainEvent::decode(
        event.event_type.as_str(),
        event.schema_version,
        &event.payload,
    )
    .ok()
    .and_then(|decoded| serde_json::to_string(&decoded).ok())
    .unwrap_or_default();
    pb::RecordedEvent {
        position: event.position,
        stream_id: event.stream_id.to_string(),
        stream_version: event.stream_version,
        event_id: event.event_id.to_hex(),
        event_type: event.event_type.to_string(),
        schema_version: u32::from(event.schema_version),
        recorded_at_micros: event.recorded_at.unix_micros(),
        command_id: event.command_id.to_string(),
        correlation_id: event
            .correlation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        causation_id: event
            .causation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        actor_service: event.actor.service.to_string(),
        actor_on_behalf_of: event
            .actor
            .on_behalf_of
            .map(|id| id.to_string())
            .unwrap_or_default(),
        payload: event.payload,
        payload_json,
        previous_hash: event.previous_hash.to_hex(),
        hash: event.hash.to_hex(),
    }
}

struct Filter {
    stream_categories: Vec<String>,
    event_types: Vec<String>,
}

impl Filter {
    fn admits(&self, event: &RecordedEvent) -> bool {
        let category = event
            .stream_id
            .as_str()
            .split('-')
            .next()
            .unwrap_or_default();
        (self.stream_categories.is_empty() || self.stream_categories.iter().any(|c| c == category))
            && (self.event_types.is_empty()
                || self
                    .event_types
                    .iter()
                    .any(|t| t == event.event_type.as_str()))
    }
}

/// Counts a subscriber for as long as it lives, however its subscription ends.
struct SubscriberGauge(Arc<AtomicU64>);

impl SubscriberGauge {
    fn new(count: Arc<AtomicU64>) -> SubscriberGauge {
        count.fetch_add(1, Ordering::SeqCst);
        crate::metrics::subscribers(1.0);
        SubscriberGauge(count)
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::subscribers(-1.0);
    }
}

/// Sends the subscriber every admitted event until it goes away, falls too far behind, or
/// the store fails.
async fn feed_subscriber(
    subscription: &mut store::Subscription<dyn EventStore>,
    store: &Arc<dyn EventStore>,
    filter: &Filter,
    lag_max: u64,
    sender: &mpsc::Sender<Result<pb::RecordedEvent, Status>>,
    resume_from: &mut Position,
) {
    loop {
        let batch = match subscription.next_batch().await {
            Ok(batch) => batch,
            Err(error) => {
                let _ = sender.send(Err(status::store_error(error))).await;
                return;
            }
        };
        for event in batch {
            let position = event.position;
            if !filter.admits(&event) {
                *resume_from = position + 1;
                continue;
            }
            if sender.capacity() == 0 {
                // The client is not keeping up. Waiting costs the server nothing (the
                // subscription reads by position), but a subscriber far behind is better
                // off resuming than holding a stream open.
                let head = store
                    .head()
                    .await
                    .map(|head| head.position)
                    .unwrap_or(position);
                if head.saturating_sub(position) > lag_max {
                    let _ = sender
                        .send(Err(Status::resource_exhausted(format!(
                            "the subscriber fell more than {lag_max} events behind the head ({head}); resume from position {position}"
                        ))))
                        .await;
                    return;
                }
            }
            if sender.send(Ok(recorded_event(event))).await.is_err() {
                return; // the client went away
            }
            *resume_from = position + 1;
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RecordedEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::events_server::Events for EventRpcs {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        require(&request, &[Role::Auditor, Role::Operator])?;
        let request = request.into_inner();
        let filter = Filter {
            stream_categories: request.stream_categories,
            event_types: request.event_types,
        };
        let store = self.store.clone();
        let lag_max = self.subscriber_lag_events_max;
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER_EVENTS);
        let mut subscription = store::subscribe(store.clone(), request.from_position.max(1));
        let gauge = SubscriberGauge::new(self.subscribers.clone());
        let mut shutting_down = self.shutting_down.clone();
        tokio::spawn(async move {
            let _gauge = gauge;
            let mut resume_from = subscription.next_position();
            let feed = feed_subscriber(
                &mut subscription,
                &store,
                &filter,
                lag_max,
                &sender,
                &mut resume_from,
            );
            tokio::select! {
                () = feed => {}
                _ = shutting_down.wait_for(|down| *down) => {
                    let _ = sender.try_send(Err(Status::unavailable(format!(
                        "the server is shutting down; resume from position {resume_from}"
                    ))));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn read_stream(
        &self,
        request: Request<pb::ReadStreamRequest>,
    ) -> Result<Response<pb::ReadStreamResponse>, Status> {
        require(&request, &Role::ALL)?;
        let request = request.into_inner();
        let stream_id = StreamId::new(request.stream_id).map_err(status::invalid)?;
        let max_count = request.max_count.clamp(1, READ_STREAM_EVENTS_MAX) as usize;
        let events = self
            .store
            .read_stream(&stream_id, request.from_version.max(1), max_count)
            .await
            .map_err(status::store_error)?;
        let stream_version = self
            .store
            .stream_version(&stream_id)
            .await
            .map_err(status::store_error)?;
        Ok(Response::new(pb::ReadStreamResponse {
            events: events.into_iter().map(recorded_event).collect(),
            stream_version,
        }))
    }
}

/// `Admin`: the operator's view of the store.
#[derive(Clone)]
pub struct AdminRpcs {
    store: Arc<dyn EventStore>,
    subscribers: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminRpcs {
    async fn store_status(
        &self,
        request: Request<pb::StoreStatusRequest>,
    ) -> Result<Response<pb::StoreStatusResponse>, Status> {
        require(&request, &[Role::Operator])?;
        let head = self.store.head().await.map_err(status::store_error)?;
        Ok(Response::new(pb::StoreStatusResponse {
            head_position: head.position,
            head_hash: head.hash.to_hex(),
            backend: "embedded".to_string(),
            subscribers: self.subscribers.load(Ordering::SeqCst),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::store::{
        Actor, AppendRequest, CommandId, EmbeddedOptions, EmbeddedStore, EventType, ProposedEvent,
        ServiceName,
    };

    /// The cut-off on a tiny buffer, without HTTP/2 in between (its own buffers make the
    /// moment a real connection fills up depend on window and buffer sizes).
    #[tokio::test]
    async fn a_subscriber_too_far_behind_is_cut_off_with_the_position_to_resume_from() {
        let directory = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            segment_size_bytes: 64 * 1024,
            ..EmbeddedOptions::default()
        };
        let (store, _) = EmbeddedStore::open(directory.path(), options)
            .await
            .unwrap();
        for i in 0..50 {
            store
                .append(AppendRequest {
                    command_id: CommandId::new(format!("c{i}")).unwrap(),
                    command_fingerprint: None,
                    correlation_id: None,
                    causation_id: None,
                    actor: Actor {
                        service: ServiceName::new("test").unwrap(),
                        on_behalf_of: None,
                    },
                    expectations: vec![],
                    events: vec![ProposedEvent {
                        stream_id: StreamId::new("s-1").unwrap(),
                        event_type: EventType::new("TestEvent").unwrap(),
                        schema_version: 1,
                        payload: vec![1, 2, 3],
                    }],
                })
                .await
                .unwrap();
        }
        let store: Arc<dyn EventStore> = Arc::new(store);
        let mut subscription = store::subscribe(store.clone(), 1);
        let (sender, mut receiver) = mpsc::channel(2);
        let filter = Filter {
            stream_categories: vec![],
            event_types: vec![],
        };
        let feeder = tokio::spawn(async move {
            let mut resume_from = 1;
            feed_subscriber(
                &mut subscription,
                &store,
                &filter,
                5,
                &sender,
                &mut resume_from,
            )
            .await;
            resume_from
        });
        assert_eq!(receiver.recv().await.unwrap().unwrap().position, 1);
        assert_eq!(receiver.recv().await.unwrap().unwrap().position, 2);
        let cut_off = receiver.recv().await.unwrap().unwrap_err();
        assert_eq!(cut_off.code(), tonic::Code::ResourceExhausted);
        assert!(
            cut_off.message().ends_with("resume from position 3"),
            "{}",
            cut_off.message()
        );
        assert!(
            receiver.recv().await.is_none(),
            "the stream ends after the cut-off"
        );
        assert_eq!(feeder.await.unwrap(), 3);
    }
}
