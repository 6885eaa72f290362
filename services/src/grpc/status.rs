//! The one place where errors become gRPC statuses. Every match is exhaustive with no
//! catch-all arm, so a new error variant cannot be mapped by accident.

use ledger::decider::CommandError;
use ledger::domain::{Blocker, Rejection};
use ledger::store::{InvalidInput, StoreError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `INVALID_ARGUMENT` with a BadRequest field violation.
pub fn invalid(error: InvalidInput) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(error.field.clone(), error.rule.clone());
    Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
}

fn invalid_field(field: &str, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, message.clone());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `FAILED_PRECONDITION` with one violation per reason.
fn failed_precondition(message: String, reasons: Vec<(String, String)>) -> Status {
    let mut details = ErrorDetails::new();
    for (subject, description) in reasons {
        details.add_precondition_failure_violation("RULE", subject, description);
    }
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

pub fn command_error(error: CommandError) -> Status {
    match error {
        CommandError::Rejected(rejection) => rejection_status(rejection),
        CommandError::CommandIdReused { command_id } => Status::already_exists(format!(
            "meta.command_id: {command_id} was already used for a different command"
        )),
        CommandError::WrongExpectedVersion { .. } => Status::aborted(format!("meta.{error}")),
        CommandError::Store(error) => store_error(error),
        CommandError::Stopped => {
            Status::unavailable("the ledger is shutting down; retry with the same command_id")
        }
    }
}

fn blocker_subject(blocker: &Blocker) -> &'static str {
    match blocker {
        Blocker::WindowOpen { .. } => "window",
        Blocker::UnansweredComments { .. } => "comments",
        Blocker::ContributorsWithoutLine { .. } => "contributors",
        Blocker::LinesWithZeroAmount { .. } => "lines",
        Blocker::AmountsDoNotSumToPool { .. } => "amounts",
    }
}

pub fn rejection_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match &rejection {
        Rejection::TooLong { field, .. }
        | Rejection::TooMany { field, .. }
        | Rejection::Empty { field }
        | Rejection::OutOfRange { field, .. }
        | Rejection::Duplicate { field, .. }
        | Rejection::Money { field, .. }
        | Rejection::NotPositive { field, .. }
        | Rejection::CurrencyMismatch { field, .. } => invalid_field(field, message),
        Rejection::LineCountOutOfRange { .. } => invalid_field("lines", message),
        Rejection::SelfCitation { .. } => invalid_field("source_record_id", message),
        Rejection::AlreadyExists { .. } => Status::already_exists(message),
        Rejection::NotFound { .. } => Status::not_found(message),
        Rejection::FinalizationBlocked { blockers, .. } => failed_precondition(
            message,
            blockers
                .iter()
                .map(|blocker| (blocker_subject(blocker).to_string(), blocker.to_string()))
                .collect(),
        ),
        Rejection::RecordWithdrawn { .. }
        | Rejection::Cycle { .. }
        | Rejection::AlreadyCited { .. }
        | Rejection::ProjectFinished { .. }
        | Rejection::ProjectHasProduction { .. }
        | Rejection::ProjectHasNoProduction { .. }
        | Rejection::LeadFeeNotAgreed { .. }
        | Rejection::LeadFeeAlreadyAgreed { .. }
        | Rejection::LeadAlreadyAssigned { .. }
        | Rejection::AlreadyErased { .. }
        | Rejection::AlreadyIncluded { .. }
        | Rejection::DistributionOpen { .. }
        | Rejection::Pool(_)
        | Rejection::RecordNotByMember { .. }
        | Rejection::RecordNotInProduction { .. }
        | Rejection::WindowClosed { .. }
        | Rejection::CommentNotOnDistribution { .. }
        | Rejection::AlreadyFinalized { .. }
        | Rejection::NotFinalized { .. }
        | Rejection::PayoutAlreadyIssued { .. }
        | Rejection::PayoutState { .. } => {
            failed_precondition(message.clone(), vec![("rule".to_string(), message)])
        }
    }
}

pub fn store_error(error: StoreError) -> Status {
    let message = error.to_string();
    match error {
        StoreError::Invalid(input) => invalid(input),
        StoreError::TooLarge { .. } => Status::resource_exhausted(message),
        StoreError::WrongExpectedVersion { .. } => Status::aborted(message),
        StoreError::CommandIdReused { .. } => Status::already_exists(message),
        StoreError::Corrupt { .. } => Status::data_loss(message),
        StoreError::Locked(_)
        | StoreError::Unavailable(_)
        | StoreError::Closed
        | StoreError::Io { .. } => Status::unavailable(message),
    }
}

pub fn query_error(error: projections::QueryError) -> Status {
    let message = error.to_string();
    match error {
        projections::QueryError::Timeout { .. } => Status::deadline_exceeded(message),
        projections::QueryError::Stopped { .. } => Status::unavailable(message),
    }
}

pub fn rebuild_error(error: projections::RebuildError) -> Status {
    let message = error.to_string();
    match error {
        projections::RebuildError::UnknownProjection(_) => invalid_field("projections", message),
        projections::RebuildError::Stopped { .. } => Status::unavailable(message),
    }
}

pub fn audit_error(error: ledger::audit::AuditError) -> Status {
    use ledger::audit::AuditError;
    let message = error.to_string();
    match error {
        AuditError::Store(error) => store_error(error),
        // A pass stops only when its caller went away or the server is shutting down.
        AuditError::Stopped { .. } => Status::unavailable(message),
        // The import's errors: no audit RPC imports, but a new caller would get these.
        AuditError::BadExportLine { .. } => Status::invalid_argument(message),
        AuditError::BrokenChain { .. } => Status::data_loss(message),
        AuditError::NotEmpty { .. } => Status::failed_precondition(message),
        AuditError::Io { .. } => Status::unavailable(message),
    }
}

/// An audit pass that did not finish on its blocking thread (a panic, or the runtime
/// shutting down under it).
pub fn audit_task_failed(error: tokio::task::JoinError) -> Status {
    if error.is_cancelled() {
        Status::unavailable("the server is shutting down")
    } else {
        Status::internal(format!("the audit pass failed: {error}"))
    }
}

/// More audit passes than `limits.concurrent_audit_passes_max` at once.
pub fn audit_passes_exhausted(running_max: usize) -> Status {
    Status::resource_exhausted(format!(
        "{running_max} audit passes (Verify, Explain, Statement) are running, the server's limit (limits.concurrent_audit_passes_max); retry when one has finished"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::store::CorruptionKind;

    #[test]
    fn store_failures_map_to_their_codes() {
        let corrupt = StoreError::Corrupt {
            segment: "00000000000000000001.seg".into(),
            offset: 64,
            position: 1,
            kind: CorruptionKind::BadChecksum,
        };
        assert_eq!(store_error(corrupt).code(), Code::DataLoss);
        assert_eq!(
            store_error(StoreError::Unavailable("disk".into())).code(),
            Code::Unavailable
        );
        assert_eq!(store_error(StoreError::Closed).code(), Code::Unavailable);
        let too_large = StoreError::TooLarge {
            field: "events",
            size_bytes: 2,
            limit_bytes: 1,
        };
        assert_eq!(store_error(too_large).code(), Code::ResourceExhausted);
        assert_eq!(
            command_error(CommandError::Stopped).code(),
            Code::Unavailable
        );
        let invalid = store_error(StoreError::Invalid(InvalidInput::new("events", "empty")));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        let violations = invalid.get_error_details();
        assert_eq!(
            violations.bad_request().unwrap().field_violations[0].field,
            "events"
        );
    }

    #[test]
    fn audit_failures_map_to_their_codes() {
        use ledger::audit::AuditError;
        let corrupt = AuditError::Store(StoreError::Corrupt {
            segment: "00000000000000000001.seg".into(),
            offset: 64,
            position: 1,
            kind: CorruptionKind::BadChecksum,
        });
        assert_eq!(audit_error(corrupt).code(), Code::DataLoss);
        assert_eq!(
            audit_error(AuditError::Stopped { position: 3 }).code(),
            Code::Unavailable
        );
        assert_eq!(audit_passes_exhausted(2).code(), Code::ResourceExhausted);
    }
}
