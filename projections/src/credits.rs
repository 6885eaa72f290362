//! Credits per production (rule 10): the contributors of its included records (paid), and
//! the contributors of every ancestor of those records in the family tree (influence),
//! each with the records that earned the credit.
//!
//! Influence is computed when asked, from this model's own record of every record's sources
//! (`crate::sources`: ancestors are all it walks, so it keeps no children, no topological
//! order): a citation added years later still credits its source's contributor, with no
//! bookkeeping when it arrives.

use std::collections::{BTreeMap, HashSet};

use ledger::dag::NodeId;
use ledger::domain::events::DomainEvent;
use ledger::domain::ids::{MemberId, ProductionId, RecordId};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Names};
use crate::projection::{decode_serde, encode_serde, AppliedEvent, IdsOnly, Projection};
use crate::sources::Sources;

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

/// Records and members are the catalog's numbers; nodes are record numbers.
#[derive(Clone, Debug)]
pub struct Credits {
    catalog: Catalog,
    /// Indexed by record: its contributor.
    contributors: Vec<u32>,
    tree: Sources,
    /// Indexed by production: included records in order of inclusion.
    included: Vec<Vec<NodeId>>,
}

#[derive(Serialize, Deserialize)]
struct StoredCredits {
    contributors: Vec<u32>,
    /// `(source, record)` in node order of `record`, then parents order.
    edges: Vec<(NodeId, NodeId)>,
    included: Vec<Vec<NodeId>>,
}

impl Credits {
    fn known_record(&self, record: Option<u32>) -> Option<NodeId> {
        record.filter(|record| (*record as usize) < self.tree.record_count())
    }

    fn credits(&self, names: &Names, nodes: impl Iterator<Item = NodeId>) -> Vec<Credit> {
        let mut by_member: BTreeMap<MemberId, Vec<RecordId>> = BTreeMap::new();
        for node in nodes {
            by_member
                .entry(names.member_id(self.contributors[node as usize]))
                .or_default()
                .push(names.record_id(node));
        }
        by_member
            .into_iter()
            .map(|(member, records)| Credit { member, records })
            .collect()
    }

    pub fn production(&self, production_id: &ProductionId) -> Option<ProductionCredits> {
        let names = self.catalog.read();
        let production = names
            .production_number(production_id.as_str())
            .filter(|production| (*production as usize) < self.included.len())?;
        let included = &self.included[production as usize];
        // Every ancestor of every included record, breadth-first from all of them at once.
        let mut seen: HashSet<NodeId> = included.iter().copied().collect();
        let mut frontier: Vec<NodeId> = included.clone();
        let mut ancestors: Vec<NodeId> = Vec::new();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for node in frontier {
                for parent in self.tree.parents(node) {
                    if seen.insert(parent) {
                        ancestors.push(parent);
                        next.push(parent);
                    }
                }
            }
            frontier = next;
        }
        let included = self.credits(&names, included.iter().copied());
        let mut influencing = self.credits(&names, ancestors.into_iter());
        // As the domain's `State::credits` has it: influence credits those not paid already.
        influencing.retain(|credit| !included.iter().any(|paid| paid.member == credit.member));
        Some(ProductionCredits {
            production_id: production_id.clone(),
            included,
            influencing,
        })
    }

    /// A production is new here when it is the next one numbered.
    fn open_production(&mut self, production: u32) {
        if production as usize == self.included.len() {
            self.included.push(Vec::new());
        }
    }

    fn add_record(&mut self, record: u32, contributor: u32, sources: &[u32]) {
        if record as usize != self.tree.record_count() {
            return;
        }
        self.tree.add_record(sources);
        self.contributors.push(contributor);
    }
}

impl Projection for Credits {
    const NAME: &'static str = "credits";
    /// 2: ids are the catalog's numbers; the stored form holds no strings.
    const SCHEMA_VERSION: u32 = 2;

    fn new(catalog: Catalog) -> Credits {
        Credits {
            catalog,
            contributors: Vec::new(),
            tree: Sources::default(),
            included: Vec::new(),
        }
    }

    fn apply(&mut self, applied: &AppliedEvent) {
        let ids = &applied.ids;
        match applied.ids_only() {
            Some(IdsOnly::Upload) => {
                if let (Some(record), Some(contributor)) = (ids.record, ids.member) {
                    self.add_record(record, contributor, &ids.sources);
                }
            }
            Some(IdsOnly::Citation) => {
                if let (Some(record), Some(source)) =
                    (self.known_record(ids.record), self.known_record(ids.source))
                {
                    // Cycles were refused by the decider; a slip is left out, not applied.
                    self.tree.cite(source, record);
                }
            }
            None => {
                if let Some(DomainEvent::ProductionOpened(_)) = applied.event() {
                    if let Some(production) = ids.production {
                        self.open_production(production);
                    }
                }
            }
            Some(IdsOnly::Inclusion) => {
                let production = ids
                    .production
                    .filter(|production| (*production as usize) < self.included.len());
                if let (Some(production), Some(record)) =
                    (production, self.known_record(ids.record))
                {
                    let included = &mut self.included[production as usize];
                    if !included.contains(&record) {
                        included.push(record);
                    }
                }
            }
            Some(IdsOnly::Registration | IdsOnly::RecordComment) => {}
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Ancestry is all credits need, so edges are stored in a canonical order (by
        // record, then parent order); the Dag rebuilt from them answers the same.
        let mut edges = Vec::with_capacity(self.tree.link_count());
        edges.extend(self.tree.links());
        encode_serde(&StoredCredits {
            contributors: self.contributors.clone(),
            edges,
            included: self.included.clone(),
        })
    }

    fn decode(bytes: &[u8], catalog: Catalog) -> Result<Credits, String> {
        let stored: StoredCredits = decode_serde(bytes)?;
        let count = stored.contributors.len();
        {
            let names = catalog.read();
            if count > names.record_count()
                || stored
                    .contributors
                    .iter()
                    .any(|m| *m as usize >= names.member_count())
                || stored.included.len() > names.production_count()
                || stored
                    .included
                    .iter()
                    .flatten()
                    .any(|n| *n as usize >= count)
            {
                return Err("credits: numbers beyond the records or the catalog".into());
            }
        }
        let tree = Sources::from_links(count, &stored.edges).ok_or(
            "credits: stored edges out of order, naming unknown records, repeated or cyclic",
        )?;
        Ok(Credits {
            catalog,
            contributors: stored.contributors,
            tree,
            included: stored.included,
        })
    }
}
