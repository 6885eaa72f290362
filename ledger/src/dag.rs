//! A compact directed acyclic graph over integer node ids, kept acyclic with a dynamic
//! topological order (Pearce & Kelly, "A dynamic topological sort algorithm for directed
//! acyclic graphs", JEA 2007).
//!
//! The decider uses one instance for the family tree's cycle check; projections use their
//! own for ancestors and descendants. Edges point from a source to what was built on it
//! (`source → remix`), so a node's ancestors are its sources, transitively.
//!
//! Why Pearce–Kelly: a new remix is appended at the end of the order, so its edges agree
//! with the order and cost O(1); a late citation that disagrees with the order searches
//! only the nodes whose order lies between its two ends, never the whole tree.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::chunked::ChunkedVec;

/// A node: dense, assigned in insertion order from 0.
pub type NodeId = u32;

/// Node ids are dense integers: Fibonacci hashing spreads them well and costs one multiply,
/// where the default SipHash dominated the searches.
#[derive(Default)]
struct NodeHasher(u64);

impl Hasher for NodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type NodeSet = HashSet<NodeId, BuildHasherDefault<NodeHasher>>;

fn node_set(first: NodeId) -> NodeSet {
    let mut set = NodeSet::default();
    set.insert(first);
    set
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeError {
    UnknownNode(NodeId),
    SelfLoop(NodeId),
    /// The edge would close a cycle: `to` already reaches `from`.
    Cycle {
        from: NodeId,
        to: NodeId,
    },
}

/// The result of a bounded walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Each node reached (never the start) with its distance from the start, in
    /// breadth-first order.
    pub nodes: Vec<(NodeId, u32)>,
    /// Whether a bound stopped the walk before it reached everything.
    pub truncated: bool,
}

/// Every node's list of neighbours, in one arena: a list is a span of `entries`, so a node
/// costs 12 bytes and no allocation of its own (a `Vec` per node cost 24 bytes, a heap
/// block each and a cache miss more per node walked). A list that fills up grows in place
/// when it is the arena's last (a new node's sources, added together, end up contiguous),
/// otherwise moves to the end with twice the room; once the abandoned space exceeds the
/// live entries, the arena is rewritten in node order, so it stays within about twice the
/// edges, and a long walk reads neighbouring nodes' lists from neighbouring memory.
#[derive(Clone, Debug, Default)]
struct Adjacency {
    entries: Vec<NodeId>,
    /// Chunked, as `order` and `node_at`: one per node, growing with the tree, so a doubling
    /// `Vec` would move them all at once (see `chunked`).
    lists: ChunkedVec<Span>,
    /// Entries in lists (Σ len); the rest of `entries` is room or abandoned.
    live: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
    cap: u32,
}

/// Abandoned space below this is never worth a rewrite.
const ADJACENCY_WASTE_MIN: usize = 4_096;

impl Adjacency {
    fn len(&self) -> usize {
        self.lists.len()
    }

    fn add_list(&mut self) {
        let start = u32::try_from(self.entries.len()).expect("fewer than 2^32 edges");
        self.lists.push(Span {
            start,
            len: 0,
            cap: 0,
        });
    }

    fn get(&self, node: NodeId) -> &[NodeId] {
        let span = self.lists[node as usize];
        &self.entries[span.start as usize..(span.start + span.len) as usize]
    }

    fn push(&mut self, node: NodeId, entry: NodeId) {
        let mut span = self.lists[node as usize];
        if span.len == span.cap {
            let end = (span.start + span.cap) as usize;
            if end == self.entries.len() {
                span.cap += 1;
                self.entries.push(entry);
            } else {
                let start = self.entries.len();
                let cap = (span.len * 2).max(2);
                assert!(
                    start + cap as usize <= u32::MAX as usize,
                    "fewer than 2^32 edges"
                );
                let old = span.start as usize..(span.start + span.len) as usize;
                self.entries.extend_from_within(old);
                self.entries.resize(start + cap as usize, 0);
                span.start = start as u32;
                span.cap = cap;
            }
        }
        self.entries[(span.start + span.len) as usize] = entry;
        span.len += 1;
        self.lists[node as usize] = span;
        self.live += 1;
        if self.entries.len() - self.live > self.live.max(ADJACENCY_WASTE_MIN) {
            self.compact();
        }
    }

    /// Rewrites every list in node order, without room or abandoned space.
    fn compact(&mut self) {
        let mut entries = Vec::with_capacity(self.live + self.live / 4);
        for span in self.lists.iter_mut() {
            let start = entries.len() as u32;
            entries.extend_from_slice(
                &self.entries[span.start as usize..(span.start + span.len) as usize],
            );
            *span = Span {
                start,
                len: span.len,
                cap: span.len,
            };
        }
        self.entries = entries;
    }
}

#[derive(Clone, Debug, Default)]
pub struct Dag {
    /// `children[n]`: the nodes built on `n`.
    children: Adjacency,
    /// `parents[n]`: the nodes `n` was built on.
    parents: Adjacency,
    /// `order[n]`: n's index in a topological order (every edge goes from lower to higher).
    order: ChunkedVec<u32>,
    /// The inverse of `order`.
    node_at: ChunkedVec<NodeId>,
    edge_count: usize,
}

impl Dag {
    pub fn new() -> Dag {
        Dag::default()
    }

    pub fn node_count(&self) -> usize {
        self.children.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edge_count
    }

    /// Adds a node at the end of the order: edges into it from existing nodes are free.
    pub fn add_node(&mut self) -> NodeId {
        let node = NodeId::try_from(self.children.len()).expect("fewer than 2^32 nodes");
        self.children.add_list();
        self.parents.add_list();
        self.order.push(node);
        self.node_at.push(node);
        node
    }

    pub fn parents(&self, node: NodeId) -> &[NodeId] {
        self.parents.get(node)
    }

    pub fn children(&self, node: NodeId) -> &[NodeId] {
        self.children.get(node)
    }

    pub fn has_edge(&self, from: NodeId, to: NodeId) -> bool {
        // A node's parents are usually fewer than its source's children.
        (to as usize) < self.node_count()
            && (from as usize) < self.node_count()
            && self.parents.get(to).contains(&from)
    }

    fn check_nodes(&self, from: NodeId, to: NodeId) -> Result<(), EdgeError> {
        for node in [from, to] {
            if node as usize >= self.node_count() {
                return Err(EdgeError::UnknownNode(node));
            }
        }
        if from == to {
            return Err(EdgeError::SelfLoop(from));
        }
        Ok(())
    }

    /// Whether `from → to` may be added without closing a cycle. Read-only, so `decide`
    /// can ask it of a shared state. O(1) when the edge agrees with the order; otherwise a
    /// search from both ends inside the order interval between them, which stops as soon
    /// as either side runs out, so it costs the smaller of the two regions.
    pub fn check_edge(&self, from: NodeId, to: NodeId) -> Result<(), EdgeError> {
        self.check_nodes(from, to)?;
        let upper = self.order[from as usize];
        let lower = self.order[to as usize];
        if lower > upper {
            return Ok(());
        }
        if self.path_exists(to, from, lower, upper) {
            return Err(EdgeError::Cycle { from, to });
        }
        Ok(())
    }

    /// Whether `start` reaches `target`, with `order[start] = lower < upper =
    /// order[target]`: every node of such a path has its order in [lower, upper].
    fn path_exists(&self, start: NodeId, target: NodeId, lower: u32, upper: u32) -> bool {
        let mut forward_seen = node_set(start);
        let mut backward_seen = node_set(target);
        let mut forward = vec![start];
        let mut backward = vec![target];
        while !forward.is_empty() && !backward.is_empty() {
            if forward.len() <= backward.len() {
                let node = forward.pop().expect("not empty");
                for &child in self.children.get(node) {
                    if backward_seen.contains(&child) {
                        return true;
                    }
                    if self.order[child as usize] < upper && forward_seen.insert(child) {
                        forward.push(child);
                    }
                }
            } else {
                let node = backward.pop().expect("not empty");
                for &parent in self.parents.get(node) {
                    if forward_seen.contains(&parent) {
                        return true;
                    }
                    if self.order[parent as usize] > lower && backward_seen.insert(parent) {
                        backward.push(parent);
                    }
                }
            }
        }
        false
    }

    /// Adds `from → to` (a duplicate edge is a no-op), reordering the affected region.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) -> Result<(), EdgeError> {
        self.check_nodes(from, to)?;
        if self.has_edge(from, to) {
            return Ok(());
        }
        let lower = self.order[to as usize];
        let upper = self.order[from as usize];
        if lower < upper {
            let forward = self
                .forward_region(to, upper)
                .ok_or(EdgeError::Cycle { from, to })?;
            let backward = self.backward_region(from, lower);
            self.reorder(backward, forward);
        }
        self.children.push(from, to);
        self.parents.push(to, from);
        self.edge_count += 1;
        Ok(())
    }

    /// Nodes reachable from `start` whose order is at most `upper`; `None` if one of them
    /// sits exactly at `upper` (that node is the edge's source: a cycle).
    fn forward_region(&self, start: NodeId, upper: u32) -> Option<Vec<NodeId>> {
        let mut seen = vec![start];
        let mut stack = vec![start];
        let mut visited = node_set(start);
        while let Some(node) = stack.pop() {
            for &child in self.children.get(node) {
                let order = self.order[child as usize];
                if order == upper {
                    return None;
                }
                if order < upper && visited.insert(child) {
                    seen.push(child);
                    stack.push(child);
                }
            }
        }
        Some(seen)
    }

    /// Nodes that reach `start` whose order is above `lower`.
    fn backward_region(&self, start: NodeId, lower: u32) -> Vec<NodeId> {
        let mut seen = vec![start];
        let mut stack = vec![start];
        let mut visited = node_set(start);
        while let Some(node) = stack.pop() {
            for &parent in self.parents.get(node) {
                if self.order[parent as usize] > lower && visited.insert(parent) {
                    seen.push(parent);
                    stack.push(parent);
                }
            }
        }
        seen
    }

    /// Gives the backward region the lowest of the freed order slots and the forward
    /// region the rest, each keeping its relative order.
    fn reorder(&mut self, mut backward: Vec<NodeId>, mut forward: Vec<NodeId>) {
        backward.sort_unstable_by_key(|node| self.order[*node as usize]);
        forward.sort_unstable_by_key(|node| self.order[*node as usize]);
        let mut slots: Vec<u32> = backward
            .iter()
            .chain(forward.iter())
            .map(|node| self.order[*node as usize])
            .collect();
        slots.sort_unstable();
        for (node, slot) in backward.iter().chain(forward.iter()).zip(slots) {
            self.order[*node as usize] = slot;
            self.node_at[slot as usize] = *node;
        }
    }

    /// Every ancestor of `start` (its sources, transitively) with its depth, breadth-first,
    /// stopping at `depth_max` levels or `nodes_max` nodes.
    pub fn ancestors(&self, start: NodeId, depth_max: u32, nodes_max: usize) -> Walk {
        self.walk(start, depth_max, nodes_max, &self.parents)
    }

    /// Every descendant of `start` (what was built on it, transitively), bounded likewise.
    pub fn descendants(&self, start: NodeId, depth_max: u32, nodes_max: usize) -> Walk {
        self.walk(start, depth_max, nodes_max, &self.children)
    }

    fn walk(&self, start: NodeId, depth_max: u32, nodes_max: usize, edges: &Adjacency) -> Walk {
        let mut walk = Walk::default();
        if start as usize >= self.node_count() {
            return walk;
        }
        let mut visited = node_set(start);
        let mut queue = VecDeque::from([(start, 0u32)]);
        while let Some((node, depth)) = queue.pop_front() {
            for &next in edges.get(node) {
                if visited.contains(&next) {
                    continue;
                }
                if depth >= depth_max || walk.nodes.len() >= nodes_max {
                    walk.truncated = true;
                    return walk;
                }
                visited.insert(next);
                walk.nodes.push((next, depth + 1));
                queue.push_back((next, depth + 1));
            }
        }
        walk
    }

    /// Whether every edge goes from a lower to a higher order: the invariant that proves
    /// the graph acyclic. For tests and audits; O(edges).
    pub fn order_is_topological(&self) -> bool {
        (0..self.node_count() as NodeId).all(|from| {
            self.children
                .get(from)
                .iter()
                .all(|to| self.order[from as usize] < self.order[*to as usize])
        }) && self
            .node_at
            .iter()
            .enumerate()
            .all(|(slot, node)| self.order[*node as usize] as usize == slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reaches(dag_edges: &[(NodeId, NodeId)], from: NodeId, to: NodeId) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::HashSet::new();
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if seen.insert(node) {
                stack.extend(dag_edges.iter().filter(|e| e.0 == node).map(|e| e.1));
            }
        }
        false
    }

    #[test]
    fn refuses_self_loops_cycles_and_unknown_nodes() {
        let mut dag = Dag::new();
        let a = dag.add_node();
        let b = dag.add_node();
        let c = dag.add_node();
        dag.add_edge(a, b).unwrap();
        dag.add_edge(b, c).unwrap();
        assert_eq!(dag.check_edge(a, a), Err(EdgeError::SelfLoop(a)));
        assert_eq!(
            dag.check_edge(c, a),
            Err(EdgeError::Cycle { from: c, to: a })
        );
        assert_eq!(dag.add_edge(c, a), Err(EdgeError::Cycle { from: c, to: a }));
        assert_eq!(dag.check_edge(a, 9), Err(EdgeError::UnknownNode(9)));
        assert_eq!(dag.edge_count(), 2);
        // An edge against the order but without a cycle reorders.
        let d = dag.add_node();
        dag.add_edge(d, a).unwrap();
        assert!(dag.order_is_topological());
        assert_eq!(
            dag.check_edge(c, d),
            Err(EdgeError::Cycle { from: c, to: d })
        );
    }

    #[test]
    fn bounded_walks_report_depth_and_truncation() {
        let mut dag = Dag::new();
        let nodes: Vec<NodeId> = (0..5).map(|_| dag.add_node()).collect();
        for pair in nodes.windows(2) {
            dag.add_edge(pair[0], pair[1]).unwrap();
        }
        let all = dag.ancestors(nodes[4], 10, 10);
        assert_eq!(all.nodes, vec![(3, 1), (2, 2), (1, 3), (0, 4)]);
        assert!(!all.truncated);
        let shallow = dag.ancestors(nodes[4], 2, 10);
        assert_eq!(shallow.nodes, vec![(3, 1), (2, 2)]);
        assert!(shallow.truncated);
        let few = dag.descendants(nodes[0], 10, 3);
        assert_eq!(few.nodes, vec![(1, 1), (2, 2), (3, 3)]);
        assert!(few.truncated);
        assert_eq!(dag.descendants(nodes[4], 10, 10), Walk::default());
    }

    #[test]
    fn adjacency_lists_survive_moves_and_rewrites() {
        let mut adjacency = Adjacency::default();
        let mut expected: Vec<Vec<NodeId>> = Vec::new();
        let mut state = 1u64;
        let mut rewrites = 0;
        for step in 0..200_000u32 {
            // A new list now and then, entries to random lists in between: every list
            // moves as it grows, enough to force rewrites.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            if step % 20 == 0 {
                adjacency.add_list();
                expected.push(Vec::new());
            }
            let node = if state >> 62 == 0 {
                expected.len() - 1
            } else {
                (state >> 20) as usize % expected.len()
            };
            let before = adjacency.entries.len();
            adjacency.push(node as NodeId, step);
            rewrites += usize::from(adjacency.entries.len() < before);
            expected[node].push(step);
        }
        assert!(rewrites > 0, "the test rewrote the arena");
        assert_eq!(adjacency.len(), expected.len());
        for (node, list) in expected.iter().enumerate() {
            assert_eq!(adjacency.get(node as NodeId), list.as_slice());
        }
        assert!(adjacency.entries.len() <= 2 * adjacency.live + ADJACENCY_WASTE_MIN + 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn never_admits_a_cycle_and_agrees_with_brute_force(
            node_count in 2u32..40,
            attempts in prop::collection::vec((0u32..40, 0u32..40), 0..150),
        ) {
            let mut dag = Dag::new();
            for _ in 0..node_count { dag.add_node(); }
            let mut edges: Vec<(NodeId, NodeId)> = Vec::new();
            for (from, to) in attempts {
                let (from, to) = (from % node_count, to % node_count);
                let would_cycle = from == to || reaches(&edges, to, from);
                let checked = dag.check_edge(from, to);
                let added = dag.add_edge(from, to);
                prop_assert_eq!(checked.is_ok(), !would_cycle);
                prop_assert_eq!(added.is_ok(), !would_cycle);
                if added.is_ok() && !edges.contains(&(from, to)) {
                    edges.push((from, to));
                }
                prop_assert!(dag.order_is_topological());
            }
            prop_assert_eq!(dag.edge_count(), edges.len());
            for node in 0..node_count {
                let ancestors = dag.ancestors(node, u32::MAX, usize::MAX);
                let expected: Vec<NodeId> = (0..node_count).filter(|n| *n != node && reaches(&edges, *n, node)).collect();
                let mut got: Vec<NodeId> = ancestors.nodes.iter().map(|(n, _)| *n).collect();
                got.sort_unstable();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
