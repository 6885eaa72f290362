//! Events appended past the domain, as an intruder with write access to the store would:
//! the audit tests' forgeries, which the semantic replay must find.

use std::path::PathBuf;

use ledger::domain::{decide, Command, DomainEvent};
use ledger::store::{
    Actor, AppendRequest, AppendResult, CommandId, EventStore, ProposedEvent, ServiceName,
};
use ledger::time::Clock;

use crate::Harness;

/// The append request of a forgery: no decider, no expectations, the actor "intruder".
pub fn intruder_append(command_id: &str, events: Vec<ProposedEvent>) -> AppendRequest {
    AppendRequest {
        command_id: CommandId::new(command_id).unwrap(),
        correlation_id: None,
        causation_id: None,
        actor: Actor {
            service: ServiceName::new("intruder").unwrap(),
            on_behalf_of: None,
        },
        command_fingerprint: None,
        expectations: vec![],
        events,
    }
}

/// `events` in the form the store takes them.
pub fn proposed(events: &[DomainEvent]) -> Vec<ProposedEvent> {
    events.iter().map(DomainEvent::to_proposed).collect()
}

/// The harness's event log directory, what `audit::verify` reads.
pub fn log(harness: &Harness) -> PathBuf {
    harness.directory.path().join("log")
}

/// What the domain would write for `command` now, not written: the base of a forgery.
pub async fn decided(harness: &Harness, command: Command) -> Vec<DomainEvent> {
    let now = harness.clock.now();
    let description = format!("{command:?}");
    harness
        .handle
        .inspect(move |state| decide(state, &command, now))
        .await
        .unwrap()
        .unwrap_or_else(|rejection| panic!("{description}: {rejection}"))
}

/// Appends `events` directly through the store: no rule is checked.
pub async fn forge(harness: &Harness, events: Vec<DomainEvent>) -> AppendResult {
    forge_stored(harness, proposed(&events)).await
}

/// Appends already-encoded `events` directly through the store.
pub async fn forge_stored(harness: &Harness, events: Vec<ProposedEvent>) -> AppendResult {
    let command_id = format!("forged-{}", harness.head().await);
    harness
        .store
        .append(intruder_append(&command_id, events))
        .await
        .unwrap()
}
