//! Credits per production (rule 10): the contributors of its included records (paid), and
//! the contributors of every ancestor of those records in the family tree (influence),
//! each with the records that earned the credit.
//!
//! Influence is computed when asked, from this model's own instance of the domain's `Dag`:
//! a citation added years later still credits its source's contributor, with no
//! bookkeeping when it arrives.

use std::collections::{BTreeMap, HashSet};

use ledger::dag::{Dag, NodeId};
use ledger::domain::events::DomainEvent;
use ledger::domain::ids::{MemberId, ProductionId, RecordId};
use serde::{Deserialize, Serialize};

use crate::interner::Interner;
use crate::projection::{decode_serde, encode_serde, AppliedEvent, Projection};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credit {
    pub member: MemberId,
    /// The records that earned the credit, in order of inclusion (or of discovery, nearest
    /// ancestors first).
    pub records: Vec<RecordId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductionCredits {
    pub production_id: ProductionId,
    /// Contributors of included records, by member id.
    pub included: Vec<Credit>,
    /// Contributors of ancestors of included records who are not among `included`, by
    /// member id, each with the ancestor records that earned it (as
    /// `ledger::domain::state::State::credits` defines influence).
    pub influencing: Vec<Credit>,
}

#[derive(Clone, Debug, Default)]
pub struct Credits {
    records: Interner,
    members: Interner,
    /// Indexed by record node.
    contributors: Vec<u32>,
    tree: Dag,
    productions: Interner,
    /// Indexed by production: included records in order of inclusion.
    included: Vec<Vec<NodeId>>,
}

#[derive(Serialize, Deserialize)]
struct StoredCredits {
    records: Interner,
    members: Interner,
    contributors: Vec<u32>,
    /// `(source, record)` in node order of `record`, then parents order.
    edges: Vec<(NodeId, NodeId)>,
    productions: Interner,
    included: Vec<Vec<NodeId>>,
}

impl Credits {
    fn record_id(&self, node: NodeId) -> RecordId {
        RecordId::new(self.records.resolve(node)).expect("only valid ids are interned")
    }

    fn member_id(&self, member: u32) -> MemberId {
        MemberId::new(self.members.resolve(member)).expect("only valid ids are interned")
    }

    fn credits(&self, nodes: impl Iterator<Item = NodeId>) -> Vec<Credit> {
        let mut by_member: BTreeMap<MemberId, Vec<RecordId>> = BTreeMap::new();
        for node in nodes {
            by_member
                .entry(self.member_id(self.contributors[node as usize]))
                .or_default()
                .push(self.record_id(node));
        }
        by_member
            .into_iter()
            .map(|(member, records)| Credit { member, records })
            .collect()
    }

    pub fn production(&self, production_id: &ProductionId) -> Option<ProductionCredits> {
        let production = self.productions.get(production_id.as_str())?;
        let included = &self.included[production as usize];
        // Every ancestor of every included record, breadth-first from all of them at once.
        let mut seen: HashSet<NodeId> = included.iter().copied().collect();
        let mut frontier: Vec<NodeId> = included.clone();
        let mut ancestors: Vec<NodeId> = Vec::new();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for node in frontier {
                for parent in self.tree.parents(node) {
                    if seen.insert(*parent) {
                        ancestors.push(*parent);
                        next.push(*parent);
                    }
                }
            }
            frontier = next;
        }
        let included = self.credits(included.iter().copied());
        let mut influencing = self.credits(ancestors.into_iter());
        // As the domain's `State::credits` has it: influence credits those not paid already.
        influencing.retain(|credit| !included.iter().any(|paid| paid.member == credit.member));
        Some(ProductionCredits {
            production_id: production_id.clone(),
            included,
            influencing,
        })
    }

    fn open_production(&mut self, production_id: &ProductionId) {
        if self.productions.insert(production_id.as_str()).is_ok() {
            self.included.push(Vec::new());
        }
    }

    fn add_record(&mut self, record: &RecordId, contributor: &MemberId, sources: &[RecordId]) {
        let Ok(interned) = self.records.insert(record.as_str()) else {
            return;
        };
        let node = self.tree.add_node();
        assert_eq!(interned, node);
        let member = self.members.intern(contributor.as_str());
        self.contributors.push(member);
        for source in sources {
            if let Some(source) = self.records.get(source.as_str()) {
                if !self.tree.has_edge(source, node) {
                    self.tree
                        .add_edge(source, node)
                        .expect("edges into a new record agree with the order");
                }
            }
        }
    }
}

impl Projection for Credits {
    const NAME: &'static str = "credits";
    const SCHEMA_VERSION: u32 = 1;

    fn apply(&mut self, applied: &AppliedEvent) {
        match &applied.event {
            DomainEvent::RecordUploaded(e) => self.add_record(&e.record_id, &e.contributor, &[]),
            DomainEvent::RemixUploaded(e) => {
                self.add_record(&e.record_id, &e.contributor, &e.sources)
            }
            DomainEvent::SourceCited(e) => {
                if let (Some(record), Some(source)) = (
                    self.records.get(e.record_id.as_str()),
                    self.records.get(e.source_id.as_str()),
                ) {
                    // Cycles were refused by the decider; a slip is left out, not applied.
                    let _ = self.tree.add_edge(source, record);
                }
            }
            DomainEvent::ProductionOpened(e) => self.open_production(&e.production_id),
            DomainEvent::RecordIncluded(e) => {
                if let (Some(production), Some(record)) = (
                    self.productions.get(e.production_id.as_str()),
                    self.records.get(e.record_id.as_str()),
                ) {
                    let included = &mut self.included[production as usize];
                    if !included.contains(&record) {
                        included.push(record);
                    }
                }
            }
            _ => {}
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Ancestry is all credits need, so edges are stored in a canonical order (by
        // record, then parent order); the Dag rebuilt from them answers the same.
        let mut edges = Vec::with_capacity(self.tree.edge_count());
        for node in 0..self.tree.node_count() as NodeId {
            for parent in self.tree.parents(node) {
                edges.push((*parent, node));
            }
        }
        encode_serde(&StoredCredits {
            records: self.records.clone(),
            members: self.members.clone(),
            contributors: self.contributors.clone(),
            edges,
            productions: self.productions.clone(),
            included: self.included.clone(),
        })
    }

    fn decode(bytes: &[u8]) -> Result<Credits, String> {
        let stored: StoredCredits = decode_serde(bytes)?;
        let count = stored.records.len();
        if stored.contributors.len() != count
            || stored
                .contributors
                .iter()
                .any(|m| *m as usize >= stored.members.len())
            || stored.included.len() != stored.productions.len()
            || stored
                .included
                .iter()
                .flatten()
                .any(|n| *n as usize >= count)
        {
            return Err("credits: arrays disagree".into());
        }
        let mut tree = Dag::new();
        for _ in 0..count {
            tree.add_node();
        }
        for (source, record) in &stored.edges {
            if *source as usize >= count || *record as usize >= count {
                return Err("credits: an edge names an unknown record".into());
            }
            tree.add_edge(*source, *record)
                .map_err(|error| format!("credits: stored edge refused: {error:?}"))?;
        }
        Ok(Credits {
            records: stored.records,
            members: stored.members,
            contributors: stored.contributors,
            tree,
            productions: stored.productions,
            included: stored.included,
        })
    }
}
