//! Bounded breadth-first walks over the domain's `Dag`, answering exactly as
//! `Dag::ancestors` / `Dag::descendants` do (same order, same depths, same truncation), but
//! marking visited nodes in a per-thread bitset instead of a fresh `HashSet` per walk: no
//! hashing and no allocation per node on the query path.
//! Built on the `Dag`'s public adjacency (`parents`, `children`); `tests/family_tree.rs`
//! checks both agree.

use std::cell::RefCell;

use ledger::dag::{Dag, NodeId, Walk};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sources, transitively.
    Ancestors,
    /// What was built on it, transitively.
    Descendants,
}

/// One bit per node (128 KiB for a million nodes: it stays in cache, where a 4-byte stamp
/// per node did not). A walk clears the bits it set from its own list of nodes, so a walk
/// costs what it visits, never the size of the tree.
#[derive(Default)]
struct Visited {
    bits: Vec<u64>,
}

impl Visited {
    fn begin(&mut self, node_count: usize) {
        let words = node_count.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
    }

    fn contains(&self, node: NodeId) -> bool {
        self.bits[node as usize / 64] & (1 << (node % 64)) != 0
    }

    fn insert(&mut self, node: NodeId) {
        self.bits[node as usize / 64] |= 1 << (node % 64);
    }

    fn clear(&mut self, node: NodeId) {
        self.bits[node as usize / 64] = 0;
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

pub fn walk(
    dag: &Dag,
    start: NodeId,
    depth_max: u32,
    nodes_max: usize,
    direction: Direction,
) -> Walk {
    let mut walk = Walk::default();
    if start as usize >= dag.node_count() {
        return walk;
    }
    // Most walks of a real tree stop well short of a large limit; growing from a few
    // hundred costs a copy or two, where reserving the limit would cost its pages.
    walk.nodes.reserve(nodes_max.min(256));
    let next_of = |node: NodeId| match direction {
        Direction::Ancestors => dag.parents(node),
        Direction::Descendants => dag.children(node),
    };
    VISITED.with(|visited| {
        let mut visited = visited.borrow_mut();
        visited.begin(dag.node_count());
        visited.insert(start);
        breadth_first(
            &mut visited,
            &mut walk,
            start,
            depth_max,
            nodes_max,
            next_of,
        );
        // Whole words: every bit set was one of these nodes.
        visited.clear(start);
        for (node, _) in &walk.nodes {
            visited.clear(*node);
        }
    });
    walk
}

fn breadth_first<'a>(
    visited: &mut Visited,
    walk: &mut Walk,
    start: NodeId,
    depth_max: u32,
    nodes_max: usize,
    next_of: impl Fn(NodeId) -> &'a [NodeId],
) {
    // The queue is the start, then `walk.nodes` itself, in order.
    let mut cursor = 0usize;
    let mut current = (start, 0u32);
    loop {
        let (node, depth) = current;
        for &next in next_of(node) {
            if visited.contains(next) {
                continue;
            }
            if depth >= depth_max || walk.nodes.len() >= nodes_max {
                walk.truncated = true;
                return;
            }
            visited.insert(next);
            walk.nodes.push((next, depth + 1));
        }
        match walk.nodes.get(cursor) {
            Some(next) => {
                current = *next;
                cursor += 1;
            }
            None => return,
        }
    }
}
