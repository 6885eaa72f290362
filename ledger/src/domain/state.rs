//! The write side's state: just what the rules need, held in memory, built only by
//! `evolve`. Records are dense DAG nodes, so the family tree costs a few integers each.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The state's maps: foldhash, keyed per process (ids come from clients, so the hasher
/// must not be predictable), instead of SipHash, which alone was a twentieth of the audit
/// replay's profile.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use super::events::{CommentTarget, Line, StreamRef};
use super::ids::*;
use crate::chunked::ChunkedVec;
use crate::dag::{Dag, NodeId};
use crate::money::{ArtistShare, Currency, Money};
use crate::sharded::ShardedMap;
use crate::store::StreamVersion;
use crate::time::Timestamp;

#[derive(Clone, Debug)]
pub struct Member {
    pub version: StreamVersion,
    pub erased: bool,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub version: StreamVersion,
    pub production: Option<ProductionId>,
    pub lead_fees: BTreeMap<MemberId, Money>,
    pub leads: BTreeSet<MemberId>,
    pub finished: bool,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: RecordId,
    pub version: StreamVersion,
    pub contributor: MemberId,
    pub withdrawn: bool,
}

#[derive(Clone, Debug)]
pub struct Comment {
    pub target: CommentTarget,
    pub staff: bool,
}

#[derive(Clone, Debug)]
pub struct Production {
    pub version: StreamVersion,
    pub project_id: ProjectId,
    pub currency: Currency,
    pub artist_share: ArtistShare,
    pub feedback_window_micros: i64,
    /// Included records, in order of inclusion.
    pub included: Vec<NodeId>,
    pub included_set: HashSet<NodeId>,
    pub revenue_total: Money,
    /// Expenses, lead fees among them.
    pub expense_total: Money,
    /// Σ pools of the distributions proposed so far.
    pub pools_total: Money,
    pub open_distribution: Option<DistributionId>,
}

#[derive(Clone, Debug)]
pub struct Distribution {
    pub version: StreamVersion,
    pub production_id: ProductionId,
    pub pool: Money,
    pub window_closes_at: Timestamp,
    pub lines: Vec<Line>,
    /// Member → index in `lines`.
    pub line_index: HashMap<MemberId, usize>,
    /// Member comments on this distribution without a staff reply yet.
    pub unanswered: BTreeSet<CommentId>,
    /// The final amounts, in line order, once finalized.
    pub amounts: Option<Vec<Money>>,
    pub payouts_issued: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutStatus {
    /// Issued or retried: the current attempt has not settled or failed yet.
    Pending,
    Failed,
    Settled,
}

impl PayoutStatus {
    pub fn name(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Settled => "settled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Payout {
    pub version: StreamVersion,
    pub member: MemberId,
    pub amount: Money,
    pub status: PayoutStatus,
    pub attempt: u32,
}

/// The maps only grow, and are split (`ShardedMap`) so that no one insert moves them whole:
/// the decider decides one command at a time, and a doubling of one map pauses them all.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(super) members: ShardedMap<MemberId, Member>,
    pub(super) projects: ShardedMap<ProjectId, Project>,
    pub(super) record_nodes: ShardedMap<RecordId, NodeId>,
    /// Indexed by node id; chunked, so that growing never moves them (see `chunked`).
    pub(super) records: ChunkedVec<Record>,
    pub(super) tree: Dag,
    pub(super) comments: ShardedMap<CommentId, Comment>,
    pub(super) productions: ShardedMap<ProductionId, Production>,
    pub(super) distributions: ShardedMap<DistributionId, Distribution>,
    pub(super) payouts: ShardedMap<PayoutId, Payout>,
}

/// Who is credited on a production (rule 10).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credits {
    /// Contributors of included records: paid.
    pub paid: BTreeSet<MemberId>,
    /// Contributors of ancestors of included records who are not in `paid`: credited for
    /// their influence, and paid only where a line says so.
    pub influence: BTreeSet<MemberId>,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn project(&self, id: &ProjectId) -> Option<&Project> {
        self.projects.get(id)
    }

    pub fn record(&self, id: &RecordId) -> Option<&Record> {
        self.record_nodes
            .get(id)
            .map(|node| &self.records[*node as usize])
    }

    pub fn record_node(&self, id: &RecordId) -> Option<NodeId> {
        self.record_nodes.get(id).copied()
    }

    pub fn record_at(&self, node: NodeId) -> &Record {
        &self.records[node as usize]
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    pub fn tree(&self) -> &Dag {
        &self.tree
    }

    pub fn production(&self, id: &ProductionId) -> Option<&Production> {
        self.productions.get(id)
    }

    pub fn distribution(&self, id: &DistributionId) -> Option<&Distribution> {
        self.distributions.get(id)
    }

    pub fn payout(&self, id: &PayoutId) -> Option<&Payout> {
        self.payouts.get(id)
    }

    pub fn comment(&self, id: &CommentId) -> Option<&Comment> {
        self.comments.get(id)
    }

    /// Members whose personal data is erased: the decider makes sure their keys are gone.
    pub fn erased_members(&self) -> impl Iterator<Item = &MemberId> {
        self.members
            .iter()
            .filter(|(_, member)| member.erased)
            .map(|(id, _)| id)
    }

    /// The stream's current version (0 when it has no event).
    pub fn stream_version(&self, stream: &StreamRef) -> StreamVersion {
        match stream {
            StreamRef::Member(id) => self.members.get(id).map_or(0, |m| m.version),
            StreamRef::Project(id) => self.projects.get(id).map_or(0, |p| p.version),
            StreamRef::Record(id) => self.record(id).map_or(0, |r| r.version),
            StreamRef::Production(id) => self.productions.get(id).map_or(0, |p| p.version),
            StreamRef::Distribution(id) => self.distributions.get(id).map_or(0, |d| d.version),
            StreamRef::Payout(id) => self.payouts.get(id).map_or(0, |p| p.version),
        }
    }

    /// The credits of a production (rule 10).
    pub fn credits(&self, production: &Production) -> Credits {
        let mut credits = Credits::default();
        for node in &production.included {
            credits
                .paid
                .insert(self.record_at(*node).contributor.clone());
        }
        for node in self.payable_records(production) {
            let contributor = &self.record_at(node).contributor;
            if !credits.paid.contains(contributor) {
                credits.influence.insert(contributor.clone());
            }
        }
        credits
    }

    /// Included records and every ancestor of one: the records a line may pay for.
    pub fn payable_records(&self, production: &Production) -> HashSet<NodeId> {
        let mut payable: HashSet<NodeId> = production.included.iter().copied().collect();
        let mut stack: Vec<NodeId> = production.included.clone();
        while let Some(node) = stack.pop() {
            for parent in self.tree.parents(node) {
                if payable.insert(*parent) {
                    stack.push(*parent);
                }
            }
        }
        payable
    }
}
