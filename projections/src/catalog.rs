//! The id catalog: one dense `u32` per record, member, production, distribution and payout,
//! shared by every read model fed from the same log.
//!
//! The runner resolves each event's ids here once, before any model applies it, and hands
//! the numbers with the event (`EventIds`); the models index plain arrays by them. Before,
//! each of the four models interned the same strings into tables of its own: four hash
//! probes (two or three cache misses each in multi-million-entry tables) and four copies
//! of every id.
//!
//! **Numbering is a function of the log alone.** An id is numbered at its first sight, in
//! position order, and only by the events that create it (an upload numbers its record,
//! `ProductionOpened` its production, `AllocationProposed` its distribution,
//! `PayoutIssued` its payout; a member is numbered where it registers, contributes or is
//! paid). Every other mention only looks the id up. So a catalog that has resolved the log
//! up to any position numbers every id exactly as a fresh one fed from position 1 would:
//! a rebuild may share the serving catalog, a snapshot of it restores the same numbers, and
//! models restored from their snapshots find their numbers in it.
//!
//! **A catalog may be ahead of a model** (it resolves before models apply; a rebuild
//! replays events it already knows; a model snapshot may be older than the catalog's). A
//! lookup may then find an id that did not exist yet at the event's position: it is always
//! numbered above everything the model has applied, so each model checks a looked-up
//! number against what it holds (`record < record_count`, a slot it filled) and ignores the
//! event as it would an unknown id. A catalog behind a model is never used: a model
//! snapshot loads only with a catalog at or past its position.
//!
//! Locks: the runner resolves a chunk of events under the write lock; queries read names
//! under the read lock, once per query, never while holding it already (a std `RwLock`
//! lets a waiting writer block a second read on the same thread).

use std::sync::{Arc, RwLock, RwLockReadGuard};

use ledger::domain::events::DomainEvent;
use ledger::store::{Hash32, Position};
use serde::{Deserialize, Serialize};

use crate::interner::Interner;
use crate::projection::{decode_serde, encode_serde, AppliedEvent};

/// The catalog's name in its snapshot file.
pub const NAME: &str = "catalog";
/// Bumped whenever the numbering rules or the stored form change. Every model's stored
/// form holds these numbers, so bumping it means bumping every model's too.
pub const SCHEMA_VERSION: u32 = 1;

/// An event's ids as numbers of the catalog: `None` where the event has no such id or it
/// names one the log has not created (yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventIds {
    /// The record uploaded, cited, withdrawn or included.
    pub record: Option<u32>,
    /// A remix's sources that were uploaded before it, in the order named (repeats kept).
    pub sources: Vec<u32>,
    /// A citation's source.
    pub source: Option<u32>,
    /// The member registered, the upload's contributor, or the payout's payee.
    pub member: Option<u32>,
    pub production: Option<u32>,
    /// The distribution proposed, continued, amended, finalized, commented on or paid.
    pub distribution: Option<u32>,
    pub payout: Option<u32>,
}

/// Every id numbered so far, by kind, and the last event resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    records: Interner,
    members: Interner,
    productions: Interner,
    distributions: Interner,
    payouts: Interner,
    position: Position,
    hash: [u8; 32],
}

impl Names {
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn production_count(&self) -> usize {
        self.productions.len()
    }

    pub fn distribution_count(&self) -> usize {
        self.distributions.len()
    }

    pub fn payout_count(&self) -> usize {
        self.payouts.len()
    }

    pub fn record_number(&self, record: &str) -> Option<u32> {
        self.records.get(record)
    }

    pub fn member_number(&self, member: &str) -> Option<u32> {
        self.members.get(member)
    }

    pub fn production_number(&self, production: &str) -> Option<u32> {
        self.productions.get(production)
    }

    pub fn distribution_number(&self, distribution: &str) -> Option<u32> {
        self.distributions.get(distribution)
    }

    pub fn payout_number(&self, payout: &str) -> Option<u32> {
        self.payouts.get(payout)
    }

    /// The id numbered `record` (which must be numbered).
    pub fn record(&self, record: u32) -> &str {
        self.records.resolve(record)
    }

    pub fn member(&self, member: u32) -> &str {
        self.members.resolve(member)
    }

    pub fn production(&self, production: u32) -> &str {
        self.productions.resolve(production)
    }

    pub fn distribution(&self, distribution: u32) -> &str {
        self.distributions.resolve(distribution)
    }

    /// The last event resolved: its position and hash.
    pub fn resolved(&self) -> (Position, Hash32) {
        (self.position, Hash32(self.hash))
    }

    /// Numbers `event`'s ids (the numbering rules: see the module's doc).
    fn resolve(&mut self, event: &DomainEvent) -> EventIds {
        use DomainEvent as E;
        let mut ids = EventIds::default();
        match event {
            E::MemberRegistered(e) => ids.member = Some(self.members.intern(e.member_id.as_str())),
            E::RecordUploaded(e) => {
                ids.member = Some(self.members.intern(e.contributor.as_str()));
                ids.record = Some(self.records.intern(e.record_id.as_str()));
            }
            E::RemixUploaded(e) => {
                ids.member = Some(self.members.intern(e.contributor.as_str()));
                let record = self.records.intern(e.record_id.as_str());
                // Numbers below the record's were uploaded before it; the record itself and
                // anything a catalog ahead of this event knows are not its sources yet.
                ids.sources = e
                    .sources
                    .iter()
                    .filter_map(|source| self.records.get(source.as_str()))
                    .filter(|source| *source < record)
                    .collect();
                ids.record = Some(record);
            }
            E::SourceCited(e) => {
                ids.record = self.records.get(e.record_id.as_str());
                ids.source = self.records.get(e.source_id.as_str());
            }
            E::RecordWithdrawn(e) => ids.record = self.records.get(e.record_id.as_str()),
            E::ProductionOpened(e) => {
                ids.production = Some(self.productions.intern(e.production_id.as_str()))
            }
            E::RecordIncluded(e) => {
                ids.production = self.productions.get(e.production_id.as_str());
                ids.record = self.records.get(e.record_id.as_str());
            }
            E::RevenueRecorded(e) => {
                ids.production = self.productions.get(e.production_id.as_str())
            }
            E::ExpenseRecorded(e) => {
                ids.production = self.productions.get(e.production_id.as_str())
            }
            E::LeadFeeAgreed(e) => ids.production = self.productions.get(e.production_id.as_str()),
            E::AllocationProposed(e) => {
                ids.production = self.productions.get(e.production_id.as_str());
                ids.distribution = Some(self.distributions.intern(e.distribution_id.as_str()));
            }
            E::AllocationLinesContinued(e) => {
                ids.distribution = self.distributions.get(e.distribution_id.as_str())
            }
            E::AllocationAmended(e) => {
                ids.distribution = self.distributions.get(e.distribution_id.as_str())
            }
            E::AllocationFinalized(e) => {
                ids.distribution = self.distributions.get(e.distribution_id.as_str())
            }
            E::CommentPosted(e) => {
                ids.distribution = e
                    .target
                    .distribution()
                    .and_then(|distribution| self.distributions.get(distribution.as_str()))
            }
            E::PayoutIssued(e) => {
                ids.member = Some(self.members.intern(e.member.as_str()));
                ids.payout = Some(self.payouts.intern(e.payout_id.as_str()));
                if let ledger::domain::events::PayoutFor::Line { distribution_id } = &e.payout_for
                {
                    ids.distribution = self.distributions.get(distribution_id.as_str());
                }
            }
            E::PayoutRetried(e) => ids.payout = self.payouts.get(e.payout_id.as_str()),
            E::PayoutSettled(e) => ids.payout = self.payouts.get(e.payout_id.as_str()),
            E::PayoutFailed(e) => ids.payout = self.payouts.get(e.payout_id.as_str()),
            E::MemberPersonalDataErased(_)
            | E::ProjectStarted(_)
            | E::LeadAssigned(_)
            | E::ProjectFinished(_) => {}
        }
        ids
    }
}

/// The shared catalog: a handle, cheap to clone; every clone sees the same numbers.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    names: Arc<RwLock<Names>>,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// The names as they are now. Hold the guard for one query at most, and call nothing
    /// that takes it again meanwhile (every model method that names ids does).
    pub fn read(&self) -> RwLockReadGuard<'_, Names> {
        self.names.read().expect("the catalog's lock is never poisoned")
    }

    /// Numbers the ids of `events` (in order, one write lock for all of them) and sets
    /// each event's `ids`.
    pub fn resolve(&self, events: &mut [AppliedEvent]) {
        let mut names = self
            .names
            .write()
            .expect("the catalog's lock is never poisoned");
        for applied in events {
            applied.ids = names.resolve(&applied.event);
            if applied.position > names.position {
                names.position = applied.position;
                names.hash = applied.hash.0;
            }
        }
    }

    /// The last event resolved: its position and hash.
    pub fn resolved(&self) -> (Position, Hash32) {
        self.read().resolved()
    }

    /// The snapshot content, and the position and hash of the last event it resolved.
    pub fn encode(&self) -> (Vec<u8>, Position, Hash32) {
        let names = self.read();
        let (position, hash) = names.resolved();
        (encode_serde(&*names), position, hash)
    }

    pub fn decode(bytes: &[u8]) -> Result<Catalog, String> {
        let names: Names = decode_serde(bytes)?;
        Ok(Catalog {
            names: Arc::new(RwLock::new(names)),
        })
    }

    /// Whether two handles share one catalog.
    pub fn same(&self, other: &Catalog) -> bool {
        Arc::ptr_eq(&self.names, &other.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::domain::events::{RecordKind, RecordUploaded, RemixUploaded, SourceCited};
    use ledger::domain::ids::{MemberId, ProjectId, RecordId};
    use ledger::time::Timestamp;

    fn upload(record: &str, contributor: &str, sources: &[&str]) -> DomainEvent {
        let record_id = RecordId::new(record).unwrap();
        let project_id = ProjectId::new("p").unwrap();
        let contributor = MemberId::new(contributor).unwrap();
        let media = ledger::domain::events::MediaRef {
            blake3: [0; 32],
            size_bytes: 1,
        };
        let licence = ledger::domain::events::Licence {
            terms_version: "1".into(),
        };
        if sources.is_empty() {
            return RecordUploaded {
                record_id,
                project_id,
                contributor,
                kind: RecordKind::Audio,
                title: "t".into(),
                media,
                licence,
            }
            .into();
        }
        RemixUploaded {
            record_id,
            project_id,
            contributor,
            kind: RecordKind::Audio,
            title: "t".into(),
            media,
            licence,
            sources: sources.iter().map(|s| RecordId::new(*s).unwrap()).collect(),
        }
        .into()
    }

    fn cite(record: &str, source: &str) -> DomainEvent {
        SourceCited {
            record_id: RecordId::new(record).unwrap(),
            source_id: RecordId::new(source).unwrap(),
        }
        .into()
    }

    fn applied(events: Vec<DomainEvent>) -> Vec<AppliedEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| AppliedEvent {
                position: index as Position + 1,
                recorded_at: Timestamp::EPOCH,
                hash: Hash32([index as u8; 32]),
                event,
                ids: EventIds::default(),
            })
            .collect()
    }

    fn log() -> Vec<DomainEvent> {
        vec![
            // Cites a record the log has not created yet: nothing to number.
            cite("b", "a"),
            upload("a", "m1", &[]),
            // Names itself and a later record among its sources.
            upload("b", "m2", &["a", "b", "c", "a"]),
            upload("c", "m1", &["b"]),
            cite("c", "a"),
        ]
    }

    #[test]
    fn numbers_ids_at_first_sight_and_only_where_they_are_created() {
        let catalog = Catalog::new();
        let mut events = applied(log());
        catalog.resolve(&mut events);
        let ids: Vec<&EventIds> = events.iter().map(|e| &e.ids).collect();
        assert_eq!(ids[0], &EventIds::default(), "unknown ids stay unnumbered");
        assert_eq!((ids[1].record, ids[1].member), (Some(0), Some(0)));
        assert_eq!((ids[2].record, ids[2].member), (Some(1), Some(1)));
        assert_eq!(ids[2].sources, vec![0, 0], "itself and a later record are left out");
        assert_eq!(
            (ids[3].record, ids[3].member, ids[3].sources.clone()),
            (Some(2), Some(0), vec![1])
        );
        assert_eq!((ids[4].record, ids[4].source), (Some(2), Some(0)));
        let names = catalog.read();
        assert_eq!((names.record(1), names.member(1)), ("b", "m2"));
        assert_eq!(names.record_number("zzz"), None, "an unknown id in a query");
        assert_eq!(names.member_number("nobody"), None);
        assert_eq!(names.resolved(), (5, Hash32([4; 32])));
    }

    /// A catalog restored from a snapshot, or one that has seen more of the log, numbers
    /// each event as a fresh catalog does, except for ids the event could not know yet,
    /// which it numbers above everything created before the event.
    #[test]
    fn a_restored_or_further_catalog_resolves_the_log_alike() {
        let fresh = Catalog::new();
        let mut expected = applied(log());
        fresh.resolve(&mut expected);

        let (bytes, position, hash) = fresh.encode();
        assert_eq!((position, hash), (5, Hash32([4; 32])));
        let restored = Catalog::decode(&bytes).unwrap();
        assert_eq!(*restored.read(), *fresh.read());
        assert!(!restored.same(&fresh) && fresh.same(&fresh.clone()));
        let mut again = applied(log());
        restored.resolve(&mut again);
        assert_eq!(again[1..], expected[1..]);
        // The first event cites records created later: a further catalog finds them, and
        // a model holding no record yet ignores numbers it does not have.
        assert_eq!((again[0].ids.record, again[0].ids.source), (Some(1), Some(0)));
        assert_eq!(restored.resolved(), (5, Hash32([4; 32])), "never moves back");
        assert!(Catalog::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
