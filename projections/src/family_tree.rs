//! The family tree read model: for any record, its direct sources (remix or citation), its
//! direct remixes, its ancestors and descendants with their depth (bounded by the caller),
//! the originals at the roots of its lineage, and the size of its family.
//!
//! Storage is compact: records are the catalog's dense numbers (`crate::catalog`), which
//! are the nodes of the domain's `Dag` (the same type the decider uses for its cycle check; this is a second
//! instance of it, not a second implementation). A link's kind costs one byte per record:
//! a record's first `remix_sources[n]` parents came with the remix, the rest are later
//! citations (the Dag keeps parents in insertion order).

use ledger::dag::{Dag, NodeId, Walk};
use ledger::domain::events::DomainEvent;
use ledger::domain::ids::RecordId;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Names};
use crate::projection::{
    decode_serde, encode_serde, AppliedEvent, IdsOnly, Projection, WalkLimits,
};
use crate::walk::walk;
pub use crate::walk::Direction;

/// How a record is linked to a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LinkKind {
    /// Named as a source when the remix was uploaded.
    Remix,
    /// Added later ("you forgot to source me").
    Citation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub record: RecordId,
    pub kind: LinkKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relative {
    pub record: RecordId,
    /// 1 for a direct source or remix.
    pub depth: u32,
}

/// Ancestors or descendants, breadth-first (nearest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub records: Vec<Relative>,
    /// A limit stopped the walk before it reached every relative.
    pub truncated: bool,
}

/// The originals (records without sources) a record descends from; a record without
/// sources is its own root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    pub records: Vec<RecordId>,
    pub truncated: bool,
}

/// The record's family: itself, its ancestors and its descendants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilySize {
    pub ancestors: usize,
    pub descendants: usize,
    /// `1 + ancestors + descendants`.
    pub total: usize,
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Citation {
    record: NodeId,
    source: NodeId,
    /// Records in the tree when the citation was made: replaying records and citations
    /// interleaved by it rebuilds every adjacency list in its original order.
    records_before: u32,
}

/// Nodes are the catalog's record numbers: records are numbered in upload order, and the
/// tree adds a node per upload of a new record, so both count alike.
#[derive(Clone, Debug)]
pub struct FamilyTree {
    catalog: Catalog,
    tree: Dag,
    remix_sources: Vec<u8>,
    withdrawn: Vec<bool>,
    citations: Vec<Citation>,
}

/// The stored form: per record (in node order) its remix sources, and the citations in the
/// order they were made; the record ids are the catalog's.
#[derive(Serialize, Deserialize)]
struct StoredFamilyTree {
    remix_sources: Vec<u8>,
    /// Every record's remix sources, concatenated in node order.
    remix_parents: Vec<NodeId>,
    withdrawn: Vec<bool>,
    citations: Vec<Citation>,
}

impl FamilyTree {
    pub fn record_count(&self) -> usize {
        self.tree.node_count()
    }

    pub fn link_count(&self) -> usize {
        self.tree.edge_count()
    }

    /// A record number of the catalog, if this tree holds that record (the catalog may
    /// know records this tree has not applied yet).
    fn known(&self, record: Option<u32>) -> Option<NodeId> {
        record.filter(|record| (*record as usize) < self.tree.node_count())
    }

    fn node_in(&self, names: &Names, record: &str) -> Option<NodeId> {
        self.known(names.record_number(record))
    }

    /// The node of a record, for callers that walk many times (benchmarks, other models).
    pub fn node(&self, record: &str) -> Option<NodeId> {
        self.node_in(&self.catalog.read(), record)
    }

    pub fn record_id(&self, node: NodeId) -> RecordId {
        self.catalog.read().record_id(node)
    }

    /// Runs `f` with the catalog's names (`Names::record(node)` names a node), under one
    /// read lock: for answers that copy many ids straight into a response, one allocation
    /// per id there. `f` must not call this tree's other methods (they take the lock too).
    pub fn with_names<T>(&self, f: impl FnOnce(&Names) -> T) -> T {
        f(&self.catalog.read())
    }

    /// Ancestors or descendants of `record` as nodes with their depths (name them with
    /// `with_names`): the walk behind `ancestors`/`descendants` without an owned id per
    /// record.
    pub fn lineage_nodes(
        &self,
        record: &str,
        limits: WalkLimits,
        direction: Direction,
    ) -> Option<Walk> {
        let node = self.node(record)?;
        Some(self.walk(node, limits, direction))
    }

    fn walk(&self, node: NodeId, limits: WalkLimits, direction: Direction) -> Walk {
        let limits = WalkLimits::new(limits.depth_max, limits.nodes_max);
        walk(
            &self.tree,
            node,
            limits.depth_max,
            limits.nodes_max,
            direction,
        )
    }

    pub fn dag(&self) -> &Dag {
        &self.tree
    }

    pub fn is_withdrawn(&self, record: &RecordId) -> Option<bool> {
        self.node(record.as_str())
            .map(|node| self.withdrawn[node as usize])
    }

    fn kind(&self, source: NodeId, record: NodeId) -> LinkKind {
        let parents = self.tree.parents(record);
        let index = parents
            .iter()
            .position(|parent| *parent == source)
            .expect("a child's parents include the source");
        if index < self.remix_sources[record as usize] as usize {
            LinkKind::Remix
        } else {
            LinkKind::Citation
        }
    }

    /// The record's direct sources, in the order they were linked.
    pub fn sources(&self, record: &RecordId) -> Option<Vec<Link>> {
        let names = self.catalog.read();
        let node = self.node_in(&names, record.as_str())?;
        Some(
            self.tree
                .parents(node)
                .iter()
                .map(|source| Link {
                    record: names.record_id(*source),
                    kind: self.kind(*source, node),
                })
                .collect(),
        )
    }

    /// The records built directly on this one (as a remix of it, or citing it later).
    pub fn remixes(&self, record: &RecordId) -> Option<Vec<Link>> {
        let names = self.catalog.read();
        let node = self.node_in(&names, record.as_str())?;
        Some(
            self.tree
                .children(node)
                .iter()
                .map(|child| Link {
                    record: names.record_id(*child),
                    kind: self.kind(node, *child),
                })
                .collect(),
        )
    }

    fn lineage(&self, found: Walk) -> Lineage {
        let names = self.catalog.read();
        Lineage {
            records: found
                .nodes
                .into_iter()
                .map(|(node, depth)| Relative {
                    record: names.record_id(node),
                    depth,
                })
                .collect(),
            truncated: found.truncated,
        }
    }

    pub fn ancestors(&self, record: &RecordId, limits: WalkLimits) -> Option<Lineage> {
        let found = self.lineage_nodes(record.as_str(), limits, Direction::Ancestors)?;
        Some(self.lineage(found))
    }

    pub fn descendants(&self, record: &RecordId, limits: WalkLimits) -> Option<Lineage> {
        let found = self.lineage_nodes(record.as_str(), limits, Direction::Descendants)?;
        Some(self.lineage(found))
    }

    /// The originals at the roots of the record's lineage, in breadth-first order of
    /// discovery, walking at most `limits` of ancestors.
    pub fn roots(&self, record: &RecordId, limits: WalkLimits) -> Option<Roots> {
        let node = self.node(record.as_str())?;
        if self.tree.parents(node).is_empty() {
            return Some(Roots {
                records: vec![record.clone()],
                truncated: false,
            });
        }
        let ancestors = self.walk(node, limits, Direction::Ancestors);
        let names = self.catalog.read();
        Some(Roots {
            records: ancestors
                .nodes
                .iter()
                .filter(|(ancestor, _)| self.tree.parents(*ancestor).is_empty())
                .map(|(ancestor, _)| names.record_id(*ancestor))
                .collect(),
            truncated: ancestors.truncated,
        })
    }

    /// How many records the family counts, each walk bounded by `limits`.
    pub fn family_size(&self, record: &RecordId, limits: WalkLimits) -> Option<FamilySize> {
        let node = self.node(record.as_str())?;
        let ancestors = self.walk(node, limits, Direction::Ancestors);
        let descendants = self.walk(node, limits, Direction::Descendants);
        Some(FamilySize {
            ancestors: ancestors.nodes.len(),
            descendants: descendants.nodes.len(),
            total: 1 + ancestors.nodes.len() + descendants.nodes.len(),
            truncated: ancestors.truncated || descendants.truncated,
        })
    }

    /// Adds the record numbered `record` if it is new here (the next node); an upload of a
    /// record already in the tree changes nothing.
    fn add_record(&mut self, record: u32, sources: &[u32]) {
        if record as usize != self.tree.node_count() {
            return;
        }
        self.add_node(sources);
    }

    /// Adds the next node with its remix sources (earlier nodes, repeats skipped).
    fn add_node(&mut self, sources: &[NodeId]) {
        let node = self.tree.add_node();
        let mut linked = 0u8;
        for source in sources {
            linked += u8::from(self.link_new(*source, node));
        }
        self.remix_sources.push(linked);
        self.withdrawn.push(false);
    }

    /// Links `parent → node` for a node just added; false if that link is already there.
    fn link_new(&mut self, parent: NodeId, node: NodeId) -> bool {
        if parent >= node || self.tree.has_edge(parent, node) {
            return false;
        }
        // A new node is last in the order: these edges cannot close a cycle.
        self.tree
            .add_edge(parent, node)
            .expect("edges into a new record agree with the order");
        true
    }

    fn cite(&mut self, source: NodeId, record: NodeId) {
        if self.tree.has_edge(source, record) {
            return;
        }
        // The decider refused every citation that closes a cycle; should one slip through,
        // the read model keeps its tree acyclic and leaves the link out.
        if self.tree.add_edge(source, record).is_ok() {
            self.citations.push(Citation {
                record,
                source,
                records_before: self.tree.node_count() as u32,
            });
        }
    }
}

impl Projection for FamilyTree {
    const NAME: &'static str = "family_tree";
    /// 2: ids are the catalog's numbers; the stored form holds no strings.
    const SCHEMA_VERSION: u32 = 2;

    fn new(catalog: Catalog) -> FamilyTree {
        FamilyTree {
            catalog,
            tree: Dag::new(),
            remix_sources: Vec::new(),
            withdrawn: Vec::new(),
            citations: Vec::new(),
        }
    }

    fn apply(&mut self, applied: &AppliedEvent) {
        let ids = &applied.ids;
        match applied.ids_only() {
            Some(IdsOnly::Upload) => {
                if let Some(record) = ids.record {
                    self.add_record(record, &ids.sources);
                }
            }
            Some(IdsOnly::Citation) => {
                if let (Some(record), Some(source)) =
                    (self.known(ids.record), self.known(ids.source))
                {
                    self.cite(source, record);
                }
            }
            Some(_) => {}
            None => {
                if let Some(DomainEvent::RecordWithdrawn(_)) = applied.event() {
                    if let Some(node) = self.known(ids.record) {
                        self.withdrawn[node as usize] = true;
                    }
                }
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut remix_parents = Vec::with_capacity(self.tree.edge_count());
        for node in 0..self.tree.node_count() as NodeId {
            let count = self.remix_sources[node as usize] as usize;
            remix_parents.extend_from_slice(&self.tree.parents(node)[..count]);
        }
        encode_serde(&StoredFamilyTree {
            remix_sources: self.remix_sources.clone(),
            remix_parents,
            withdrawn: self.withdrawn.clone(),
            citations: self.citations.clone(),
        })
    }

    fn decode(bytes: &[u8], catalog: Catalog) -> Result<FamilyTree, String> {
        let stored: StoredFamilyTree = decode_serde(bytes)?;
        let count = stored.remix_sources.len();
        if stored.withdrawn.len() != count {
            return Err("family tree: per-record arrays differ in length".into());
        }
        if count > catalog.read().record_count() {
            return Err("family tree: more records than the catalog numbers".into());
        }
        let mut tree = FamilyTree::new(catalog);
        let mut citations = stored.citations.iter().peekable();
        let mut next_parent = 0usize;
        for node in 0..count {
            while let Some(citation) = citations.next_if(|c| c.records_before as usize <= node) {
                tree.replay_citation(citation)?;
            }
            let sources = stored.remix_sources[node] as usize;
            let parents = stored
                .remix_parents
                .get(next_parent..next_parent + sources)
                .ok_or("family tree: remix parents cut short")?;
            if parents.iter().any(|parent| *parent as usize >= node) {
                return Err("family tree: a remix names a later record".into());
            }
            next_parent += sources;
            tree.add_node(parents);
            if tree.remix_sources[node] as usize != sources {
                return Err("family tree: a remix names a source twice".into());
            }
            tree.withdrawn[node] = stored.withdrawn[node];
        }
        for citation in citations {
            tree.replay_citation(citation)?;
        }
        if next_parent != stored.remix_parents.len() {
            return Err("family tree: remix parents left over".into());
        }
        if tree.citations.len() != stored.citations.len() {
            return Err("family tree: a stored citation repeats a link".into());
        }
        Ok(tree)
    }
}

impl FamilyTree {
    fn replay_citation(&mut self, citation: &Citation) -> Result<(), String> {
        let count = self.tree.node_count() as u32;
        if citation.record >= count || citation.source >= count {
            return Err("family tree: a citation names an unknown record".into());
        }
        self.tree
            .add_edge(citation.source, citation.record)
            .map_err(|error| format!("family tree: stored citation refused: {error:?}"))?;
        self.citations.push(*citation);
        Ok(())
    }
}
