//! The decider: one task that owns the write-side state and decides every command.
//!
//! Commands arrive on a bounded queue. Each is decided against the in-memory state (rebuilt
//! from the log at start), its events are applied at once (so the next command sees them),
//! and its append is submitted to the store in decision order. Appends are then awaited
//! concurrently, so commands decided back to back share group commits; a caller is
//! answered only once its events are durable.
//!
//! If an append fails, the decider stops taking commands, lets the appends already
//! submitted finish (each caller hears what the store says of its own append), rebuilds
//! its state from the durable log, and only then decides again. Its state never keeps an
//! event that is not on disk.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::events::EventDecodeError;
use crate::domain::ids::MemberId;
use crate::domain::privacy::{self, KeyVault, PersonalData, PrivacyError};
use crate::domain::{decide, evolve, expectations, Command, DomainEvent, Rejection, State};
use crate::sharded::ShardedMap;
use crate::store::{
    validate_append, Actor, AppendRequest, AppendResult, CausationId, CommandId, CorrelationId,
    EventStore, ExpectedVersion, Position, StoreError, StreamId, StreamVersion,
};
use crate::time::Clock;

/// Commands waiting for the decider; `execute` waits (back-pressure) when it is full.
pub const COMMAND_QUEUE_DEPTH_MAX: usize = 1_024;
/// Appends submitted to the store and not yet durable.
pub const APPENDS_IN_FLIGHT_MAX: usize = 4_096;
/// Events per read while rebuilding the state from the log.
pub const REPLAY_BATCH_EVENTS_MAX: usize = 8_192;

/// A command with what the store records beside its events.
#[derive(Clone, Debug)]
pub struct CommandEnvelope {
    /// The idempotency key: a retry with the same id gets the original result.
    pub command_id: CommandId,
    pub correlation_id: Option<CorrelationId>,
    pub causation_id: Option<CausationId>,
    /// The authenticated service and the member it acts for.
    pub actor: Actor,
    /// The version the caller last saw of the command's stream (the stream of its first
    /// event; 0 for a stream the command creates). A mismatch refuses the command.
    pub expected_version: Option<StreamVersion>,
    pub command: Command,
}

/// A command's durable outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    pub append: AppendResult,
    /// The command id had been used before: this is the original result, nothing new was
    /// written.
    pub replayed: bool,
}

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("refused: {0}")]
    Rejected(#[from] Rejection),
    #[error("command id {command_id} was already used for a different command")]
    CommandIdReused { command_id: CommandId },
    #[error("expected_version: the caller expected {stream_id} at version {expected}, it is at version {actual}")]
    WrongExpectedVersion {
        stream_id: StreamId,
        expected: StreamVersion,
        actual: StreamVersion,
    },
    #[error("not written: {0}")]
    Store(#[from] StoreError),
    #[error("the decider has stopped")]
    Stopped,
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} does not decode: {error}")]
    Undecodable {
        position: Position,
        error: EventDecodeError,
    },
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
}

type Reply = oneshot::Sender<Result<CommandOutcome, CommandError>>;
type Inspection = Box<dyn FnOnce(&State) + Send>;

enum Request {
    Execute(Box<CommandEnvelope>, Reply),
    Inspect(Inspection),
}

/// The way in: cheap to clone, one per caller.
#[derive(Clone)]
pub struct DeciderHandle {
    sender: mpsc::Sender<Request>,
    vault: Arc<dyn KeyVault>,
}

impl DeciderHandle {
    /// Decides the command and waits until its events are durable.
    pub async fn execute(&self, envelope: CommandEnvelope) -> Result<CommandOutcome, CommandError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(Request::Execute(Box::new(envelope), reply))
            .await
            .map_err(|_| CommandError::Stopped)?;
        outcome.await.map_err(|_| CommandError::Stopped)?
    }

    /// Seals a new member's personal data for `RegisterMember`, creating the member's key.
    /// Runs in the caller's task, so key files never stall the decider.
    pub async fn seal_personal_data(
        &self,
        member: &MemberId,
        data: &PersonalData,
    ) -> Result<crate::domain::events::SealedPersonalData, PrivacyError> {
        let vault = Arc::clone(&self.vault);
        let member = member.clone();
        let data = data.clone();
        tokio::task::spawn_blocking(move || privacy::seal(vault.as_ref(), &member, &data))
            .await
            .expect("sealing does not panic")
    }

    /// Runs `f` on the decider's state, between two decisions. The state includes events
    /// decided but not yet durable; for tests and diagnostics.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        let inspection: Inspection = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.sender
            .send(Request::Inspect(inspection))
            .await
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)
    }
}

/// What the decider knows of a durable command: small, because there is one per command
/// ever decided. The full `AppendResult` of a retry is read back from the log.
struct Known {
    /// The command's fingerprint, kept in its events' envelopes. `None` only for events
    /// appended without one (not through the decider); a reused id is then answered with
    /// the original result.
    fingerprint: Option<u128>,
    first_position: Position,
    last_position: Position,
}

/// A command whose append is not durable yet; retries of it wait for the same answer.
struct Pending {
    fingerprint: u128,
    waiters: Vec<Reply>,
    /// Destroy this member's key once the erasure is durable.
    erase_key_of: Option<MemberId>,
}

type AppendFuture = BoxFuture<'static, (CommandId, Result<AppendResult, StoreError>)>;

pub struct Decider<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    vault: Arc<dyn KeyVault>,
    state: State,
    /// Every command's result, for as long as the log lasts: sharded, as it only grows.
    known: ShardedMap<CommandId, Known>,
    pending: HashMap<CommandId, Pending>,
    in_flight: FuturesUnordered<AppendFuture>,
    /// An append failed: decide nothing until the state is rebuilt from the log.
    failed: bool,
}

impl<S: EventStore> Decider<S> {
    /// Rebuilds the state from the log and starts the decider task.
    pub async fn start(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        vault: Arc<dyn KeyVault>,
    ) -> Result<(DeciderHandle, JoinHandle<()>), StartError> {
        let (state, known) = rebuild(store.as_ref()).await?;
        complete_erasures(&state, vault.as_ref())?;
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE_DEPTH_MAX);
        let decider = Decider {
            store,
            clock,
            vault: Arc::clone(&vault),
            state,
            known,
            pending: HashMap::new(),
            in_flight: FuturesUnordered::new(),
            failed: false,
        };
        let task = tokio::spawn(decider.run(receiver));
        Ok((DeciderHandle { sender, vault }, task))
    }

    async fn run(mut self, mut receiver: mpsc::Receiver<Request>) {
        let mut closed = false;
        loop {
            if self.failed && self.in_flight.is_empty() {
                match rebuild(self.store.as_ref()).await {
                    Ok((state, known)) => self.replace_state(state, known),
                    Err(error) => {
                        tracing::error!(%error, "the decider cannot rebuild its state; stopping");
                        return;
                    }
                }
            }
            if closed && self.in_flight.is_empty() {
                return;
            }
            let accepting = !closed && !self.failed && self.in_flight.len() < APPENDS_IN_FLIGHT_MAX;
            tokio::select! {
                biased;
                Some((command_id, result)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.on_durable(command_id, result);
                }
                request = receiver.recv(), if accepting => match request {
                    None => closed = true,
                    Some(Request::Inspect(inspection)) => inspection(&self.state),
                    Some(Request::Execute(envelope, reply)) => self.on_command(*envelope, reply).await,
                },
            }
        }
    }

    fn replace_state(&mut self, state: State, known: ShardedMap<CommandId, Known>) {
        // The fingerprints come back with the log: every append carries its command's.
        self.state = state;
        self.known = known;
        self.failed = false;
    }

    async fn on_command(&mut self, envelope: CommandEnvelope, reply: Reply) {
        let fingerprint = envelope.command.fingerprint();
        if let Some(known) = self.known.get(&envelope.command_id) {
            if known
                .fingerprint
                .is_some_and(|original| original != fingerprint)
            {
                let _ = reply.send(Err(CommandError::CommandIdReused {
                    command_id: envelope.command_id,
                }));
                return;
            }
            // Read the original result back in another task: the decider does not wait.
            let store = Arc::clone(&self.store);
            let (first, last) = (known.first_position, known.last_position);
            tokio::spawn(async move {
                let answer = append_result_from_log(store.as_ref(), first, last)
                    .await
                    .map(|append| CommandOutcome {
                        append,
                        replayed: true,
                    })
                    .map_err(CommandError::from);
                let _ = reply.send(answer);
            });
            return;
        }
        if let Some(pending) = self.pending.get_mut(&envelope.command_id) {
            if pending.fingerprint == fingerprint {
                pending.waiters.push(reply);
            } else {
                let _ = reply.send(Err(CommandError::CommandIdReused {
                    command_id: envelope.command_id,
                }));
            }
            return;
        }
        let events = match decide(&self.state, &envelope.command, self.clock.now()) {
            Ok(events) => events,
            Err(rejection) => {
                let _ = reply.send(Err(rejection.into()));
                return;
            }
        };
        let expectations = expectations::expectations(&self.state, &envelope.command, &events);
        if let Some(expected) = envelope.expected_version {
            let stream_id = events[0].stream().stream_id();
            let actual = expectations
                .iter()
                .find(|e| e.stream_id == stream_id)
                .map_or(0, |e| match e.expected {
                    ExpectedVersion::Exact(version) => version,
                    ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
                });
            if actual != expected {
                let _ = reply.send(Err(CommandError::WrongExpectedVersion {
                    stream_id,
                    expected,
                    actual,
                }));
                return;
            }
        }
        let request = AppendRequest {
            command_id: envelope.command_id.clone(),
            command_fingerprint: Some(fingerprint),
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            actor: envelope.actor,
            expectations,
            events: events.iter().map(DomainEvent::to_proposed).collect(),
        };
        // The domain's limits keep every command's append within the store's; checking
        // here keeps a slip from ever touching the state.
        if let Err(error) = validate_append(&request) {
            let _ = reply.send(Err(error.into()));
            return;
        }
        for event in &events {
            evolve(&mut self.state, event);
        }
        let command_id = envelope.command_id;
        match self.store.submit(request).await {
            Ok(append) => {
                let erase_key_of = match &envelope.command {
                    Command::ErasePersonalData(erase) => Some(erase.member_id.clone()),
                    _ => None,
                };
                self.pending.insert(
                    command_id.clone(),
                    Pending {
                        fingerprint,
                        waiters: vec![reply],
                        erase_key_of,
                    },
                );
                self.in_flight
                    .push(Box::pin(async move { (command_id, append.await) }));
            }
            Err(error) => {
                // Applied but never queued: the state is ahead of the log.
                self.failed = true;
                let _ = reply.send(Err(error.into()));
            }
        }
    }

    fn on_durable(&mut self, command_id: CommandId, result: Result<AppendResult, StoreError>) {
        let Some(pending) = self.pending.remove(&command_id) else {
            return;
        };
        match result {
            Ok(append) => {
                if let Some(member) = &pending.erase_key_of {
                    // The erasure is on record; now forget. If this fails (or the process
                    // dies first), the next start destroys the key (`complete_erasures`).
                    if let Err(error) = self.vault.destroy(member) {
                        tracing::error!(%error, %member, "destroying an erased member's key failed");
                    }
                }
                self.known.insert(
                    command_id,
                    Known {
                        fingerprint: Some(pending.fingerprint),
                        first_position: append.first_position,
                        last_position: append.last_position,
                    },
                );
                for waiter in pending.waiters {
                    let _ = waiter.send(Ok(CommandOutcome {
                        append: append.clone(),
                        replayed: false,
                    }));
                }
            }
            Err(error) => {
                // The state holds this command's events, which are not on disk, and every
                // decision after it may rest on them: rebuild before deciding again.
                self.failed = true;
                let message = error.to_string();
                let mut waiters = pending.waiters.into_iter();
                if let Some(first) = waiters.next() {
                    let _ = first.send(Err(error.into()));
                }
                for waiter in waiters {
                    let _ = waiter.send(Err(StoreError::Unavailable(message.clone()).into()));
                }
            }
        }
    }
}

/// The state and the command results, from the whole log.
async fn rebuild<S: EventStore + ?Sized>(
    store: &S,
) -> Result<(State, ShardedMap<CommandId, Known>), StartError> {
    let mut state = State::new();
    let mut known: ShardedMap<CommandId, Known> = ShardedMap::default();
    let mut next: Position = 1;
    loop {
        let batch = store.read_all(next, REPLAY_BATCH_EVENTS_MAX).await?;
        let Some(last) = batch.last() else {
            break;
        };
        next = last.position + 1;
        for recorded in batch {
            let event = DomainEvent::decode(
                recorded.event_type.as_str(),
                recorded.schema_version,
                &recorded.payload,
            )
            .map_err(|error| StartError::Undecodable {
                position: recorded.position,
                error,
            })?;
            evolve(&mut state, &event);
            // An append's events are contiguous and share its command id.
            let position = recorded.position;
            known.upsert(
                recorded.command_id,
                |entry| entry.last_position = position,
                || Known {
                    fingerprint: recorded.command_fingerprint,
                    first_position: position,
                    last_position: position,
                },
            );
        }
    }
    Ok((state, known))
}

/// The result of the append that wrote positions `first..=last`, from its events. One read
/// may return fewer events than asked (reads are bounded in bytes), so read until all are in.
async fn append_result_from_log<S: EventStore + ?Sized>(
    store: &S,
    first: Position,
    last: Position,
) -> Result<AppendResult, StoreError> {
    let count = usize::try_from(last - first + 1).expect("an append has at most 10,000 events");
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let next = first + events.len() as u64;
        let batch = store.read_all(next, count - events.len()).await?;
        if batch.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "position {next} is not in the log"
            )));
        }
        events.extend(batch);
    }
    Ok(AppendResult::of_recorded(&events))
}

/// An erasure recorded in the log whose key survived (a crash between the two): destroy it.
fn complete_erasures(state: &State, vault: &dyn KeyVault) -> Result<(), PrivacyError> {
    for member in state.erased_members() {
        vault.destroy(member)?;
    }
    Ok(())
}
