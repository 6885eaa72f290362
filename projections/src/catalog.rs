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

use ledger::domain::events::{BorrowedEvent, DomainEvent, EventDecodeError};
use ledger::domain::ids::{DistributionId, MemberId, PayoutId, RecordId};
use ledger::store::{EventView, Hash32, Position};
use serde::{Deserialize, Serialize};

use crate::interner::Interner;
use crate::projection::{decode_serde, encode_serde, AppliedEvent, Fact, IdsOnly};

/// The catalog's name in its snapshot file.
pub const NAME: &str = "catalog";
/// Bumped whenever the numbering rules or the stored form change. Every model's stored
/// form holds these numbers, so bumping it means bumping every model's too.
pub const SCHEMA_VERSION: u32 = 1;

/// Events between the stages of `Catalog::decode_views`'s prefetching (an event's index
/// slots `3 ×` this many events before it is numbered, the end offsets of the strings they
/// name `2 ×`, their bytes `1 ×`): far enough for memory to answer meanwhile (numbering an
/// event takes some 100 ns), near enough that nothing is evicted before use.
const PREFETCH_STAGE_EVENTS: usize = 4;

/// A lookup `Catalog::decode_views` prefetches for.
struct Lookup {
    /// In the members' table, else the records'.
    members: bool,
    hash: u64,
}

#[derive(Clone, Copy)]
enum Stage {
    Slot,
    Ends,
    Bytes,
}

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

    /// `record` as a typed id: only ids that passed the id rule are numbered.
    pub fn record_id(&self, record: u32) -> RecordId {
        RecordId::new(self.record(record)).expect("only valid record ids are numbered")
    }

    /// `member` as a typed id: only ids that passed the id rule are numbered.
    pub fn member_id(&self, member: u32) -> MemberId {
        MemberId::new(self.member(member)).expect("only valid member ids are numbered")
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

    /// `distribution` as a typed id: only ids that passed the id rule are numbered.
    pub fn distribution_id(&self, distribution: u32) -> DistributionId {
        DistributionId::new(self.distribution(distribution))
            .expect("only valid distribution ids are numbered")
    }

    pub fn payout(&self, payout: u32) -> &str {
        self.payouts.resolve(payout)
    }

    /// `payout` as a typed id: only ids that passed the id rule are numbered.
    pub fn payout_id(&self, payout: u32) -> PayoutId {
        PayoutId::new(self.payout(payout)).expect("only valid payout ids are numbered")
    }

    /// The last event resolved: its position and hash.
    pub fn resolved(&self) -> (Position, Hash32) {
        (self.position, Hash32(self.hash))
    }

    fn advance(&mut self, position: Position, hash: Hash32) {
        if position > self.position {
            self.position = position;
            self.hash = hash.0;
        }
    }

    fn upload<'s>(
        &mut self,
        record: &str,
        contributor: &str,
        sources: impl Iterator<Item = &'s str>,
    ) -> EventIds {
        let member = self.members.intern(contributor);
        let record = self.records.intern(record);
        EventIds {
            record: Some(record),
            // Numbers below the record's were uploaded before it; the record itself and
            // anything a catalog ahead of this event knows are not its sources yet.
            sources: sources
                .filter_map(|source| self.records.get(source))
                .filter(|source| *source < record)
                .collect(),
            member: Some(member),
            ..EventIds::default()
        }
    }

    fn citation(&self, record: &str, source: &str) -> EventIds {
        EventIds {
            record: self.records.get(record),
            source: self.records.get(source),
            ..EventIds::default()
        }
    }

    fn inclusion(&self, production: &str, record: &str) -> EventIds {
        EventIds {
            record: self.records.get(record),
            production: self.productions.get(production),
            ..EventIds::default()
        }
    }

    fn registration(&mut self, member: &str) -> EventIds {
        EventIds {
            member: Some(self.members.intern(member)),
            ..EventIds::default()
        }
    }

    /// The lookups numbering `event` will make in the large tables (records, members),
    /// appended to `into` for `prefetch`.
    fn lookups(event: &BorrowedEvent<'_>, into: &mut Vec<Lookup>) {
        let record = |id: &str| Lookup {
            members: false,
            hash: Interner::hash(id),
        };
        let member = |id: &str| Lookup {
            members: true,
            hash: Interner::hash(id),
        };
        match event {
            BorrowedEvent::RecordUploaded {
                record_id,
                contributor,
            } => into.extend([record(record_id), member(contributor)]),
            BorrowedEvent::RemixUploaded {
                record_id,
                contributor,
                sources,
            } => {
                into.extend([record(record_id), member(contributor)]);
                into.extend(sources.iter().map(|source| record(source)));
            }
            BorrowedEvent::SourceCited {
                record_id,
                source_id,
            } => into.extend([record(record_id), record(source_id)]),
            BorrowedEvent::RecordIncluded { record_id, .. } => into.push(record(record_id)),
            BorrowedEvent::MemberRegistered { member_id } => into.push(member(member_id)),
            BorrowedEvent::RecordComment | BorrowedEvent::Owned(_) => {}
        }
    }

    /// One stage of prefetching `lookups` (`Interner::prefetch_slot` and the next two).
    fn prefetch(&self, stage: Stage, lookups: &[Lookup]) {
        for lookup in lookups {
            let table = if lookup.members {
                &self.members
            } else {
                &self.records
            };
            match stage {
                Stage::Slot => table.prefetch_slot(lookup.hash),
                Stage::Ends => table.prefetch_ends(lookup.hash),
                Stage::Bytes => table.prefetch_bytes(lookup.hash),
            }
        }
    }

    /// What the models get of an event decoded in place, with its ids numbered.
    fn resolve_borrowed(&mut self, event: BorrowedEvent<'_>) -> (Fact, EventIds) {
        match event {
            BorrowedEvent::RecordUploaded {
                record_id,
                contributor,
            } => (
                Fact::Ids(IdsOnly::Upload),
                self.upload(record_id, contributor, std::iter::empty()),
            ),
            BorrowedEvent::RemixUploaded {
                record_id,
                contributor,
                sources,
            } => (
                Fact::Ids(IdsOnly::Upload),
                self.upload(record_id, contributor, sources.into_iter()),
            ),
            BorrowedEvent::SourceCited {
                record_id,
                source_id,
            } => (
                Fact::Ids(IdsOnly::Citation),
                self.citation(record_id, source_id),
            ),
            BorrowedEvent::RecordIncluded {
                production_id,
                record_id,
            } => (
                Fact::Ids(IdsOnly::Inclusion),
                self.inclusion(production_id, record_id),
            ),
            BorrowedEvent::MemberRegistered { member_id } => (
                Fact::Ids(IdsOnly::Registration),
                self.registration(member_id),
            ),
            BorrowedEvent::RecordComment => {
                (Fact::Ids(IdsOnly::RecordComment), EventIds::default())
            }
            BorrowedEvent::Owned(event) => {
                let ids = self.resolve(&event);
                (Fact::Event(event), ids)
            }
        }
    }

    /// Numbers `event`'s ids (the numbering rules: see the module's doc).
    fn resolve(&mut self, event: &DomainEvent) -> EventIds {
        use DomainEvent as E;
        let mut ids = EventIds::default();
        match event {
            E::MemberRegistered(e) => ids = self.registration(e.member_id.as_str()),
            E::RecordUploaded(e) => {
                ids = self.upload(
                    e.record_id.as_str(),
                    e.contributor.as_str(),
                    std::iter::empty(),
                )
            }
            E::RemixUploaded(e) => {
                ids = self.upload(
                    e.record_id.as_str(),
                    e.contributor.as_str(),
                    e.sources.iter().map(|source| source.as_str()),
                )
            }
            E::SourceCited(e) => ids = self.citation(e.record_id.as_str(), e.source_id.as_str()),
            E::RecordWithdrawn(e) => ids.record = self.records.get(e.record_id.as_str()),
            E::ProductionOpened(e) => {
                ids.production = Some(self.productions.intern(e.production_id.as_str()))
            }
            E::RecordIncluded(e) => {
                ids = self.inclusion(e.production_id.as_str(), e.record_id.as_str())
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
                if let ledger::domain::events::PayoutFor::Line { distribution_id } = &e.payout_for {
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
        self.names
            .read()
            .expect("the catalog's lock is never poisoned")
    }

    /// Numbers the ids of `events` (in order, one write lock for all of them) and sets
    /// each event's `ids` (an event that came as ids alone has them already).
    pub fn resolve(&self, events: &mut [AppliedEvent]) {
        let mut names = self
            .names
            .write()
            .expect("the catalog's lock is never poisoned");
        for applied in events {
            if let Fact::Event(event) = &applied.fact {
                applied.ids = names.resolve(event);
            }
            names.advance(applied.position, applied.hash);
        }
    }

    /// Decodes `views` in place and numbers their ids under one write lock, appending the
    /// events to `into`: the runner's path. The events models read only the ids of come as
    /// `Fact::Ids`, their ids borrowed from the batch, never copied into a `String`; the
    /// others decoded in full. Stops at the first event that does not decode (the ones
    /// before it are in `into`).
    pub fn decode_views<'b>(
        &self,
        views: impl Iterator<Item = EventView<'b>>,
        into: &mut Vec<AppliedEvent>,
    ) -> Result<(), (Position, EventDecodeError)> {
        // Decoded first, outside the lock, so that numbering can prefetch the index slots
        // of the events a few ahead of the one it numbers.
        let mut decoded = Vec::with_capacity(views.size_hint().0);
        let mut failure = None;
        for view in views {
            match DomainEvent::decode_borrowed(
                view.event_type(),
                view.schema_version(),
                view.payload(),
            ) {
                Ok(borrowed) => decoded.push((view, borrowed)),
                Err(error) => {
                    failure = Some((view.position(), error));
                    break;
                }
            }
        }
        // Each event's lookups in the large tables: `starts[i]..starts[i + 1]`.
        let mut lookups = Vec::with_capacity(decoded.len() * 3);
        let mut starts = Vec::with_capacity(decoded.len() + 1);
        for (_, borrowed) in &decoded {
            starts.push(lookups.len());
            Names::lookups(borrowed, &mut lookups);
        }
        starts.push(lookups.len());
        let of = |event: usize| &lookups[starts[event]..starts[event + 1]];
        let mut names = self
            .names
            .write()
            .expect("the catalog's lock is never poisoned");
        let stages = [
            (Stage::Slot, 3 * PREFETCH_STAGE_EVENTS),
            (Stage::Ends, 2 * PREFETCH_STAGE_EVENTS),
            (Stage::Bytes, PREFETCH_STAGE_EVENTS),
        ];
        // The first events' stages, in order, before numbering starts.
        for (stage, ahead) in stages {
            for event in 0..ahead.min(decoded.len()) {
                names.prefetch(stage, of(event));
            }
        }
        for index in 0..decoded.len() {
            for (stage, ahead) in stages {
                if index + ahead < decoded.len() {
                    names.prefetch(stage, of(index + ahead));
                }
            }
            let (view, borrowed) = &mut decoded[index];
            let view = *view;
            let borrowed = std::mem::replace(borrowed, BorrowedEvent::RecordComment);
            let (fact, ids) = names.resolve_borrowed(borrowed);
            names.advance(view.position(), view.hash());
            into.push(AppliedEvent {
                position: view.position(),
                recorded_at: view.recorded_at(),
                hash: view.hash(),
                fact,
                ids,
            });
        }
        failure.map_or(Ok(()), Err)
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
            .map(|(index, event)| {
                AppliedEvent::new(
                    index as Position + 1,
                    Timestamp::EPOCH,
                    Hash32([index as u8; 32]),
                    event,
                )
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
        assert_eq!(
            ids[2].sources,
            vec![0, 0],
            "itself and a later record are left out"
        );
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
        let mut again = applied(log());
        restored.resolve(&mut again);
        assert_eq!(again[1..], expected[1..]);
        // The first event cites records created later: a further catalog finds them, and
        // a model holding no record yet ignores numbers it does not have.
        assert_eq!(
            (again[0].ids.record, again[0].ids.source),
            (Some(1), Some(0))
        );
        assert_eq!(
            restored.resolved(),
            (5, Hash32([4; 32])),
            "never moves back"
        );
        assert!(Catalog::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
