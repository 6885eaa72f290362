//! The command RPCs: authenticate, convert, hand to the decider, answer once durable.

use ledger::decider::{CommandEnvelope, CommandOutcome, DeciderHandle};
use ledger::domain::commands::{Command, RegisterMember};
use ledger::store::{Actor, ServiceName};
use proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::{self, Meta};
use super::status;
use crate::auth::{require, Caller, Role};

/// Every command service: one decider behind them all.
#[derive(Clone)]
pub struct CommandRpcs {
    decider: DeciderHandle,
}

impl CommandRpcs {
    pub fn new(decider: DeciderHandle) -> CommandRpcs {
        CommandRpcs { decider }
    }

    async fn execute(
        &self,
        caller: Caller,
        meta: Meta,
        command: Command,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let service = ServiceName::new(caller.service).map_err(status::invalid)?;
        let command_type = command_type(&command);
        let command_id = meta.command_id.to_string();
        let envelope = CommandEnvelope {
            command_id: meta.command_id,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            expected_version: meta.expected_version,
            actor: Actor {
                service,
                on_behalf_of: meta.on_behalf_of,
            },
            command,
        };
        let started = std::time::Instant::now();
        // Every log line of this command carries its ids.
        let span = tracing::info_span!(
            "command",
            command_id = %envelope.command_id,
            correlation_id = envelope.correlation_id.as_ref().map(|id| id.to_string()),
            service = %envelope.actor.service,
        );
        let outcome =
            tracing::Instrument::instrument(self.decider.execute(envelope), span.clone()).await;
        let _entered = span.enter();
        crate::metrics::command_outcome(
            command_type,
            outcome.as_ref().map(|_| ()).map_err(|_| ()),
            started.elapsed().as_secs_f64(),
        );
        match outcome {
            Ok(outcome) => {
                tracing::info!(
                    command_id,
                    command_type,
                    position = outcome.append.last_position,
                    replayed = outcome.replayed,
                    "command accepted"
                );
                Ok(Response::new(result(outcome)))
            }
            Err(error) => {
                tracing::info!(command_id, command_type, %error, "command refused");
                Err(status::command_error(error))
            }
        }
    }
}

fn command_type(command: &Command) -> &'static str {
    match command {
        Command::RegisterMember(_) => "RegisterMember",
        Command::ErasePersonalData(_) => "ErasePersonalData",
        Command::StartProject(_) => "StartProject",
        Command::AgreeLeadFee(_) => "AgreeLeadFee",
        Command::AssignLead(_) => "AssignLead",
        Command::FinishProject(_) => "FinishProject",
        Command::UploadRecord(_) => "UploadRecord",
        Command::UploadRemix(_) => "UploadRemix",
        Command::CiteSource(_) => "CiteSource",
        Command::WithdrawRecord(_) => "WithdrawRecord",
        Command::PostComment(_) => "PostComment",
        Command::OpenProduction(_) => "OpenProduction",
        Command::IncludeRecord(_) => "IncludeRecord",
        Command::RecordRevenue(_) => "RecordRevenue",
        Command::RecordExpense(_) => "RecordExpense",
        Command::ProposeAllocation(_) => "ProposeAllocation",
        Command::AmendAllocation(_) => "AmendAllocation",
        Command::FinalizeAllocation(_) => "FinalizeAllocation",
        Command::IssuePayouts(_) => "IssuePayouts",
        Command::SettlePayout(_) => "SettlePayout",
        Command::FailPayout(_) => "FailPayout",
        Command::RetryPayout(_) => "RetryPayout",
    }
}

/// The command's stream is the stream of its first event.
fn result(outcome: CommandOutcome) -> pb::CommandResult {
    let append = outcome.append;
    let (stream_id, stream_version) = append
        .stream_versions
        .first()
        .map(|(stream, version)| (stream.to_string(), *version))
        .unwrap_or_default();
    pb::CommandResult {
        stream_id,
        stream_version,
        position: append.last_position,
        first_position: append.first_position,
        replayed: outcome.replayed,
    }
}

/// One impl of a generated service trait whose RPCs are all plain commands: check the
/// role, convert, execute. (The attribute must see the methods, so the macro writes the
/// whole impl.)
macro_rules! command_service {
    ($service:path { $($method:ident($request:ty) => $convert:path, $roles:expr;)* }) => {
        #[tonic::async_trait]
        impl $service for CommandRpcs {
            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<pb::CommandResult>, Status> {
                    let caller = require(&request, $roles)?;
                    let (meta, command) = $convert(request.into_inner()).map_err(status::invalid)?;
                    self.execute(caller, meta, command).await
                }
            )*
        }
    };
}

#[tonic::async_trait]
impl pb::members_server::Members for CommandRpcs {
    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let caller = require(&request, &[Role::Gateway])?;
        let (meta, registration) =
            convert::register_member(request.into_inner()).map_err(status::invalid)?;
        let personal_data = self
            .decider
            .seal_personal_data(&registration.member_id, &registration.personal_data)
            .await
            .map_err(|error| Status::unavailable(format!("cannot seal personal data: {error}")))?;
        let command = Command::RegisterMember(RegisterMember {
            member_id: registration.member_id,
            handle: registration.handle,
            personal_data,
        });
        self.execute(caller, meta, command).await
    }

    async fn erase_personal_data(
        &self,
        request: Request<pb::ErasePersonalDataRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let caller = require(&request, &[Role::Gateway])?;
        let (meta, command) =
            convert::erase_personal_data(request.into_inner()).map_err(status::invalid)?;
        self.execute(caller, meta, command).await
    }
}

#[tonic::async_trait]
impl pb::comments_server::Comments for CommandRpcs {
    async fn post_comment(
        &self,
        request: Request<pb::PostCommentRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let caller = require(&request, &[Role::Gateway, Role::Community])?;
        // The community team's comments are staff replies; the gateway's are members'.
        let staff = caller.role == Role::Community;
        let (meta, command) =
            convert::post_comment(request.into_inner(), staff).map_err(status::invalid)?;
        self.execute(caller, meta, command).await
    }
}

command_service!(pb::projects_server::Projects {
    start_project(pb::StartProjectRequest) => convert::start_project, &[Role::Community];
    agree_lead_fee(pb::AgreeLeadFeeRequest) => convert::agree_lead_fee, &[Role::Finance];
    assign_lead(pb::AssignLeadRequest) => convert::assign_lead, &[Role::Community];
    finish_project(pb::FinishProjectRequest) => convert::finish_project, &[Role::Community];
});

command_service!(pb::records_server::Records {
    upload_record(pb::UploadRecordRequest) => convert::upload_record, &[Role::Gateway];
    upload_remix(pb::UploadRemixRequest) => convert::upload_remix, &[Role::Gateway];
    cite_source(pb::CiteSourceRequest) => convert::cite_source, &[Role::Gateway];
    withdraw_record(pb::WithdrawRecordRequest) => convert::withdraw_record, &[Role::Gateway];
});

command_service!(pb::productions_server::Productions {
    open_production(pb::OpenProductionRequest) => convert::open_production, &[Role::Finance];
    include_record(pb::IncludeRecordRequest) => convert::include_record, &[Role::Finance];
    record_revenue(pb::RecordMoneyRequest) => convert::record_revenue, &[Role::Finance];
    record_expense(pb::RecordMoneyRequest) => convert::record_expense, &[Role::Finance];
});

command_service!(pb::allocations_server::Allocations {
    propose_allocation(pb::ProposeAllocationRequest) => convert::propose_allocation, &[Role::Community];
    amend_allocation(pb::AmendAllocationRequest) => convert::amend_allocation, &[Role::Community];
    finalize_allocation(pb::FinalizeAllocationRequest) => convert::finalize_allocation, &[Role::Community];
});

command_service!(pb::payouts_server::Payouts {
    issue_payouts(pb::IssuePayoutsRequest) => convert::issue_payouts, &[Role::Finance];
    settle_payout(pb::SettlePayoutRequest) => convert::settle_payout, &[Role::Finance];
    fail_payout(pb::FailPayoutRequest) => convert::fail_payout, &[Role::Finance];
    retry_payout(pb::RetryPayoutRequest) => convert::retry_payout, &[Role::Finance];
});
