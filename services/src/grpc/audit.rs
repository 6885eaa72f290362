//! `Audit`: the auditor's tools of `ledger::audit` (the same code as `stemma audit …`)
//! over gRPC, for the `auditor` role only.
//!
//! Verify, Explain and Statement read the data directory's segment files through
//! `store::embedded::snapshot` — read-only, never the writer's lock — rather than through
//! the `EventStore` trait: verifying means checking the bytes on disk (frames, checksums,
//! segment headers), which the store has already accepted and hidden by the time it hands
//! out an event, and a pass reading the log through the store would compete with the
//! writer for its index. Each pass runs on a blocking thread (it is CPU and disk bound for
//! seconds to minutes), at most `limits.concurrent_audit_passes_max` at once.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use ledger::audit::explain::{self, EventRef, PayoutExplanation, Statement};
use ledger::audit::{self, AuditError, Checkpoint, Finding, Progress, VerifyOptions, VerifyReport};
use ledger::domain::ids::{MemberId, PayoutId};
use ledger::store::{EventStore, Hash32, InvalidInput};
use proto::v1 as pb;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};

use super::status;
use crate::auth::{require, Role};

/// Messages buffered per Verify call between the pass and the connection. Progress is
/// dropped when the buffer is full; findings and the summary wait for room.
pub const VERIFY_BUFFER_MESSAGES: usize = 64;

/// Who may audit. The operator is left out on purpose: explanations and statements show
/// each member's money, which the operator's work (projections, store status) never needs,
/// and the operator reads the head through `Admin.StoreStatus`.
const AUDITORS: &[Role] = &[Role::Auditor];

#[derive(Clone)]
pub struct AuditRpcs {
    data: PathBuf,
    store: Arc<dyn EventStore>,
    passes: Arc<Semaphore>,
    passes_max: usize,
    /// Turns true when the server shuts down: running passes stop and their streams end
    /// (a graceful shutdown waits for every open call).
    shutting_down: watch::Receiver<bool>,
}

impl AuditRpcs {
    pub fn new(
        data: PathBuf,
        store: Arc<dyn EventStore>,
        concurrent_audit_passes_max: usize,
        shutting_down: watch::Receiver<bool>,
    ) -> AuditRpcs {
        AuditRpcs {
            data,
            store,
            passes: Arc::new(Semaphore::new(concurrent_audit_passes_max)),
            passes_max: concurrent_audit_passes_max,
            shutting_down,
        }
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.passes
            .clone()
            .try_acquire_owned()
            .map_err(|_| status::audit_passes_exhausted(self.passes_max))
    }

    /// Runs `work` on a blocking thread, holding one audit pass until it returns. `work`
    /// gets a stop signal: true once the caller has gone away (tonic drops this future,
    /// and with it the `CallerGone` guard) or the server shuts down, so the pass stops at
    /// its next commit and frees its thread and its slot.
    async fn run_pass<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path, &dyn Fn() -> bool) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, Status> {
        let permit = self.admit()?;
        let data = self.data.clone();
        let caller_gone = CallerGone::default();
        let gone = Arc::clone(&caller_gone.0);
        let shutting_down = self.shutting_down.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let stop = || gone.load(Ordering::Relaxed) || *shutting_down.borrow();
            work(&data, &stop)
        })
        .await
        .map_err(status::audit_task_failed)?
        .map_err(status::audit_error)
    }
}

/// Set when dropped: held by a unary audit call's future, which tonic drops when the
/// caller goes away (or after the answer is sent, when the pass has returned already).
#[derive(Default)]
struct CallerGone(Arc<AtomicBool>);

impl Drop for CallerGone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type VerifyItem = Result<pb::VerifyMessage, Status>;
type VerifyStream = Pin<Box<dyn Stream<Item = VerifyItem> + Send>>;

/// A Verify call's response stream. It holds the call's audit pass until its last message
/// (the summary or an error) is taken, or until it is dropped (the client went away), so a
/// call counts against the limit for as long as it is open, read or not; the pass's thread
/// holds the same permit until it returns.
struct PassStream {
    receiver: mpsc::Receiver<VerifyItem>,
    permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl Stream for PassStream {
    type Item = VerifyItem;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<VerifyItem>> {
        let polled = self.receiver.poll_recv(context);
        let last = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(message))) => {
                matches!(message.kind, Some(pb::verify_message::Kind::Summary(_)))
            }
            Poll::Pending => false,
        };
        if last {
            self.permit = None;
        }
        polled
    }
}

/// The checkpoint a Verify request names, checked.
fn requested_checkpoint(request: &pb::VerifyRequest) -> Result<Option<Checkpoint>, Status> {
    match (request.until_position, &request.expect_head_hash) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(status::invalid(InvalidInput::new(
            "expect_head_hash",
            "is required with until_position: the hash recorded for that position",
        ))),
        (None, Some(_)) => Err(status::invalid(InvalidInput::new(
            "until_position",
            "is required with expect_head_hash: the position whose hash it is",
        ))),
        (Some(0), Some(_)) => Err(status::invalid(InvalidInput::new(
            "until_position",
            "must be at least 1 (positions start at 1)",
        ))),
        (Some(position), Some(hash)) => {
            let hash = Hash32::from_hex(hash).map_err(|_| {
                status::invalid(InvalidInput::new(
                    "expect_head_hash",
                    "must be 64 hexadecimal digits",
                ))
            })?;
            Ok(Some(Checkpoint { position, hash }))
        }
    }
}

fn progress_message(progress: &Progress, target_position: u64) -> pb::VerifyMessage {
    pb::VerifyMessage {
        kind: Some(pb::verify_message::Kind::Progress(pb::VerifyProgress {
            position: progress.position,
            target_position,
            events: progress.events,
            findings: progress.findings,
            bytes_read: progress.bytes_read,
            bytes_total: progress.bytes_total,
        })),
    }
}

fn finding_message(finding: Finding) -> pb::VerifyMessage {
    // The file name only: the server's directory layout is none of the caller's business.
    let segment = finding
        .segment
        .as_deref()
        .map(|path| {
            Path::new(path)
                .file_name()
                .map_or_else(|| path.to_string(), |name| name.to_string_lossy().into())
        })
        .unwrap_or_default();
    pb::VerifyMessage {
        kind: Some(pb::verify_message::Kind::Finding(pb::VerifyFinding {
            position: finding.position,
            check: finding.check.to_string(),
            rule: finding.rule.to_string(),
            stream_id: finding.stream_id.unwrap_or_default(),
            event_type: finding.event_type.unwrap_or_default(),
            segment,
            offset: finding.offset,
            expected: finding.expected,
            found: finding.found,
        })),
    }
}

fn summary_message(report: &VerifyReport) -> pb::VerifyMessage {
    pb::VerifyMessage {
        kind: Some(pb::verify_message::Kind::Summary(pb::VerifySummary {
            clean: report.is_clean(),
            head_position: report.head_position,
            head_hash: report.head_hash.clone(),
            events: report.events,
            segments: report.segments as u64,
            semantic: report.semantic,
            findings: report.findings.len() as u64 + report.findings_dropped,
            findings_dropped: report.findings_dropped,
            checkpoint_position: report.checkpoint.map_or(0, |c| c.position),
            checkpoint_verified: report.checkpoint_verified.unwrap_or(false),
            tail_ignored_bytes: report.tail_ignored.as_ref().map_or(0, |tail| tail.bytes),
        })),
    }
}

/// Waits for room in the client's buffer. `false` if the client went away or the server
/// is shutting down.
async fn deliver(
    sender: &mpsc::Sender<VerifyItem>,
    item: VerifyItem,
    shutting_down: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = sender.send(item) => sent.is_ok(),
        _ = shutting_down.wait_for(|down| *down) => false,
    }
}

/// Runs one verification pass on a blocking thread and feeds the client: progress while it
/// runs (dropped when the client reads slowly), then every finding, then the summary.
async fn feed_verify(
    data: PathBuf,
    options: VerifyOptions,
    sender: mpsc::Sender<VerifyItem>,
    permit: Arc<OwnedSemaphorePermit>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let target_position = options.checkpoint.map_or(0, |c| c.position);
    let pass = {
        let sender = sender.clone();
        let shutting_down = shutting_down.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut progress = |progress: &Progress| {
                let _ = sender.try_send(Ok(progress_message(progress, target_position)));
            };
            let stop = || sender.is_closed() || *shutting_down.borrow();
            audit::verify_until_stopped(&data, options, &mut progress, &stop)
        })
    };
    let outcome = tokio::select! {
        joined = pass => joined,
        _ = shutting_down.wait_for(|down| *down) => {
            // The pass sees the same signal before its next commit and stops.
            let _ = sender.try_send(Err(Status::unavailable(
                "the server is shutting down; verify again once it is back",
            )));
            return;
        }
    };
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            if !sender.is_closed() {
                deliver(&sender, Err(status::audit_error(error)), &mut shutting_down).await;
            }
            return;
        }
        Err(error) => {
            deliver(
                &sender,
                Err(status::audit_task_failed(error)),
                &mut shutting_down,
            )
            .await;
            return;
        }
    };
    let summary = summary_message(&report);
    for finding in report.findings {
        if !deliver(&sender, Ok(finding_message(finding)), &mut shutting_down).await {
            return;
        }
    }
    deliver(&sender, Ok(summary), &mut shutting_down).await;
}

/// The library's money text (`"50.00 USD"`, `Money`'s display) as the API's `Money`;
/// absent where the log did not give the figure (an empty text).
fn money(text: &str) -> Option<pb::Money> {
    if text.is_empty() {
        return None;
    }
    let (amount, currency) = text.rsplit_once(' ').unwrap_or((text, ""));
    Some(pb::Money {
        amount: amount.to_string(),
        currency: currency.to_string(),
    })
}

fn event_ref(event: &EventRef) -> Option<pb::AuditEventRef> {
    Some(pb::AuditEventRef {
        position: event.position,
        hash: event.hash.clone(),
        event_type: event.event_type.clone(),
        recorded_at_micros: event.recorded_at_micros,
    })
}

fn count(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn explanation(e: PayoutExplanation) -> pb::PayoutExplanation {
    let distribution = e.distribution.map(|d| pb::DistributionExplanation {
        distribution_id: d.distribution_id,
        production_id: d.production_id,
        proposed: event_ref(&d.proposed),
        finalized: d.finalized.as_ref().and_then(event_ref),
        revenue_total: money(&d.revenue_total),
        expense_total: money(&d.expense_total),
        artist_share: d.artist_share,
        entitlement: money(&d.entitlement),
        earlier_pools: money(&d.earlier_pools),
        pool: money(&d.pool),
        money: d
            .money
            .iter()
            .map(|fact| pb::MoneyFact {
                event: event_ref(&fact.event),
                kind: fact.kind.to_string(),
                amount: money(&fact.amount),
                description: fact.description.clone(),
            })
            .collect(),
        line: d.line.map(|line| pb::LineExplanation {
            member_id: line.member,
            weight: line.weight,
            rationale: line.rationale,
            record_ids: line.records,
            line_number: count(line.line_number),
            line_count: count(line.line_count),
            weight_total: line.weight_total,
            exact_amount: line.exact_amount,
            rounded_down: money(&line.rounded_down),
            leftover_unit: line.leftover_unit,
            amount: money(&line.amount),
        }),
        amendments: d
            .amendments
            .into_iter()
            .map(|a| pb::LineAmendment {
                event: event_ref(&a.event),
                reason: a.reason,
                answers_comment_ids: a.answers,
                change: a.change.to_string(),
                weight: a.weight,
                record_ids: a.records,
            })
            .collect(),
        comments: d
            .comments
            .into_iter()
            .map(|c| pb::LineComment {
                event: event_ref(&c.event),
                comment_id: c.comment_id,
                author_member_id: c.author,
                staff: c.staff,
                reply_to_comment_id: c.reply_to.unwrap_or_default(),
                body: c.body,
            })
            .collect(),
        credited_ancestors: d
            .credited_ancestors
            .into_iter()
            .map(|a| pb::CreditedAncestor {
                record_id: a.record_id,
                contributor_member_id: a.contributor,
                depth: a.depth,
            })
            .collect(),
    });
    pb::PayoutExplanation {
        payout_id: e.payout_id,
        member_id: e.member,
        amount: money(&e.amount),
        state: e.state,
        issued: event_ref(&e.issued),
        attempts: e
            .attempts
            .iter()
            .map(|a| pb::PayoutAttempt {
                event: event_ref(&a.event),
                attempt: a.attempt,
                outcome: a.outcome.to_string(),
                detail: a.detail.clone(),
            })
            .collect(),
        distribution,
        lead_fee: e.lead_fee.map(|fee| pb::LeadFeeExplanation {
            project_id: fee.project_id,
            fee: money(&fee.fee),
            agreed: fee.agreed.as_ref().and_then(event_ref),
        }),
    }
}

fn statement(s: Statement) -> pb::AuditStatement {
    pb::AuditStatement {
        member_id: s.member,
        payouts: s
            .payouts
            .into_iter()
            .map(|p| pb::AuditStatementPayout {
                payout_id: p.payout_id,
                amount: money(&p.amount),
                state: p.state,
                paying: p.paying,
                issued: event_ref(&p.issued),
            })
            .collect(),
        totals: s
            .totals
            .into_iter()
            .map(|t| pb::AuditStatementTotal {
                currency: t.currency,
                issued: money(&t.issued),
                settled: money(&t.settled),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditRpcs {
    type VerifyStream = VerifyStream;

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<VerifyStream>, Status> {
        require(&request, AUDITORS)?;
        let request = request.into_inner();
        let requested = requested_checkpoint(&request)?;
        let permit = Arc::new(self.admit()?);
        // Without a checkpoint, up to the durable head: a commit that another reader could
        // already see whole on disk may not be synced yet (see `snapshot`), and the event
        // at the head must be the one the server holds in memory.
        let checkpoint = match requested {
            Some(checkpoint) => Some(checkpoint),
            None => {
                let head = self.store.head().await.map_err(status::store_error)?;
                (head.position > 0).then_some(Checkpoint {
                    position: head.position,
                    hash: head.hash,
                })
            }
        };
        let options = VerifyOptions {
            semantic: request.semantic,
            checkpoint,
            // The pass's own thread only: the server's cores serve commands and queries
            // first; an auditor in a hurry runs `stemma audit verify` beside it.
            workers: 1,
        };
        let (sender, receiver) = mpsc::channel(VERIFY_BUFFER_MESSAGES);
        tokio::spawn(feed_verify(
            self.data.clone(),
            options,
            sender,
            permit.clone(),
            self.shutting_down.clone(),
        ));
        Ok(Response::new(Box::pin(PassStream {
            receiver,
            permit: Some(permit),
        })))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::PayoutExplanation>, Status> {
        require(&request, AUDITORS)?;
        let payout_id = PayoutId::new(request.into_inner().payout_id).map_err(status::invalid)?;
        let explained = {
            let payout_id = payout_id.clone();
            self.run_pass(move |data, stop| {
                explain::explain_payout_until_stopped(data, &payout_id, stop)
            })
            .await?
        };
        let explained = explained
            .ok_or_else(|| Status::not_found(format!("payout {payout_id} is not in the log")))?;
        Ok(Response::new(explanation(explained)))
    }

    async fn head(
        &self,
        request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::HeadResponse>, Status> {
        require(&request, AUDITORS)?;
        let head = self.store.head().await.map_err(status::store_error)?;
        Ok(Response::new(pb::HeadResponse {
            position: head.position,
            hash: head.hash.to_hex(),
        }))
    }

    async fn statement(
        &self,
        request: Request<pb::AuditStatementRequest>,
    ) -> Result<Response<pb::AuditStatement>, Status> {
        require(&request, AUDITORS)?;
        let member = MemberId::new(request.into_inner().member_id).map_err(status::invalid)?;
        let found = self
            .run_pass(move |data, stop| explain::statement_until_stopped(data, &member, stop))
            .await?;
        Ok(Response::new(statement(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_text_splits_into_amount_and_currency() {
        let parsed = money("50000.00 USD").unwrap();
        assert_eq!(
            (parsed.amount.as_str(), parsed.currency.as_str()),
            ("50000.00", "USD")
        );
        assert_eq!(money(""), None);
    }

    #[test]
    fn a_checkpoint_needs_both_its_position_and_its_hash() {
        let field = |request: pb::VerifyRequest| {
            use tonic_types::StatusExt;
            let status = requested_checkpoint(&request).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            status
                .get_error_details()
                .bad_request()
                .unwrap()
                .field_violations[0]
                .field
                .clone()
        };
        let hash = Some("ab".repeat(32));
        assert_eq!(
            field(pb::VerifyRequest {
                until_position: Some(3),
                ..Default::default()
            }),
            "expect_head_hash"
        );
        assert_eq!(
            field(pb::VerifyRequest {
                expect_head_hash: hash.clone(),
                ..Default::default()
            }),
            "until_position"
        );
        assert_eq!(
            field(pb::VerifyRequest {
                until_position: Some(0),
                expect_head_hash: hash.clone(),
                ..Default::default()
            }),
            "until_position"
        );
        assert_eq!(
            field(pb::VerifyRequest {
                until_position: Some(3),
                expect_head_hash: Some("xyz".into()),
                ..Default::default()
            }),
            "expect_head_hash"
        );
        let checkpoint = requested_checkpoint(&pb::VerifyRequest {
            until_position: Some(3),
            expect_head_hash: hash,
            semantic: true,
        })
        .unwrap()
        .unwrap();
        assert_eq!(checkpoint.position, 3);
        assert_eq!(checkpoint.hash.to_hex(), "ab".repeat(32));
    }
}
