//! Test support shared by the integration tests: building requests, opening stores.

use ledger::store::{
    Actor, AppendRequest, CommandId, EventType, ExpectedVersion, ProposedEvent, ServiceName,
    StreamExpectation, StreamId,
};

/// The segment files of the embedded store in `data_directory`, in log order.
pub fn segments(data_directory: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(data_directory.join("segments"))
        .expect("a segments directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Copies the segment files of the embedded store in `from` into a new data directory `to`
/// (nothing else: no lock, no head, no index checkpoint).
pub fn copy_segments(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.join("segments")).expect("a segments directory");
    for segment in segments(from) {
        std::fs::copy(
            &segment,
            to.join("segments")
                .join(segment.file_name().expect("a file name")),
        )
        .expect("a copied segment");
    }
}

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("a valid stream id")
}

pub fn command(name: &str) -> CommandId {
    CommandId::new(name).expect("a valid command id")
}

pub fn actor() -> Actor {
    Actor {
        service: ServiceName::new("tests").expect("a valid service name"),
        on_behalf_of: None,
    }
}

pub fn event(stream_id: &str, payload: &[u8]) -> ProposedEvent {
    ProposedEvent {
        stream_id: stream(stream_id),
        event_type: EventType::new("TestEvent").expect("a valid event type"),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

/// An append of `events` under `command_id`, with `expectations` as (stream, expected).
pub fn append(
    command_id: &str,
    expectations: &[(&str, ExpectedVersion)],
    events: Vec<ProposedEvent>,
) -> AppendRequest {
    AppendRequest {
        command_id: command(command_id),
        command_fingerprint: None,
        correlation_id: None,
        causation_id: None,
        actor: actor(),
        expectations: expectations
            .iter()
            .map(|(stream_id, expected)| StreamExpectation {
                stream_id: stream(stream_id),
                expected: *expected,
            })
            .collect(),
        events,
    }
}
pub mod conformance;
