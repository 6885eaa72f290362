//! `Queries` (the read models, with read-your-writes) and `Projections` (their status and
//! blue/green rebuilds).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use ledger::domain::events::{Line, PayoutFor};
use ledger::domain::ids::{DistributionId, MemberId, ProductionId, RecordId};
use ledger::money::Money;
use ledger::store::EventStore;
use ledger::time::Clock;
use projections::allocation::{
    AllocationStatus, AllocationView, CommentView, EntryKind, MoneyEntry, VersionChange,
};
use projections::family_tree::{Direction, LinkKind};
use projections::statement::PayoutState;
use projections::{Projection, ReadModels, WalkLimits};
use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status;
use crate::auth::{require, Role};

/// Walk limits when the caller gives none.
pub const FAMILY_TREE_DEPTH_DEFAULT: u32 = 10;
pub const FAMILY_TREE_NODES_DEFAULT: u32 = 10_000;

#[derive(Clone)]
pub struct QueryRpcs {
    models: Arc<ReadModels>,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    wait_max: Duration,
}

impl QueryRpcs {
    pub fn new(
        models: Arc<ReadModels>,
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        wait_max: Duration,
    ) -> QueryRpcs {
        QueryRpcs {
            models,
            store,
            clock,
            wait_max,
        }
    }
}

fn money(money: &Money) -> Option<pb::Money> {
    Some(pb::Money {
        amount: money.amount().to_string(),
        currency: money.currency().code().to_string(),
    })
}

fn line(line: &Line) -> pb::AllocationLine {
    pb::AllocationLine {
        member_id: line.member.to_string(),
        weight: line.weight.to_string(),
        rationale: line.rationale.clone(),
        record_ids: line.records.iter().map(ToString::to_string).collect(),
    }
}

fn payout_state(state: &PayoutState) -> (String, String) {
    match state {
        PayoutState::Pending => ("pending".into(), String::new()),
        PayoutState::Settled { reference } => ("settled".into(), reference.clone()),
        PayoutState::Failed { reason } => ("failed".into(), reason.clone()),
    }
}

fn money_entry(entry: &MoneyEntry) -> pb::MoneyEntry {
    let (kind, lead) = match &entry.kind {
        EntryKind::Revenue => ("revenue", String::new()),
        EntryKind::Expense => ("expense", String::new()),
        EntryKind::LeadFee { lead } => ("lead_fee", lead.to_string()),
    };
    pb::MoneyEntry {
        position: entry.position,
        recorded_at_micros: entry.recorded_at.unix_micros(),
        kind: kind.into(),
        lead_member_id: lead,
        amount: money(&entry.amount),
        description: entry.description.clone(),
    }
}

fn comment(comment: &CommentView) -> pb::Comment {
    pb::Comment {
        comment_id: comment.comment_id.to_string(),
        author_member_id: comment.author.to_string(),
        staff: comment.staff,
        line_member_id: comment
            .line
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reply_to_comment_id: comment
            .reply_to
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        body: comment.body.clone(),
        position: comment.position,
        recorded_at_micros: comment.recorded_at.unix_micros(),
        staff_reply_ids: comment
            .staff_replies
            .iter()
            .map(ToString::to_string)
            .collect(),
        answered: comment.answered,
    }
}

fn allocation(view: AllocationView, position: u64) -> pb::AllocationResponse {
    let pool = &view.pool;
    let totals = &view.totals;
    pb::AllocationResponse {
        position,
        distribution_id: view.distribution_id.to_string(),
        production_id: view.production_id.to_string(),
        status: match view.status {
            AllocationStatus::Proposed => "proposed",
            AllocationStatus::Finalized => "finalized",
            AllocationStatus::Paid => "paid",
        }
        .into(),
        pool: Some(pb::PoolComputation {
            revenue_total: money(&pool.revenue_total),
            expense_total: money(&pool.expense_total),
            artist_share: pool.artist_share.to_string(),
            earlier_pools: money(&pool.earlier_pools),
            pool: money(&pool.pool),
            revenues: pool.revenues.iter().map(money_entry).collect(),
            expenses: pool.expenses.iter().map(money_entry).collect(),
            earlier_distributions: pool
                .earlier_distributions
                .iter()
                .map(|(id, pool)| pb::EarlierPool {
                    distribution_id: id.to_string(),
                    pool: money(pool),
                })
                .collect(),
        }),
        published_at_micros: view.published_at.unix_micros(),
        window_closes_at_micros: view.window_closes_at.unix_micros(),
        lines: view
            .lines
            .iter()
            .map(|l| pb::LineView {
                member_id: l.member.to_string(),
                weight: l.weight.to_string(),
                rationale: l.rationale.clone(),
                record_ids: l.records.iter().map(ToString::to_string).collect(),
                amount: money(&l.amount),
                comments: l.comments.iter().map(comment).collect(),
            })
            .collect(),
        other_comments: view.other_comments.iter().map(comment).collect(),
        versions: view
            .versions
            .iter()
            .map(|v| {
                let mut version = pb::Version {
                    number: v.number,
                    position: v.position,
                    recorded_at_micros: v.recorded_at.unix_micros(),
                    ..pb::Version::default()
                };
                match &v.change {
                    VersionChange::Proposed { lines } => {
                        version.change = "proposed".into();
                        version.lines = lines.iter().map(line).collect();
                    }
                    VersionChange::Amended {
                        reason,
                        answers,
                        removed,
                        lines,
                    } => {
                        version.change = "amended".into();
                        version.reason = reason.clone();
                        version.answers_comment_ids =
                            answers.iter().map(ToString::to_string).collect();
                        version.removed_member_ids =
                            removed.iter().map(ToString::to_string).collect();
                        version.lines = lines.iter().map(line).collect();
                    }
                }
                version
            })
            .collect(),
        blockers: view.blockers.iter().map(ToString::to_string).collect(),
        finalized_at_micros: view.finalized_at.map(|t| t.unix_micros()),
        payouts: view
            .payouts
            .iter()
            .map(|p| {
                let (state, state_detail) = payout_state(&p.state);
                pb::PayoutView {
                    payout_id: p.payout_id.to_string(),
                    member_id: p.member.to_string(),
                    amount: money(&p.amount),
                    state,
                    state_detail,
                    attempts: p
                        .attempts
                        .iter()
                        .map(|a| {
                            let (outcome, detail) = payout_state(&a.outcome);
                            pb::Attempt {
                                attempt: a.attempt,
                                position: a.position,
                                outcome,
                                detail,
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
        totals: Some(pb::Totals {
            pool: money(&totals.pool),
            line_count: totals.line_count as u32,
            weight_total: totals.weight_total.to_string(),
            lines_total: money(&totals.lines_total),
            comment_count: totals.comment_count as u32,
            unanswered_count: totals.unanswered_count as u32,
            issued_total: money(&totals.issued_total),
            settled_total: money(&totals.settled_total),
            pending_total: money(&totals.pending_total),
            failed_total: money(&totals.failed_total),
        }),
    }
}

fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!(
        "{what} {id} does not exist (as of the projection's position)"
    ))
}

#[tonic::async_trait]
impl pb::queries_server::Queries for QueryRpcs {
    async fn get_family_tree(
        &self,
        request: Request<pb::FamilyTreeRequest>,
    ) -> Result<Response<pb::FamilyTreeResponse>, Status> {
        require(&request, &Role::ALL)?;
        let request = request.into_inner();
        let record = RecordId::new(request.record_id).map_err(status::invalid)?;
        let depth = if request.depth_max == 0 {
            FAMILY_TREE_DEPTH_DEFAULT
        } else {
            request.depth_max
        };
        let nodes = if request.nodes_max == 0 {
            FAMILY_TREE_NODES_DEFAULT
        } else {
            request.nodes_max
        };
        let limits = WalkLimits::new(depth, nodes as usize);
        let direction = pb::Direction::try_from(request.direction).unwrap_or(pb::Direction::Both);
        let (up, down) = match direction {
            pb::Direction::Ancestors => (true, false),
            pb::Direction::Descendants => (false, true),
            pb::Direction::Both | pb::Direction::Unspecified => (true, true),
        };
        let link = |link: projections::family_tree::Link| pb::Link {
            record_id: link.record.to_string(),
            kind: match link.kind {
                LinkKind::Remix => pb::LinkKind::Remix,
                LinkKind::Citation => pb::LinkKind::Citation,
            } as i32,
        };
        let answer = self
            .models
            .family_tree
            .query(request.min_position, self.wait_max, |tree| {
                let sources = tree.sources(&record)?;
                // Straight from node ids to the response: one String per record, the one
                // the message owns.
                let relatives = |direction: Direction| {
                    let walk = tree.lineage_nodes(record.as_str(), limits, direction)?;
                    let relatives = tree.with_names(|names| {
                        walk.nodes
                            .iter()
                            .map(|&(node, depth)| pb::Relative {
                                record_id: names.record(node).to_owned(),
                                depth,
                            })
                            .collect::<Vec<_>>()
                    });
                    Some((relatives, walk.truncated))
                };
                let (ancestors, ancestors_truncated) = if up {
                    relatives(Direction::Ancestors)?
                } else {
                    (Vec::new(), false)
                };
                let (descendants, descendants_truncated) = if down {
                    relatives(Direction::Descendants)?
                } else {
                    (Vec::new(), false)
                };
                let roots = tree.roots(&record, limits)?;
                let size = tree.family_size(&record, limits)?;
                Some(pb::FamilyTreeResponse {
                    position: 0,
                    record_id: record.to_string(),
                    withdrawn: tree.is_withdrawn(&record).unwrap_or(false),
                    sources: sources.into_iter().map(link).collect(),
                    remixes: tree.remixes(&record)?.into_iter().map(link).collect(),
                    ancestors,
                    descendants,
                    roots: roots.records.iter().map(ToString::to_string).collect(),
                    family_size: size.total as u64,
                    truncated: ancestors_truncated
                        || descendants_truncated
                        || roots.truncated
                        || size.truncated,
                })
            })
            .await
            .map_err(status::query_error)?;
        let mut response = answer
            .value
            .ok_or_else(|| not_found("record", record.as_str()))?;
        response.position = answer.position;
        Ok(Response::new(response))
    }

    async fn get_allocation(
        &self,
        request: Request<pb::AllocationRequest>,
    ) -> Result<Response<pb::AllocationResponse>, Status> {
        require(&request, &Role::ALL)?;
        let request = request.into_inner();
        let distribution = DistributionId::new(request.distribution_id).map_err(status::invalid)?;
        let now = self.clock.now();
        let answer = self
            .models
            .allocations
            .query(request.min_position, self.wait_max, |allocations| {
                allocations.distribution(&distribution, now)
            })
            .await
            .map_err(status::query_error)?;
        let view = answer
            .value
            .ok_or_else(|| not_found("distribution", distribution.as_str()))?;
        Ok(Response::new(allocation(view, answer.position)))
    }

    async fn get_credits(
        &self,
        request: Request<pb::CreditsRequest>,
    ) -> Result<Response<pb::CreditsResponse>, Status> {
        require(&request, &Role::ALL)?;
        let request = request.into_inner();
        let production = ProductionId::new(request.production_id).map_err(status::invalid)?;
        let answer = self
            .models
            .credits
            .query(request.min_position, self.wait_max, |credits| {
                credits.production(&production)
            })
            .await
            .map_err(status::query_error)?;
        let credits = answer
            .value
            .ok_or_else(|| not_found("production", production.as_str()))?;
        let credit = |c: &projections::credits::Credit| pb::Credit {
            member_id: c.member.to_string(),
            record_ids: c.records.iter().map(ToString::to_string).collect(),
        };
        Ok(Response::new(pb::CreditsResponse {
            position: answer.position,
            production_id: credits.production_id.to_string(),
            included: credits.included.iter().map(credit).collect(),
            influencing: credits.influencing.iter().map(credit).collect(),
        }))
    }

    async fn get_statement(
        &self,
        request: Request<pb::StatementRequest>,
    ) -> Result<Response<pb::StatementResponse>, Status> {
        require(&request, &Role::ALL)?;
        let request = request.into_inner();
        let member = MemberId::new(request.member_id).map_err(status::invalid)?;
        let answer = self
            .models
            .statements
            .query(request.min_position, self.wait_max, |statements| {
                statements.member(&member)
            })
            .await
            .map_err(status::query_error)?;
        let statement = answer
            .value
            .ok_or_else(|| not_found("member", member.as_str()))?;
        let derivation = |d: &projections::statement::Derivation| pb::Derivation {
            source_record_id: d.source.to_string(),
            record_id: d.record.to_string(),
            contributor_member_id: d.contributor.to_string(),
        };
        Ok(Response::new(pb::StatementResponse {
            position: answer.position,
            member_id: statement.member.to_string(),
            payouts: statement
                .payouts
                .iter()
                .map(|p| {
                    let (state, state_detail) = payout_state(&p.state);
                    let (distribution_id, project_id) = match &p.paid_for {
                        PayoutFor::Line { distribution_id } => {
                            (distribution_id.to_string(), String::new())
                        }
                        PayoutFor::LeadFee { project_id } => {
                            (String::new(), project_id.to_string())
                        }
                    };
                    pb::StatementPayout {
                        payout_id: p.payout_id.to_string(),
                        amount: money(&p.amount),
                        distribution_id,
                        project_id,
                        line: p.line.as_ref().map(line),
                        state,
                        state_detail,
                        attempt: p.attempt,
                        issued_at_position: p.issued_at_position,
                    }
                })
                .collect(),
            records: statement
                .records
                .iter()
                .map(|r| pb::StatementRecord {
                    record_id: r.record.to_string(),
                    withdrawn: r.withdrawn,
                })
                .collect(),
            remixes: statement.remixes.iter().map(derivation).collect(),
            citations: statement.citations.iter().map(derivation).collect(),
        }))
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::RebuildProgress, Status>> + Send>>;

/// Progress messages buffered per rebuild call; intermediate ones are dropped when the
/// client reads slowly, the final one never is.
const REBUILD_PROGRESS_BUFFER: usize = 64;

#[tonic::async_trait]
impl pb::projections_server::Projections for QueryRpcs {
    type RebuildStream = ProgressStream;

    async fn status(
        &self,
        request: Request<pb::ProjectionStatusRequest>,
    ) -> Result<Response<pb::ProjectionStatusResponse>, Status> {
        require(&request, &[Role::Operator])?;
        let head = self
            .store
            .head()
            .await
            .map_err(status::store_error)?
            .position;
        let models = &self.models;
        let status = |name: &str, schema_version: u32, position: u64, generation: u64| {
            pb::ProjectionStatus {
                name: name.to_string(),
                schema_version,
                checkpoint_position: position,
                lag_events: head.saturating_sub(position),
                generation,
            }
        };
        let projections = vec![
            status(
                models.family_tree.name(),
                projections::family_tree::FamilyTree::SCHEMA_VERSION,
                models.family_tree.checkpoint().position,
                models.family_tree.generation(),
            ),
            status(
                models.allocations.name(),
                projections::allocation::Allocations::SCHEMA_VERSION,
                models.allocations.checkpoint().position,
                models.allocations.generation(),
            ),
            status(
                models.credits.name(),
                projections::credits::Credits::SCHEMA_VERSION,
                models.credits.checkpoint().position,
                models.credits.generation(),
            ),
            status(
                models.statements.name(),
                projections::statement::Statements::SCHEMA_VERSION,
                models.statements.checkpoint().position,
                models.statements.generation(),
            ),
        ];
        for projection in &projections {
            crate::metrics::projection_lag(
                projection_name(&projection.name),
                projection.lag_events,
            );
        }
        Ok(Response::new(pb::ProjectionStatusResponse {
            head_position: head,
            projections,
        }))
    }

    async fn rebuild(
        &self,
        request: Request<pb::RebuildRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        require(&request, &[Role::Operator])?;
        let names = request.into_inner().projections;
        for name in &names {
            if !projections::PROJECTION_NAMES.contains(&name.as_str()) {
                return Err(status::invalid(ledger::store::InvalidInput::new(
                    "projections",
                    format!(
                        "unknown projection {name:?}; known: {}",
                        projections::PROJECTION_NAMES.join(", ")
                    ),
                )));
            }
        }
        let (sender, receiver) = mpsc::channel(REBUILD_PROGRESS_BUFFER);
        let models = self.models.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let progress = |p: &projections::Progress| pb::RebuildProgress {
                projections: p.projections.iter().map(|n| n.to_string()).collect(),
                position: p.position,
                head: p.head,
                events_per_second: p.events_per_second,
                eta_seconds: p.eta.map(|eta| eta.as_secs_f64()),
                switched: p.switched,
            };
            let intermediate = sender.clone();
            let outcome = models
                .rebuild(store, &names, |p| {
                    let _ = intermediate.try_send(Ok(progress(p)));
                })
                .await;
            let last = match outcome {
                Ok(report) => Ok(pb::RebuildProgress {
                    projections: report.projections.iter().map(|n| n.to_string()).collect(),
                    position: report.position,
                    head: report.position,
                    events_per_second: report.events_per_second,
                    eta_seconds: Some(0.0),
                    switched: true,
                }),
                Err(error) => Err(status::rebuild_error(error)),
            };
            let _ = sender.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

fn projection_name(name: &str) -> &'static str {
    projections::PROJECTION_NAMES
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("unknown")
}
