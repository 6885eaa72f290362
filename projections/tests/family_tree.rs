//! The family tree read model against a brute-force reference on random DAGs: sources and
//! remixes with their kinds, ancestors and descendants with depths under depth and node
//! limits, roots and family sizes — and the same answers after a snapshot round trip.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ledger::domain::events::*;
use ledger::domain::ids::{MemberId, ProjectId, RecordId};
use ledger::store::Hash32;
use ledger::time::Timestamp;
use projections::family_tree::{FamilyTree, Lineage, LinkKind};
use projections::walk::{walk, Direction};
use projections::{AppliedEvent, Catalog, Projection, WalkLimits};
use proptest::prelude::*;

/// The event at `position` as the runner hands it over: ids resolved by `catalog`.
fn resolved(catalog: &Catalog, position: u64, event: DomainEvent) -> AppliedEvent {
    let mut applied = AppliedEvent::new(position, Timestamp(0), Hash32::GENESIS, event);
    catalog.resolve(std::slice::from_mut(&mut applied));
    applied
}

fn id(node: usize) -> RecordId {
    RecordId::new(format!("r{node}")).unwrap()
}

fn media() -> MediaRef {
    MediaRef {
        blake3: [0; 32],
        size_bytes: 1,
    }
}

fn upload_event(node: usize, sources: &[usize]) -> DomainEvent {
    let contributor = MemberId::new("m").unwrap();
    let project_id = ProjectId::new("p").unwrap();
    let licence = Licence {
        terms_version: "t".into(),
    };
    if sources.is_empty() {
        DomainEvent::RecordUploaded(RecordUploaded {
            record_id: id(node),
            project_id,
            contributor,
            kind: RecordKind::Text,
            title: "t".into(),
            media: media(),
            licence,
        })
    } else {
        DomainEvent::RemixUploaded(RemixUploaded {
            record_id: id(node),
            project_id,
            contributor,
            kind: RecordKind::Text,
            title: "t".into(),
            media: media(),
            licence,
            sources: sources.iter().map(|s| id(*s)).collect(),
        })
    }
}

/// The reference: edges `(source, record, kind)` in the order they were made.
#[derive(Default)]
struct Reference {
    nodes: usize,
    edges: Vec<(usize, usize, LinkKind)>,
}

impl Reference {
    fn parents(&self, node: usize) -> Vec<(usize, LinkKind)> {
        self.edges
            .iter()
            .filter(|e| e.1 == node)
            .map(|e| (e.0, e.2))
            .collect()
    }

    fn children(&self, node: usize) -> Vec<(usize, LinkKind)> {
        self.edges
            .iter()
            .filter(|e| e.0 == node)
            .map(|e| (e.1, e.2))
            .collect()
    }

    /// Shortest distance to every node reachable upwards (`up`) or downwards.
    fn distances(&self, start: usize, up: bool) -> BTreeMap<usize, u32> {
        let mut distance = BTreeMap::new();
        let mut queue = VecDeque::from([(start, 0u32)]);
        let mut seen = BTreeSet::from([start]);
        while let Some((node, depth)) = queue.pop_front() {
            let next = if up {
                self.parents(node)
            } else {
                self.children(node)
            };
            for (other, _) in next {
                if seen.insert(other) {
                    distance.insert(other, depth + 1);
                    queue.push_back((other, depth + 1));
                }
            }
        }
        distance
    }

    fn reaches(&self, from: usize, to: usize) -> bool {
        from == to || self.distances(from, false).contains_key(&to)
    }
}

fn check_lineage(
    got: &Lineage,
    distances: &BTreeMap<usize, u32>,
    limits: WalkLimits,
) -> Result<(), TestCaseError> {
    let within: usize = distances
        .values()
        .filter(|d| **d <= limits.depth_max)
        .count();
    prop_assert_eq!(got.records.len(), within.min(limits.nodes_max));
    prop_assert_eq!(got.truncated, distances.len() > got.records.len());
    let mut previous = 0;
    let mut seen = BTreeSet::new();
    for relative in &got.records {
        let node: usize = relative.record.as_str()[1..].parse().unwrap();
        prop_assert!(seen.insert(node), "listed twice");
        prop_assert_eq!(Some(&relative.depth), distances.get(&node));
        prop_assert!(relative.depth >= previous, "breadth-first: nearest first");
        prop_assert!(relative.depth <= limits.depth_max);
        previous = relative.depth;
    }
    Ok(())
}

fn check(
    tree: &FamilyTree,
    reference: &Reference,
    limits: WalkLimits,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(tree.record_count(), reference.nodes);
    prop_assert_eq!(tree.link_count(), reference.edges.len());
    prop_assert!(tree.sources(&RecordId::new("nope").unwrap()).is_none());
    let unlimited = WalkLimits::new(u32::MAX, usize::MAX);
    for node in 0..reference.nodes {
        let record = id(node);
        // The model's walk answers exactly as the domain's `Dag` walk does.
        let start = tree.node(record.as_str()).unwrap();
        for (depth_max, nodes_max) in [(limits.depth_max, limits.nodes_max), (u32::MAX, usize::MAX)]
        {
            prop_assert_eq!(
                walk(
                    tree.dag(),
                    start,
                    depth_max,
                    nodes_max,
                    Direction::Ancestors
                ),
                tree.dag().ancestors(start, depth_max, nodes_max)
            );
            prop_assert_eq!(
                walk(
                    tree.dag(),
                    start,
                    depth_max,
                    nodes_max,
                    Direction::Descendants
                ),
                tree.dag().descendants(start, depth_max, nodes_max)
            );
        }
        let sources: Vec<(RecordId, LinkKind)> = tree
            .sources(&record)
            .unwrap()
            .into_iter()
            .map(|l| (l.record, l.kind))
            .collect();
        let expected: Vec<(RecordId, LinkKind)> = reference
            .parents(node)
            .into_iter()
            .map(|(n, k)| (id(n), k))
            .collect();
        prop_assert_eq!(sources, expected, "sources of {}", node);
        let remixes: BTreeSet<(RecordId, LinkKind)> = tree
            .remixes(&record)
            .unwrap()
            .into_iter()
            .map(|l| (l.record, l.kind))
            .collect();
        let expected: BTreeSet<(RecordId, LinkKind)> = reference
            .children(node)
            .into_iter()
            .map(|(n, k)| (id(n), k))
            .collect();
        prop_assert_eq!(remixes, expected, "remixes of {}", node);

        let up = reference.distances(node, true);
        let down = reference.distances(node, false);
        for walk_limits in [limits, unlimited] {
            check_lineage(
                &tree.ancestors(&record, walk_limits).unwrap(),
                &up,
                walk_limits,
            )?;
            check_lineage(
                &tree.descendants(&record, walk_limits).unwrap(),
                &down,
                walk_limits,
            )?;
        }

        let roots: BTreeSet<RecordId> = tree
            .roots(&record, unlimited)
            .unwrap()
            .records
            .into_iter()
            .collect();
        let expected: BTreeSet<RecordId> = if reference.parents(node).is_empty() {
            BTreeSet::from([record.clone()])
        } else {
            up.keys()
                .filter(|n| reference.parents(**n).is_empty())
                .map(|n| id(*n))
                .collect()
        };
        prop_assert_eq!(roots, expected, "roots of {}", node);

        let size = tree.family_size(&record, unlimited).unwrap();
        prop_assert_eq!(size.ancestors, up.len());
        prop_assert_eq!(size.descendants, down.len());
        prop_assert_eq!(size.total, 1 + up.len() + down.len());
        prop_assert!(!size.truncated);
    }
    Ok(())
}

/// A random history: records (each an original or a remix of 1–3 earlier records), with
/// citations made between uploads; citations that would close a cycle, cite themselves or
/// repeat a link are what the decider refuses, so they are not sent.
/// One upload: its sources (indices, reduced modulo the records so far) and the citations
/// `(record, source)` made right after it.
type Step = (Vec<usize>, Vec<(usize, usize)>);

fn history() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop::collection::vec(0usize..1_000, 0..4),
            prop::collection::vec((0usize..1_000, 0usize..1_000), 0..3),
        ),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn family_tree_agrees_with_brute_force(
        steps in history(),
        depth_max in 0u32..5,
        nodes_max in 0usize..12,
    ) {
        let catalog = Catalog::new();
        let mut tree = FamilyTree::new(catalog.clone());
        let mut reference = Reference::default();
        let mut log = Vec::new();
        let mut apply = |tree: &mut FamilyTree, event: DomainEvent| {
            log.push(event.clone());
            tree.apply(&resolved(&catalog, log.len() as u64, event));
        };
        for (sources, citations) in steps {
            let node = reference.nodes;
            let mut sources: Vec<usize> = if node == 0 {
                Vec::new()
            } else {
                sources.into_iter().map(|s| s % node).collect()
            };
            sources.dedup();
            let mut unique = Vec::new();
            for source in sources {
                if !unique.contains(&source) {
                    unique.push(source);
                }
            }
            apply(&mut tree, upload_event(node, &unique));
            reference.nodes += 1;
            for source in &unique {
                reference.edges.push((*source, node, LinkKind::Remix));
            }
            for (record, source) in citations {
                let (record, source) = (record % reference.nodes, source % reference.nodes);
                let linked = reference.edges.iter().any(|e| e.0 == source && e.1 == record);
                if record == source || linked || reference.reaches(record, source) {
                    continue;
                }
                apply(&mut tree, DomainEvent::SourceCited(SourceCited {
                    record_id: id(record),
                    source_id: id(source),
                }));
                reference.edges.push((source, record, LinkKind::Citation));
            }
        }
        let limits = WalkLimits::new(depth_max, nodes_max);
        check(&tree, &reference, limits)?;

        // A snapshot round trip keeps every answer and the stored form itself.
        let restored = FamilyTree::decode(&tree.encode(), catalog.clone()).unwrap();
        prop_assert_eq!(restored.encode(), tree.encode());
        check(&restored, &reference, limits)?;

        // Onto a restored catalog, and replayed by a tree behind a catalog that has seen
        // the whole log: the same numbers, the same tree.
        let (bytes, _, _) = catalog.encode();
        let restored_catalog = Catalog::decode(&bytes).unwrap();
        let restored = FamilyTree::decode(&tree.encode(), restored_catalog.clone()).unwrap();
        check(&restored, &reference, limits)?;
        let mut behind = FamilyTree::new(restored_catalog.clone());
        for (index, event) in log.into_iter().enumerate() {
            behind.apply(&resolved(&restored_catalog, index as u64 + 1, event));
        }
        prop_assert_eq!(behind.encode(), tree.encode());
        // A stored tree larger than its catalog is refused.
        prop_assert!(FamilyTree::decode(&tree.encode(), Catalog::new()).is_err());
    }
}

#[test]
fn a_withdrawn_record_stays_in_the_tree_and_is_marked() {
    let catalog = Catalog::new();
    let mut tree = FamilyTree::new(catalog.clone());
    for (position, event) in [
        upload_event(0, &[]),
        upload_event(1, &[0]),
        DomainEvent::RecordWithdrawn(RecordWithdrawn {
            record_id: id(0),
            reason: "asked".into(),
        }),
    ]
    .into_iter()
    .enumerate()
    {
        tree.apply(&resolved(&catalog, position as u64 + 1, event));
    }
    assert_eq!(tree.is_withdrawn(&id(0)), Some(true));
    assert_eq!(tree.is_withdrawn(&id(1)), Some(false));
    let roots = tree.roots(&id(1), WalkLimits::new(10, 10)).unwrap();
    assert_eq!(roots.records, vec![id(0)]);
}
