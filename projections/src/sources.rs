//! Every record's direct sources, for walking ancestors and nothing else: what credits need
//! of the family tree (`crate::credits`).
//!
//! A remix's sources arrive with it and are older records, so they are appended in record
//! order to one array (an end offset per record, 8 bytes a record and 4 a link, no heap block
//! of its own); citations, a small part of a log, are kept apart per cited record. The
//! domain's `Dag` keeps, besides, every record's children, a topological order and its
//! inverse (some 60 bytes a record, written once more in memory per record during a rebuild)
//! for the cycle checks and descendant walks credits never make.
//!
//! Acyclic like the `Dag`: while every link goes from an older record to a newer one there is
//! no cycle to look for; a citation naming a newer record as the source of an older one is
//! refused if the older already is an ancestor of the newer (it would close a cycle), which
//! takes one walk of the newer record's ancestors.

use std::collections::{HashMap, HashSet};

use ledger::dag::NodeId;

#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// `ends[n]`: the end in `remix` of record `n`'s sources that came with it.
    ends: Vec<u32>,
    remix: Vec<NodeId>,
    /// Sources cited after a record's upload, by record, in the order cited.
    cited: HashMap<NodeId, Vec<NodeId>>,
    /// Some link goes from a newer record to an older one: numbers no longer order links.
    backwards: bool,
    links: usize,
}

impl Sources {
    pub(crate) fn record_count(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn link_count(&self) -> usize {
        self.links
    }

    /// Adds the next record with its sources, older records (repeats and others skipped),
    /// and returns it.
    pub(crate) fn add_record(&mut self, sources: &[NodeId]) -> NodeId {
        let node = NodeId::try_from(self.ends.len()).expect("fewer than 2^32 records");
        let start = self.remix.len();
        for source in sources {
            if *source < node && !self.remix[start..].contains(source) {
                self.remix.push(*source);
            }
        }
        self.links += self.remix.len() - start;
        self.ends
            .push(u32::try_from(self.remix.len()).expect("fewer than 2^32 links"));
        node
    }

    fn remix_sources(&self, node: NodeId) -> &[NodeId] {
        let end = self.ends[node as usize] as usize;
        let start = match node {
            0 => 0,
            _ => self.ends[node as usize - 1] as usize,
        };
        &self.remix[start..end]
    }

    fn cited(&self, node: NodeId) -> &[NodeId] {
        self.cited.get(&node).map_or(&[], Vec::as_slice)
    }

    /// The record's direct sources: those it came with, then those cited, in order.
    pub(crate) fn parents(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.remix_sources(node)
            .iter()
            .chain(self.cited(node))
            .copied()
    }

    fn has_link(&self, source: NodeId, record: NodeId) -> bool {
        self.remix_sources(record).contains(&source) || self.cited(record).contains(&source)
    }

    /// Whether `ancestor` is `node` or one of its ancestors.
    fn reaches(&self, ancestor: NodeId, node: NodeId) -> bool {
        let mut seen = HashSet::from([node]);
        let mut stack = vec![node];
        while let Some(next) = stack.pop() {
            if next == ancestor {
                return true;
            }
            for parent in self.parents(next) {
                if seen.insert(parent) {
                    stack.push(parent);
                }
            }
        }
        false
    }

    /// Cites `source` as a source of `record` (both known). Refused, as the `Dag` refuses
    /// it, when it is a self-link or would close a cycle; a repeat changes nothing. True if
    /// the link was added.
    pub(crate) fn cite(&mut self, source: NodeId, record: NodeId) -> bool {
        if source == record || self.has_link(source, record) {
            return false;
        }
        // A cycle needs a path from `record` back to `source`: with every link older →
        // newer, none leads from a newer record to an older one.
        let may_close = source > record || self.backwards;
        if may_close && self.reaches(record, source) {
            return false;
        }
        self.backwards |= source > record;
        self.cited.entry(record).or_default().push(source);
        self.links += 1;
        true
    }

    /// Every link as `(source, record)`, by record, then in the order of `parents`.
    pub(crate) fn links(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        (0..self.ends.len() as NodeId)
            .flat_map(move |record| self.parents(record).map(move |source| (source, record)))
    }

    /// From `links` (as `links` gives them) over `count` records; `None` if they are out of
    /// order, name an unknown record, repeat, link a record to itself or close a cycle.
    pub(crate) fn from_links(count: usize, links: &[(NodeId, NodeId)]) -> Option<Sources> {
        let mut sources = Sources::default();
        let mut next = links.iter().peekable();
        let mut parents = Vec::new();
        for record in 0..count as NodeId {
            parents.clear();
            while let Some((source, _)) = next.next_if(|(_, to)| *to == record) {
                if *source as usize >= count || *source == record || parents.contains(source) {
                    return None;
                }
                sources.backwards |= *source > record;
                parents.push(*source);
            }
            // Stored in the order `parents` walks: all of them as this record's own list.
            let start = sources.remix.len();
            sources.remix.extend_from_slice(&parents);
            sources.links += sources.remix.len() - start;
            sources.ends.push(u32::try_from(sources.remix.len()).ok()?);
        }
        if next.next().is_some() || (sources.backwards && sources.has_cycle()) {
            return None;
        }
        Some(sources)
    }

    /// Whether some record is its own ancestor (depth-first, three colours).
    fn has_cycle(&self) -> bool {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut colour = vec![NEW; self.ends.len()];
        for root in 0..self.ends.len() as NodeId {
            if colour[root as usize] != NEW {
                continue;
            }
            colour[root as usize] = OPEN;
            let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
            while let Some(top) = stack.last_mut() {
                let (node, index) = *top;
                top.1 += 1;
                match self.parents(node).nth(index) {
                    None => {
                        colour[node as usize] = DONE;
                        stack.pop();
                    }
                    Some(parent) => match colour[parent as usize] {
                        OPEN => return true,
                        NEW => {
                            colour[parent as usize] = OPEN;
                            stack.push((parent, 0));
                        }
                        _ => {}
                    },
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use ledger::dag::Dag;
    use proptest::prelude::*;

    use super::*;

    /// Records with their sources, then citations, interleaved: `Some(sources)` adds a
    /// record, `None` with a pair cites.
    #[derive(Clone, Debug)]
    enum Step {
        Record(Vec<NodeId>),
        Cite(NodeId, NodeId),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(0u32..40, 0..4).prop_map(Step::Record),
                2 => (0u32..40, 0u32..40).prop_map(|(a, b)| Step::Cite(a, b)),
            ],
            1..120,
        )
    }

    proptest! {
        /// Against the domain's `Dag` fed the same steps: the same links accepted, the same
        /// parents in the same order, and a round trip through `links` keeps them.
        #[test]
        fn agrees_with_the_dag(steps in steps()) {
            let mut sources = Sources::default();
            let mut dag = Dag::new();
            for step in steps {
                match step {
                    Step::Record(named) => {
                        let node = sources.add_record(&named);
                        prop_assert_eq!(node, dag.add_node());
                        for source in named.iter().filter(|s| **s < node) {
                            if !dag.has_edge(*source, node) {
                                dag.add_edge(*source, node).unwrap();
                            }
                        }
                    }
                    Step::Cite(source, record) => {
                        let count = sources.record_count() as NodeId;
                        if source >= count || record >= count {
                            continue;
                        }
                        let before = dag.edge_count();
                        let accepted = dag.add_edge(source, record).is_ok()
                            && dag.edge_count() > before;
                        prop_assert_eq!(sources.cite(source, record), accepted);
                    }
                }
            }
            prop_assert_eq!(sources.link_count(), dag.edge_count());
            for node in 0..dag.node_count() as NodeId {
                let parents: Vec<NodeId> = sources.parents(node).collect();
                prop_assert_eq!(&parents[..], dag.parents(node));
            }
            let links: Vec<(NodeId, NodeId)> = sources.links().collect();
            let back = Sources::from_links(sources.record_count(), &links).unwrap();
            prop_assert_eq!(back.links().collect::<Vec<_>>(), links);
        }
    }

    #[test]
    fn a_citation_closing_a_cycle_is_refused_and_a_backward_one_kept() {
        let mut sources = Sources::default();
        for named in [&[][..], &[0], &[], &[1]] {
            sources.add_record(named);
        }
        assert!(!sources.cite(3, 0), "0 is an ancestor of 3");
        assert!(!sources.cite(0, 0));
        assert!(!sources.cite(0, 1), "a repeat");
        assert!(sources.cite(2, 0), "backwards, but no path from 0 to 2");
        assert!(!sources.cite(3, 2), "2 → 0 → 1 → 3 already");
        assert_eq!(sources.parents(0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(sources.link_count(), 3);
    }

    #[test]
    fn stored_links_that_cannot_be_are_refused() {
        let ok = [(0, 1), (1, 2), (0, 2)];
        assert!(Sources::from_links(3, &ok).is_some());
        // Out of record order, an unknown record, a self-link, a repeat, a cycle.
        for links in [
            &[(1, 2), (0, 1)][..],
            &[(0, 3)][..],
            &[(1, 1)][..],
            &[(0, 1), (0, 1)][..],
            &[(2, 1), (1, 2)][..],
        ] {
            assert!(Sources::from_links(3, links).is_none(), "{links:?}");
        }
    }
}
