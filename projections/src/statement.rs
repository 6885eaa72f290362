//! Member statements: every payout to a member with its distribution, line and state; the
//! member's records; the remixes of their records and the citations of their work.

use std::collections::BTreeMap;

use ledger::dag::NodeId;
use ledger::domain::events::{DomainEvent, Line, PayoutFor};
use ledger::domain::ids::{DistributionId, MemberId, PayoutId, RecordId};
use ledger::money::Money;
use ledger::store::Position;
use serde::{Deserialize, Serialize};

use crate::interner::Interner;
use crate::projection::{decode_serde, encode_serde, AppliedEvent, Projection};

/// Where a payout stands: its current attempt's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutState {
    /// Issued or retried; the attempt has not settled or failed yet.
    Pending,
    Settled {
        reference: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementPayout {
    pub payout_id: PayoutId,
    pub amount: Money,
    pub paid_for: PayoutFor,
    /// The member's line as finalized (for a line payout).
    pub line: Option<Line>,
    pub state: PayoutState,
    pub attempt: u32,
    pub issued_at_position: Position,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRecord {
    pub record: RecordId,
    pub withdrawn: bool,
}

/// A record built on one of the member's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivation {
    /// The member's record.
    pub source: RecordId,
    /// The record built on it.
    pub record: RecordId,
    pub contributor: MemberId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatement {
    pub member: MemberId,
    pub payouts: Vec<StatementPayout>,
    pub records: Vec<StatementRecord>,
    pub remixes: Vec<Derivation>,
    pub citations: Vec<Derivation>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MemberEntry {
    records: Vec<NodeId>,
    /// `(record built on it, member's record)`.
    remixes: Vec<(NodeId, NodeId)>,
    citations: Vec<(NodeId, NodeId)>,
    payouts: Vec<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Statements {
    members: Interner,
    member_entries: Vec<MemberEntry>,
    records: Interner,
    /// Indexed by record node.
    contributors: Vec<u32>,
    withdrawn: Vec<bool>,
    payout_ids: Interner,
    payouts: Vec<(u32, StatementPayout)>,
    /// The current lines of each distribution by member, so a payout names its line.
    lines: BTreeMap<DistributionId, BTreeMap<MemberId, Line>>,
}

impl Statements {
    fn member_index(&mut self, member: &MemberId) -> u32 {
        let index = self.members.intern(member.as_str());
        if index as usize == self.member_entries.len() {
            self.member_entries.push(MemberEntry::default());
        }
        index
    }

    fn record_id(&self, node: NodeId) -> RecordId {
        RecordId::new(self.records.resolve(node)).expect("only valid ids are interned")
    }

    fn derivation(&self, (record, source): (NodeId, NodeId)) -> Derivation {
        Derivation {
            source: self.record_id(source),
            record: self.record_id(record),
            contributor: MemberId::new(self.members.resolve(self.contributors[record as usize]))
                .expect("only valid ids are interned"),
        }
    }

    pub fn member(&self, member: &MemberId) -> Option<MemberStatement> {
        let index = self.members.get(member.as_str())?;
        let entry = &self.member_entries[index as usize];
        Some(MemberStatement {
            member: member.clone(),
            payouts: entry
                .payouts
                .iter()
                .map(|payout| self.payouts[*payout as usize].1.clone())
                .collect(),
            records: entry
                .records
                .iter()
                .map(|node| StatementRecord {
                    record: self.record_id(*node),
                    withdrawn: self.withdrawn[*node as usize],
                })
                .collect(),
            remixes: entry.remixes.iter().map(|d| self.derivation(*d)).collect(),
            citations: entry
                .citations
                .iter()
                .map(|d| self.derivation(*d))
                .collect(),
        })
    }

    fn add_record(&mut self, record: &RecordId, contributor: &MemberId, sources: &[RecordId]) {
        let Ok(node) = self.records.insert(record.as_str()) else {
            return;
        };
        let member = self.member_index(contributor);
        self.contributors.push(member);
        self.withdrawn.push(false);
        self.member_entries[member as usize].records.push(node);
        for source in sources {
            if let Some(source) = self.records.get(source.as_str()) {
                let owner = self.contributors[source as usize];
                self.member_entries[owner as usize]
                    .remixes
                    .push((node, source));
            }
        }
    }

    fn payout_mut(&mut self, payout_id: &PayoutId) -> Option<&mut StatementPayout> {
        let index = self.payout_ids.get(payout_id.as_str())?;
        Some(&mut self.payouts[index as usize].1)
    }
}

fn upsert_lines(current: &mut BTreeMap<MemberId, Line>, lines: &[Line]) {
    for line in lines {
        current.insert(line.member.clone(), line.clone());
    }
}

impl Projection for Statements {
    const NAME: &'static str = "statements";
    const SCHEMA_VERSION: u32 = 1;

    fn apply(&mut self, applied: &AppliedEvent) {
        match &applied.event {
            DomainEvent::MemberRegistered(e) => {
                self.member_index(&e.member_id);
            }
            DomainEvent::RecordUploaded(e) => self.add_record(&e.record_id, &e.contributor, &[]),
            DomainEvent::RemixUploaded(e) => {
                self.add_record(&e.record_id, &e.contributor, &e.sources)
            }
            DomainEvent::SourceCited(e) => {
                if let (Some(record), Some(source)) = (
                    self.records.get(e.record_id.as_str()),
                    self.records.get(e.source_id.as_str()),
                ) {
                    let owner = self.contributors[source as usize];
                    self.member_entries[owner as usize]
                        .citations
                        .push((record, source));
                }
            }
            DomainEvent::RecordWithdrawn(e) => {
                if let Some(node) = self.records.get(e.record_id.as_str()) {
                    self.withdrawn[node as usize] = true;
                }
            }
            DomainEvent::AllocationProposed(e) => {
                let mut lines = BTreeMap::new();
                upsert_lines(&mut lines, &e.lines);
                self.lines.insert(e.distribution_id.clone(), lines);
            }
            DomainEvent::AllocationLinesContinued(e) => {
                if let Some(current) = self.lines.get_mut(&e.distribution_id) {
                    upsert_lines(current, &e.lines);
                }
            }
            DomainEvent::AllocationAmended(e) => {
                if let Some(current) = self.lines.get_mut(&e.distribution_id) {
                    for member in &e.removed {
                        current.remove(member);
                    }
                    upsert_lines(current, &e.lines);
                }
            }
            DomainEvent::PayoutIssued(e) => {
                let Ok(index) = self.payout_ids.insert(e.payout_id.as_str()) else {
                    return;
                };
                let member = self.member_index(&e.member);
                let line = match &e.payout_for {
                    PayoutFor::Line { distribution_id } => self
                        .lines
                        .get(distribution_id)
                        .and_then(|lines| lines.get(&e.member))
                        .cloned(),
                    PayoutFor::LeadFee { .. } => None,
                };
                self.payouts.push((
                    member,
                    StatementPayout {
                        payout_id: e.payout_id.clone(),
                        amount: e.amount,
                        paid_for: e.payout_for.clone(),
                        line,
                        state: PayoutState::Pending,
                        attempt: 1,
                        issued_at_position: applied.position,
                    },
                ));
                self.member_entries[member as usize].payouts.push(index);
            }
            DomainEvent::PayoutRetried(e) => {
                if let Some(payout) = self.payout_mut(&e.payout_id) {
                    payout.state = PayoutState::Pending;
                    payout.attempt = e.attempt;
                }
            }
            DomainEvent::PayoutSettled(e) => {
                if let Some(payout) = self.payout_mut(&e.payout_id) {
                    payout.state = PayoutState::Settled {
                        reference: e.reference.clone(),
                    };
                }
            }
            DomainEvent::PayoutFailed(e) => {
                if let Some(payout) = self.payout_mut(&e.payout_id) {
                    payout.state = PayoutState::Failed {
                        reason: e.reason.clone(),
                    };
                }
            }
            _ => {}
        }
    }

    fn encode(&self) -> Vec<u8> {
        encode_serde(self)
    }

    fn decode(bytes: &[u8]) -> Result<Statements, String> {
        let statements: Statements = decode_serde(bytes)?;
        let records = statements.records.len();
        let members = statements.members.len();
        let ok = statements.member_entries.len() == members
            && statements.contributors.len() == records
            && statements.withdrawn.len() == records
            && statements.payouts.len() == statements.payout_ids.len()
            && statements
                .contributors
                .iter()
                .all(|m| (*m as usize) < members)
            && statements.member_entries.iter().all(|entry| {
                entry.records.iter().all(|n| (*n as usize) < records)
                    && entry
                        .remixes
                        .iter()
                        .chain(&entry.citations)
                        .all(|(a, b)| (*a as usize) < records && (*b as usize) < records)
                    && entry
                        .payouts
                        .iter()
                        .all(|p| (*p as usize) < statements.payouts.len())
            });
        if !ok {
            return Err("statements: arrays disagree".into());
        }
        Ok(statements)
    }
}
