//! Bounded breadth-first walks over the domain's `Dag`, answering exactly as
//! `Dag::ancestors` / `Dag::descendants` do (same order, same depths, same truncation), but
//! marking visited nodes in a per-thread array stamped with a walk number instead of a
//! fresh `HashSet` per walk: no hashing and no allocation per node on the query path.
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

#[derive(Default)]
struct Visited {
    /// `stamps[n] == walk` marks `n` visited by the current walk.
    stamps: Vec<u32>,
    walk: u32,
}

impl Visited {
    fn begin(&mut self, node_count: usize) {
        if self.stamps.len() < node_count {
            self.stamps.resize(node_count, 0);
        }
        self.walk = self.walk.wrapping_add(1);
        if self.walk == 0 {
            self.stamps.fill(0);
            self.walk = 1;
        }
    }

    /// Marks `node`; false if it was already marked by this walk.
    fn insert(&mut self, node: NodeId) -> bool {
        let stamp = &mut self.stamps[node as usize];
        if *stamp == self.walk {
            return false;
        }
        *stamp = self.walk;
        true
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
        // The queue is the start, then `walk.nodes` itself, in order.
        let mut cursor = 0usize;
        let mut current = (start, 0u32);
        loop {
            let (node, depth) = current;
            for &next in next_of(node) {
                if visited.stamps[next as usize] == visited.walk {
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
    });
    walk
}
