//! Every fact the ledger records, its stream, and its stored encoding.
//!
//! An event is stored as (event type name, schema version, bincode payload of its struct).
//! Older schema versions are turned into the current one by `upcast` before decoding.
//!
//! Streams: `member-<id>`, `project-<id>`, `record-<id>`, `production-<id>`,
//! `distribution-<id>`, `payout-<id>`. A comment goes to the stream of what it is about
//! (a record or a distribution; a reply to its parent's); a lead fee to its project.
//! `PayoutIssued` goes to the stream of what it pays (the distribution, or the project for
//! a lead fee), so issuing all of a distribution's payouts is one append to one stream
//! with one expected version, however many lines; each payout's later attempts
//! (`PayoutRetried`, `PayoutSettled`, `PayoutFailed`) go to `payout-<id>`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::*;
use crate::money::{ArtistShare, Currency, Money, Weight};
use crate::store::{EventType, ProposedEvent, StreamId};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordKind {
    Text,
    Image,
    Audio,
    Video,
    Other,
}

/// The media of a record, which lives outside the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub blake3: [u8; 32],
    pub size_bytes: u64,
}

/// The non-exclusive licence the contributor granted the company, under a named version of
/// the terms. The contributor keeps every other right.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub terms_version: String,
}

/// Personal data sealed with the member's key (ChaCha20-Poly1305, see `privacy`). Without
/// the key it is noise; erasure destroys the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPersonalData {
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRegistered {
    pub member_id: MemberId,
    /// The public name the member chose; not personal data in the sense of `Privacy`.
    pub handle: String,
    pub personal_data: SealedPersonalData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPersonalDataErased {
    pub member_id: MemberId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectStarted {
    pub project_id: ProjectId,
    pub title: String,
}

/// A lead's fee on a project with a production: an expense of that production, paid by a
/// payout of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFeeAgreed {
    pub project_id: ProjectId,
    pub production_id: ProductionId,
    pub lead: MemberId,
    pub fee: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadAssigned {
    pub project_id: ProjectId,
    pub lead: MemberId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectFinished {
    pub project_id: ProjectId,
}

/// Schema version 2: version 1 had no `licence` (see `upcast`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUploaded {
    pub record_id: RecordId,
    pub project_id: ProjectId,
    pub contributor: MemberId,
    pub kind: RecordKind,
    pub title: String,
    pub media: MediaRef,
    pub licence: Licence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemixUploaded {
    pub record_id: RecordId,
    pub project_id: ProjectId,
    pub contributor: MemberId,
    pub kind: RecordKind,
    pub title: String,
    pub media: MediaRef,
    pub licence: Licence,
    /// At least one, each existing and not withdrawn when the remix was uploaded.
    pub sources: Vec<RecordId>,
}

/// A citation added later ("you forgot to source me"): `record_id` was built on `source_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCited {
    pub record_id: RecordId,
    pub source_id: RecordId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWithdrawn {
    pub record_id: RecordId,
    pub reason: String,
}

/// What a comment is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommentTarget {
    Record(RecordId),
    Distribution(DistributionId),
    /// One line of a distribution's proposal: the line of `member`.
    Line {
        distribution_id: DistributionId,
        member: MemberId,
    },
}

impl CommentTarget {
    pub fn distribution(&self) -> Option<&DistributionId> {
        match self {
            CommentTarget::Record(_) => None,
            CommentTarget::Distribution(id)
            | CommentTarget::Line {
                distribution_id: id,
                ..
            } => Some(id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentPosted {
    pub comment_id: CommentId,
    pub author: MemberId,
    /// A reply by the community team; answers the member comment it replies to.
    pub staff: bool,
    pub target: CommentTarget,
    pub reply_to: Option<CommentId>,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductionOpened {
    pub production_id: ProductionId,
    pub project_id: ProjectId,
    pub title: String,
    pub currency: Currency,
    pub artist_share: ArtistShare,
    pub feedback_window_micros: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordIncluded {
    pub production_id: ProductionId,
    pub record_id: RecordId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRecorded {
    pub production_id: ProductionId,
    pub amount: Money,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpenseRecorded {
    pub production_id: ProductionId,
    pub amount: Money,
    pub description: String,
}

/// One line of a proposal: what a member is paid for, and how much weight it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub member: MemberId,
    pub weight: Weight,
    pub rationale: String,
    pub records: Vec<RecordId>,
}

/// The first proposal of a distribution, which creates it. Its pool is computed at this
/// moment (the cut-off) and recorded with what it was computed from. A proposal with more
/// lines than fit one event continues in `AllocationLinesContinued` events of the same
/// append; `line_count` says how many lines there are in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationProposed {
    pub distribution_id: DistributionId,
    pub production_id: ProductionId,
    pub revenue_total: Money,
    pub expense_total: Money,
    pub earlier_pools: Money,
    pub pool: Money,
    pub published_at: Timestamp,
    pub window_closes_at: Timestamp,
    pub line_count: u32,
    pub lines: Vec<Line>,
}

/// More lines of the proposal or amendment just before it in the same append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationLinesContinued {
    pub distribution_id: DistributionId,
    pub lines: Vec<Line>,
}

/// A change during the window: lines removed, then lines added or replaced (a member's
/// replaced line keeps its place), and why — often which comments it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAmended {
    pub distribution_id: DistributionId,
    pub reason: String,
    pub answers: Vec<CommentId>,
    pub removed: Vec<MemberId>,
    /// Lines added or replaced, in all (this event and its continuations).
    pub line_count: u32,
    pub lines: Vec<Line>,
}

/// The final amounts, one per line in line order, summing to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationFinalized {
    pub distribution_id: DistributionId,
    pub pool: Money,
    pub amounts: Vec<Money>,
}

/// What a payout pays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutFor {
    Line { distribution_id: DistributionId },
    LeadFee { project_id: ProjectId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutIssued {
    pub payout_id: PayoutId,
    pub member: MemberId,
    pub amount: Money,
    pub payout_for: PayoutFor,
}

/// Finance tries a failed payout again: a new attempt, which will settle or fail once.
/// Its own event (not a second `PayoutIssued`) so a payout is issued exactly once and
/// each attempt is numbered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRetried {
    pub payout_id: PayoutId,
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSettled {
    pub payout_id: PayoutId,
    pub attempt: u32,
    /// The payment system's reference.
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutFailed {
    pub payout_id: PayoutId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("{event_type} schema version {version} is newer than this code ({current})")]
    FutureVersion {
        event_type: String,
        version: u16,
        current: u16,
    },
    #[error("{event_type} schema version {version} has no upcaster")]
    NoUpcaster { event_type: String, version: u16 },
    #[error("{event_type} payload does not decode: {reason}")]
    Payload { event_type: String, reason: String },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

pub(crate) fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).expect("domain events encode into a Vec")
}

pub(crate) fn decode_payload<T: serde::de::DeserializeOwned>(
    event_type: &str,
    bytes: &[u8],
) -> Result<T, EventDecodeError> {
    let payload_error = |reason: String| EventDecodeError::Payload {
        event_type: event_type.to_string(),
        reason,
    };
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|error| payload_error(error.to_string()))?;
    if read != bytes.len() {
        return Err(payload_error(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(value)
}

macro_rules! domain_events {
    ($($variant:ident = $version:literal),* $(,)?) => {
        /// Every event of the domain. Serializes (for JSON export and the API) as
        /// `{"<EventType>": {…fields…}}`.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
        pub enum DomainEvent {
            $($variant($variant),)*
        }

        impl DomainEvent {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(DomainEvent::$variant(_) => stringify!($variant),)*
                }
            }

            pub fn schema_version(&self) -> u16 {
                match self {
                    $(DomainEvent::$variant(_) => $version,)*
                }
            }

            /// The schema version this code writes for `event_type`.
            pub fn current_schema_version(event_type: &str) -> Option<u16> {
                match event_type {
                    $(stringify!($variant) => Some($version),)*
                    _ => None,
                }
            }

            fn payload(&self) -> Vec<u8> {
                match self {
                    $(DomainEvent::$variant(event) => encode_payload(event),)*
                }
            }

            /// Decodes a payload already at the current schema version.
            fn decode_current(event_type: &str, payload: &[u8]) -> Result<DomainEvent, EventDecodeError> {
                match event_type {
                    $(stringify!($variant) => Ok(DomainEvent::$variant(decode_payload(event_type, payload)?)),)*
                    other => Err(EventDecodeError::UnknownType(other.to_string())),
                }
            }
        }

        $(impl From<$variant> for DomainEvent {
            fn from(event: $variant) -> DomainEvent {
                DomainEvent::$variant(event)
            }
        })*
    };
}

domain_events! {
    MemberRegistered = 1,
    MemberPersonalDataErased = 1,
    ProjectStarted = 1,
    LeadFeeAgreed = 1,
    LeadAssigned = 1,
    ProjectFinished = 1,
    RecordUploaded = 2,
    RemixUploaded = 1,
    SourceCited = 1,
    RecordWithdrawn = 1,
    CommentPosted = 1,
    ProductionOpened = 1,
    RecordIncluded = 1,
    RevenueRecorded = 1,
    ExpenseRecorded = 1,
    AllocationProposed = 1,
    AllocationLinesContinued = 1,
    AllocationAmended = 1,
    AllocationFinalized = 1,
    PayoutIssued = 1,
    PayoutRetried = 1,
    PayoutSettled = 1,
    PayoutFailed = 1,
}

impl DomainEvent {
    /// The stream the event belongs to.
    pub fn stream(&self) -> StreamRef {
        use DomainEvent::*;
        match self {
            MemberRegistered(e) => StreamRef::Member(e.member_id.clone()),
            MemberPersonalDataErased(e) => StreamRef::Member(e.member_id.clone()),
            ProjectStarted(e) => StreamRef::Project(e.project_id.clone()),
            LeadFeeAgreed(e) => StreamRef::Project(e.project_id.clone()),
            LeadAssigned(e) => StreamRef::Project(e.project_id.clone()),
            ProjectFinished(e) => StreamRef::Project(e.project_id.clone()),
            RecordUploaded(e) => StreamRef::Record(e.record_id.clone()),
            RemixUploaded(e) => StreamRef::Record(e.record_id.clone()),
            SourceCited(e) => StreamRef::Record(e.record_id.clone()),
            RecordWithdrawn(e) => StreamRef::Record(e.record_id.clone()),
            CommentPosted(e) => match &e.target {
                CommentTarget::Record(id) => StreamRef::Record(id.clone()),
                CommentTarget::Distribution(id)
                | CommentTarget::Line {
                    distribution_id: id,
                    ..
                } => StreamRef::Distribution(id.clone()),
            },
            ProductionOpened(e) => StreamRef::Production(e.production_id.clone()),
            RecordIncluded(e) => StreamRef::Production(e.production_id.clone()),
            RevenueRecorded(e) => StreamRef::Production(e.production_id.clone()),
            ExpenseRecorded(e) => StreamRef::Production(e.production_id.clone()),
            AllocationProposed(e) => StreamRef::Distribution(e.distribution_id.clone()),
            AllocationLinesContinued(e) => StreamRef::Distribution(e.distribution_id.clone()),
            AllocationAmended(e) => StreamRef::Distribution(e.distribution_id.clone()),
            AllocationFinalized(e) => StreamRef::Distribution(e.distribution_id.clone()),
            PayoutIssued(e) => match &e.payout_for {
                PayoutFor::Line { distribution_id } => {
                    StreamRef::Distribution(distribution_id.clone())
                }
                PayoutFor::LeadFee { project_id } => StreamRef::Project(project_id.clone()),
            },
            PayoutRetried(e) => StreamRef::Payout(e.payout_id.clone()),
            PayoutSettled(e) => StreamRef::Payout(e.payout_id.clone()),
            PayoutFailed(e) => StreamRef::Payout(e.payout_id.clone()),
        }
    }

    /// The event as the store keeps it.
    pub fn to_proposed(&self) -> ProposedEvent {
        ProposedEvent {
            stream_id: self.stream().stream_id(),
            event_type: EventType::new(self.event_type()).expect("event type names are valid"),
            schema_version: self.schema_version(),
            payload: self.payload(),
        }
    }

    /// Decodes a stored event of any known schema version, upcasting older ones first.
    pub fn decode(
        event_type: &str,
        schema_version: u16,
        payload: &[u8],
    ) -> Result<DomainEvent, EventDecodeError> {
        let current = DomainEvent::current_schema_version(event_type)
            .ok_or_else(|| EventDecodeError::UnknownType(event_type.to_string()))?;
        if schema_version == current {
            return DomainEvent::decode_current(event_type, payload);
        }
        if schema_version > current {
            return Err(EventDecodeError::FutureVersion {
                event_type: event_type.to_string(),
                version: schema_version,
                current,
            });
        }
        let upcast =
            super::upcast::upcast_to_current(event_type, schema_version, current, payload)?;
        DomainEvent::decode_current(event_type, &upcast)
    }
}

/// A stream of the domain, typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StreamRef {
    Member(MemberId),
    Project(ProjectId),
    Record(RecordId),
    Production(ProductionId),
    Distribution(DistributionId),
    Payout(PayoutId),
}

impl StreamRef {
    pub fn stream_id(&self) -> StreamId {
        match self {
            StreamRef::Member(id) => id.stream_id(),
            StreamRef::Project(id) => id.stream_id(),
            StreamRef::Record(id) => id.stream_id(),
            StreamRef::Production(id) => id.stream_id(),
            StreamRef::Distribution(id) => id.stream_id(),
            StreamRef::Payout(id) => id.stream_id(),
        }
    }
}
