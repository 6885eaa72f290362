//! Which stream versions an append expects: every stream it writes, at the version the
//! decision saw, and the streams the decision read without writing (a remix's sources, the
//! production behind a pool). A second writer that changed any of them in between makes
//! the append fail instead of committing a decision made on stale state.
//!
//! The family tree's acyclicity and id uniqueness are global; they rest on the single
//! decider, not on these expectations (see DESIGN-NOTES).

use super::commands::*;
use super::events::{DomainEvent, StreamRef};
use super::state::State;
use crate::store::{ExpectedVersion, StreamExpectation};

/// Streams the decision read but does not write.
fn read_streams(state: &State, command: &Command) -> Vec<StreamRef> {
    match command {
        Command::UploadRecord(c) => vec![
            StreamRef::Project(c.project_id.clone()),
            StreamRef::Member(c.contributor.clone()),
        ],
        Command::UploadRemix(c) => {
            let mut streams = vec![
                StreamRef::Project(c.record.project_id.clone()),
                StreamRef::Member(c.record.contributor.clone()),
            ];
            streams.extend(c.sources.iter().cloned().map(StreamRef::Record));
            streams
        }
        Command::CiteSource(c) => vec![StreamRef::Record(c.source_id.clone())],
        Command::AgreeLeadFee(c) => {
            let mut streams = vec![StreamRef::Member(c.lead.clone())];
            if let Some(production) = state
                .project(&c.project_id)
                .and_then(|p| p.production.clone())
            {
                streams.push(StreamRef::Production(production));
            }
            streams
        }
        Command::AssignLead(c) => vec![StreamRef::Member(c.lead.clone())],
        Command::PostComment(c) => vec![StreamRef::Member(c.author.clone())],
        Command::OpenProduction(c) => vec![StreamRef::Project(c.project_id.clone())],
        Command::IncludeRecord(c) => vec![StreamRef::Record(c.record_id.clone())],
        Command::ProposeAllocation(c) => vec![StreamRef::Production(c.production_id.clone())],
        Command::AmendAllocation(c) => production_of(state, &c.distribution_id),
        Command::FinalizeAllocation(c) => production_of(state, &c.distribution_id),
        Command::SettlePayout(_)
        | Command::FailPayout(_)
        | Command::RetryPayout(_)
        | Command::IssuePayouts(_)
        | Command::RegisterMember(_)
        | Command::ErasePersonalData(_)
        | Command::StartProject(_)
        | Command::FinishProject(_)
        | Command::WithdrawRecord(_)
        | Command::RecordRevenue(_)
        | Command::RecordExpense(_) => Vec::new(),
    }
}

/// The production behind a distribution: its included records decide who must have a line.
fn production_of(state: &State, distribution: &super::ids::DistributionId) -> Vec<StreamRef> {
    state
        .distribution(distribution)
        .map(|d| vec![StreamRef::Production(d.production_id.clone())])
        .unwrap_or_default()
}

fn expect(state: &State, stream: &StreamRef) -> StreamExpectation {
    let version = state.stream_version(stream);
    StreamExpectation {
        stream_id: stream.stream_id(),
        expected: if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        },
    }
}

/// The expectations of the append that writes `events`, decided from `command` on `state`
/// (the state before the events are applied).
pub fn expectations(
    state: &State,
    command: &Command,
    events: &[DomainEvent],
) -> Vec<StreamExpectation> {
    let mut streams: Vec<StreamRef> = Vec::new();
    for stream in events
        .iter()
        .map(DomainEvent::stream)
        .chain(read_streams(state, command))
    {
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    streams.iter().map(|stream| expect(state, stream)).collect()
}
