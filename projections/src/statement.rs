//! Member statements: every payout to a member with its distribution, line and state; the
//! member's records; the remixes of their records and the citations of their work.

use std::collections::BTreeMap;
use std::sync::Arc;

use ledger::dag::NodeId;
use ledger::domain::events::{DomainEvent, Line, PayoutFor};
use ledger::domain::ids::{MemberId, PayoutId, RecordId};
use ledger::money::Money;
use ledger::store::Position;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Names};
use crate::projection::{decode_serde, encode_serde, AppliedEvent, IdsOnly, Projection};

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

/// A distribution's line, shared by its current lines and every payout issued for it: a
/// payout takes a reference, not a copy of the member, rationale and record ids. Stored as
/// the line itself (sharing is not kept across a snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SharedLine(Arc<Line>);

impl Serialize for SharedLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Line::deserialize(deserializer).map(|line| SharedLine(Arc::new(line)))
    }
}

/// What a payout pays for, as kept: a line's distribution as the catalog's number (a line
/// payout is most of a log's payouts; its ids are in the catalog once already).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum PaidFor {
    Line(u32),
    /// A lead fee, or a line of a distribution the catalog has not numbered.
    Other(Box<PayoutFor>),
}

/// A `StatementPayout` as kept: its line shared, its id and distribution the catalog's (its
/// id is its payout number's, the index of the entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PayoutEntry {
    amount: Money,
    paid_for: PaidFor,
    line: Option<SharedLine>,
    state: PayoutState,
    attempt: u32,
    issued_at_position: Position,
}

impl PayoutEntry {
    /// The payout numbered `payout`.
    fn view(&self, names: &Names, payout: u32) -> StatementPayout {
        StatementPayout {
            payout_id: names.payout_id(payout),
            amount: self.amount,
            paid_for: match &self.paid_for {
                PaidFor::Line(distribution) => PayoutFor::Line {
                    distribution_id: names.distribution_id(*distribution),
                },
                PaidFor::Other(paid_for) => PayoutFor::clone(paid_for),
            },
            line: self.line.as_ref().map(|line| Line::clone(&line.0)),
            state: self.state.clone(),
            attempt: self.attempt,
            issued_at_position: self.issued_at_position,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MemberEntry {
    records: Vec<NodeId>,
    /// `(record built on it, member's record)`.
    remixes: Vec<(NodeId, NodeId)>,
    citations: Vec<(NodeId, NodeId)>,
    payouts: Vec<u32>,
}

/// Records, members, distributions and payouts are the catalog's numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Statements {
    /// Not stored: the model is decoded onto the catalog it is handed.
    #[serde(skip)]
    catalog: Catalog,
    /// Indexed by member: `None` for a member this model has not met (registered,
    /// contributing or paid).
    member_entries: Vec<Option<MemberEntry>>,
    /// Indexed by record.
    contributors: Vec<u32>,
    withdrawn: Vec<bool>,
    /// Indexed by payout: the payee and the payout.
    payouts: Vec<(u32, PayoutEntry)>,
    /// Indexed by distribution: its current lines by member not paid yet, so a payout
    /// names its line.
    lines: Vec<Option<BTreeMap<MemberId, SharedLine>>>,
}

impl Statements {
    fn member_entry(&mut self, member: u32) -> &mut MemberEntry {
        let index = member as usize;
        if self.member_entries.len() <= index {
            self.member_entries.resize(index + 1, None);
        }
        self.member_entries[index].get_or_insert_with(MemberEntry::default)
    }

    fn known_record(&self, record: Option<u32>) -> Option<NodeId> {
        record.filter(|record| (*record as usize) < self.contributors.len())
    }

    fn known_payout(&self, payout: Option<u32>) -> Option<usize> {
        payout
            .map(|payout| payout as usize)
            .filter(|payout| *payout < self.payouts.len())
    }

    fn derivation(&self, names: &Names, (record, source): (NodeId, NodeId)) -> Derivation {
        Derivation {
            source: names.record_id(source),
            record: names.record_id(record),
            contributor: names.member_id(self.contributors[record as usize]),
        }
    }

    pub fn member(&self, member: &MemberId) -> Option<MemberStatement> {
        let names = self.catalog.read();
        let index = names.member_number(member.as_str())?;
        let entry = self.member_entries.get(index as usize)?.as_ref()?;
        Some(MemberStatement {
            member: member.clone(),
            payouts: entry
                .payouts
                .iter()
                .map(|payout| self.payouts[*payout as usize].1.view(&names, *payout))
                .collect(),
            records: entry
                .records
                .iter()
                .map(|node| StatementRecord {
                    record: names.record_id(*node),
                    withdrawn: self.withdrawn[*node as usize],
                })
                .collect(),
            remixes: entry
                .remixes
                .iter()
                .map(|d| self.derivation(&names, *d))
                .collect(),
            citations: entry
                .citations
                .iter()
                .map(|d| self.derivation(&names, *d))
                .collect(),
        })
    }

    fn add_record(&mut self, record: u32, contributor: u32, sources: &[u32]) {
        if record as usize != self.contributors.len() {
            return;
        }
        self.contributors.push(contributor);
        self.withdrawn.push(false);
        self.member_entry(contributor).records.push(record);
        for source in sources {
            let owner = self.contributors[*source as usize];
            self.member_entry(owner).remixes.push((record, *source));
        }
    }

    fn lines_mut(
        &mut self,
        distribution: Option<u32>,
    ) -> Option<&mut BTreeMap<MemberId, SharedLine>> {
        self.lines.get_mut(distribution? as usize)?.as_mut()
    }
}

fn upsert_lines(current: &mut BTreeMap<MemberId, SharedLine>, lines: &[Line]) {
    for line in lines {
        current.insert(line.member.clone(), SharedLine(Arc::new(line.clone())));
    }
}

impl Projection for Statements {
    const NAME: &'static str = "statements";
    /// 2: ids are the catalog's numbers. 3: a distribution's lines keep only those not
    /// paid yet; a payout keeps neither its id nor its distribution's, but their numbers.
    const SCHEMA_VERSION: u32 = 3;

    fn new(catalog: Catalog) -> Statements {
        Statements {
            catalog,
            member_entries: Vec::new(),
            contributors: Vec::new(),
            withdrawn: Vec::new(),
            payouts: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn apply(&mut self, applied: &AppliedEvent) {
        let ids = &applied.ids;
        match applied.ids_only() {
            Some(IdsOnly::Registration) => {
                if let Some(member) = ids.member {
                    self.member_entry(member);
                }
                return;
            }
            Some(IdsOnly::Upload) => {
                if let (Some(record), Some(contributor)) = (ids.record, ids.member) {
                    self.add_record(record, contributor, &ids.sources);
                }
                return;
            }
            Some(IdsOnly::Citation) => {
                if let (Some(record), Some(source)) =
                    (self.known_record(ids.record), self.known_record(ids.source))
                {
                    let owner = self.contributors[source as usize];
                    self.member_entry(owner).citations.push((record, source));
                }
                return;
            }
            Some(IdsOnly::Inclusion | IdsOnly::RecordComment) => return,
            None => {}
        }
        let Some(event) = applied.event() else {
            return;
        };
        match event {
            DomainEvent::RecordWithdrawn(_) => {
                if let Some(node) = self.known_record(ids.record) {
                    self.withdrawn[node as usize] = true;
                }
            }
            DomainEvent::AllocationProposed(e) => {
                let Some(distribution) = ids.distribution else {
                    return;
                };
                let mut lines = BTreeMap::new();
                upsert_lines(&mut lines, &e.lines);
                let index = distribution as usize;
                if self.lines.len() <= index {
                    self.lines.resize(index + 1, None);
                }
                self.lines[index] = Some(lines);
            }
            DomainEvent::AllocationLinesContinued(e) => {
                if let Some(current) = self.lines_mut(ids.distribution) {
                    upsert_lines(current, &e.lines);
                }
            }
            DomainEvent::AllocationAmended(e) => {
                if let Some(current) = self.lines_mut(ids.distribution) {
                    for member in &e.removed {
                        current.remove(member);
                    }
                    upsert_lines(current, &e.lines);
                }
            }
            DomainEvent::PayoutIssued(e) => {
                let (Some(payout), Some(member)) = (ids.payout, ids.member) else {
                    return;
                };
                if payout as usize != self.payouts.len() {
                    return;
                }
                // A line is paid once (its payout's id is the distribution's and member's),
                // so the payout takes it from the distribution's lines: kept twice, every
                // line paid would stay in memory as long again.
                let line = match &e.payout_for {
                    PayoutFor::Line { .. } => self
                        .lines
                        .get_mut(ids.distribution.map_or(usize::MAX, |d| d as usize))
                        .and_then(Option::as_mut)
                        .and_then(|lines| lines.remove(&e.member)),
                    PayoutFor::LeadFee { .. } => None,
                };
                self.payouts.push((
                    member,
                    PayoutEntry {
                        amount: e.amount,
                        paid_for: match (&e.payout_for, ids.distribution) {
                            (PayoutFor::Line { .. }, Some(distribution)) => {
                                PaidFor::Line(distribution)
                            }
                            (paid_for, _) => PaidFor::Other(Box::new(paid_for.clone())),
                        },
                        line,
                        state: PayoutState::Pending,
                        attempt: 1,
                        issued_at_position: applied.position,
                    },
                ));
                self.member_entry(member).payouts.push(payout);
            }
            DomainEvent::PayoutRetried(e) => {
                if let Some(payout) = self.known_payout(ids.payout) {
                    let payout = &mut self.payouts[payout].1;
                    payout.state = PayoutState::Pending;
                    payout.attempt = e.attempt;
                }
            }
            DomainEvent::PayoutSettled(e) => {
                if let Some(payout) = self.known_payout(ids.payout) {
                    self.payouts[payout].1.state = PayoutState::Settled {
                        reference: e.reference.clone(),
                    };
                }
            }
            DomainEvent::PayoutFailed(e) => {
                if let Some(payout) = self.known_payout(ids.payout) {
                    self.payouts[payout].1.state = PayoutState::Failed {
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

    fn decode(bytes: &[u8], catalog: Catalog) -> Result<Statements, String> {
        let mut statements: Statements = decode_serde(bytes)?;
        let records = statements.contributors.len();
        let members = statements.member_entries.len();
        let payouts = statements.payouts.len();
        let met = |member: u32| {
            statements
                .member_entries
                .get(member as usize)
                .is_some_and(Option::is_some)
        };
        let ok = {
            let names = catalog.read();
            records <= names.record_count()
                && members <= names.member_count()
                && payouts <= names.payout_count()
                && statements.lines.len() <= names.distribution_count()
                && statements
                    .payouts
                    .iter()
                    .all(|(_, payout)| match payout.paid_for {
                        PaidFor::Line(distribution) => {
                            (distribution as usize) < names.distribution_count()
                        }
                        PaidFor::Other(_) => true,
                    })
        } && statements.withdrawn.len() == records
            && statements.contributors.iter().all(|m| met(*m))
            && statements.payouts.iter().all(|(m, _)| met(*m))
            && statements.member_entries.iter().flatten().all(|entry| {
                entry.records.iter().all(|n| (*n as usize) < records)
                    && entry
                        .remixes
                        .iter()
                        .chain(&entry.citations)
                        .all(|(a, b)| (*a as usize) < records && (*b as usize) < records)
                    && entry.payouts.iter().all(|p| (*p as usize) < payouts)
            });
        if !ok {
            return Err("statements: numbers beyond the records or the catalog".into());
        }
        statements.catalog = catalog;
        Ok(statements)
    }
}
