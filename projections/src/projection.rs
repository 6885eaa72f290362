//! What every read model is: a name, a schema version, a pure `apply`, and a deterministic
//! stored form for snapshots.

use ledger::domain::DomainEvent;
use ledger::store::{EventView, Hash32, Position, RecordedEvent};
use ledger::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catalog::{Catalog, EventIds};

/// The events the models read nothing of but ids (`AppliedEvent::ids`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdsOnly {
    /// `RecordUploaded` or `RemixUploaded`.
    Upload,
    /// `SourceCited`.
    Citation,
    /// `RecordIncluded`.
    Inclusion,
    /// `MemberRegistered`.
    Registration,
    /// `CommentPosted` on a record.
    RecordComment,
}

/// What the models get of an event's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// Decoded in full. Boxed: an `AppliedEvent` is moved about by the thousand, and a
    /// `DomainEvent` inline would more than double its size for the few events read in full.
    Event(Box<DomainEvent>),
    /// Decoded in place for its ids alone (the runner's path, `Catalog::decode_views`):
    /// most of a log, and no `String` per id.
    Ids(IdsOnly),
}

/// One event as a projection sees it: decoded (upcast) once, with the envelope fields read
/// models use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    pub position: Position,
    pub recorded_at: Timestamp,
    /// The event's link in the hash chain: a snapshot names it, so it is only loaded on top
    /// of the very log it was taken from.
    pub hash: Hash32,
    pub fact: Fact,
    /// The event's ids as the catalog numbers them: set by `Catalog::resolve` (the runner
    /// does it once for every model), empty after `decode`.
    pub ids: EventIds,
}

impl AppliedEvent {
    pub fn decode(
        recorded: &RecordedEvent,
    ) -> Result<AppliedEvent, ledger::domain::events::EventDecodeError> {
        Ok(AppliedEvent {
            position: recorded.position,
            recorded_at: recorded.recorded_at,
            hash: recorded.hash,
            fact: Fact::Event(Box::new(DomainEvent::decode(
                recorded.event_type.as_str(),
                recorded.schema_version,
                &recorded.payload,
            )?)),
            ids: EventIds::default(),
        })
    }

    /// `decode` from an event of a `RecordBatch`, in place: the same fields, and the same
    /// upcasting (the domain's decode does it, from the type and schema version).
    pub fn decode_view(
        view: &EventView<'_>,
    ) -> Result<AppliedEvent, ledger::domain::events::EventDecodeError> {
        Ok(AppliedEvent {
            position: view.position(),
            recorded_at: view.recorded_at(),
            hash: view.hash(),
            fact: Fact::Event(Box::new(DomainEvent::decode(
                view.event_type(),
                view.schema_version(),
                view.payload(),
            )?)),
            ids: EventIds::default(),
        })
    }

    /// An event decoded in full, with its ids not resolved yet.
    pub fn new(
        position: Position,
        recorded_at: Timestamp,
        hash: Hash32,
        event: DomainEvent,
    ) -> AppliedEvent {
        AppliedEvent {
            position,
            recorded_at,
            hash,
            fact: Fact::Event(Box::new(event)),
            ids: EventIds::default(),
        }
    }

    /// The event decoded in full, unless it came as ids alone.
    pub fn event(&self) -> Option<&DomainEvent> {
        match &self.fact {
            Fact::Event(event) => Some(event.as_ref()),
            Fact::Ids(_) => None,
        }
    }

    /// Which of the events read for their ids alone this is, however it was decoded: a
    /// model handles these from `ids`, the rest from `event`.
    pub fn ids_only(&self) -> Option<IdsOnly> {
        use ledger::domain::events::CommentTarget;
        match &self.fact {
            Fact::Ids(kind) => Some(*kind),
            Fact::Event(event) => match &**event {
                DomainEvent::RecordUploaded(_) | DomainEvent::RemixUploaded(_) => {
                    Some(IdsOnly::Upload)
                }
                DomainEvent::SourceCited(_) => Some(IdsOnly::Citation),
                DomainEvent::RecordIncluded(_) => Some(IdsOnly::Inclusion),
                DomainEvent::MemberRegistered(_) => Some(IdsOnly::Registration),
                DomainEvent::CommentPosted(e) if matches!(e.target, CommentTarget::Record(_)) => {
                    Some(IdsOnly::RecordComment)
                }
                _ => None,
            },
        }
    }
}

/// A read model. `apply` is pure and infallible: events are facts the decider checked, so
/// an event a model cannot place (e.g. about an unknown record) is ignored, never an error.
///
/// A model keeps ids as the numbers of the catalog it was made with (`crate::catalog`),
/// reads them from `AppliedEvent::ids`, and names them through that catalog in queries.
///
/// `encode` must be deterministic (no hash-map iteration order): two instances that applied
/// the same events encode to the same bytes, which is what the tests compare.
pub trait Projection: Sized + Send + Sync + 'static {
    /// Names the projection in snapshots, on the command line and in logs.
    const NAME: &'static str;
    /// Bumped whenever the stored form or the meaning of the model changes: snapshots of
    /// another version are ignored and the model is rebuilt from the log.
    const SCHEMA_VERSION: u32;

    /// An empty model numbering ids by `catalog`.
    fn new(catalog: Catalog) -> Self;

    /// Applies an event whose ids `catalog` resolved (the catalog this model was made with).
    fn apply(&mut self, event: &AppliedEvent);

    /// The snapshot content: catalog numbers, not strings.
    fn encode(&self) -> Vec<u8>;

    /// A model from its snapshot content, onto a catalog at or past the snapshot's position
    /// (every number it holds must be in the catalog).
    fn decode(bytes: &[u8], catalog: Catalog) -> Result<Self, String>;
}

pub(crate) fn encode_serde<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("read models encode into a Vec")
}

pub(crate) fn decode_serde<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|error| error.to_string())?;
    if read != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - read));
    }
    Ok(value)
}

/// A caller's bounds on a walk through the family tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLimits {
    /// Levels to walk (1 = direct sources or remixes only).
    pub depth_max: u32,
    /// Records to return.
    pub nodes_max: usize,
}

impl WalkLimits {
    /// The most records any one walk returns, whatever the caller asks.
    pub const NODES_MAX: usize = 100_000;
    /// The deepest any one walk goes, whatever the caller asks.
    pub const DEPTH_MAX: u32 = 10_000;

    pub fn new(depth_max: u32, nodes_max: usize) -> WalkLimits {
        WalkLimits {
            depth_max: depth_max.min(WalkLimits::DEPTH_MAX),
            nodes_max: nodes_max.min(WalkLimits::NODES_MAX),
        }
    }
}
