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

/// An event read for the ids it names, borrowed from its payload: no allocation per id.
/// For readers that only look ids up (the read models' id catalog), on the events they
/// read nothing else of; every other event, and an older schema version (upcast first),
/// comes decoded in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BorrowedEvent<'a> {
    RecordUploaded {
        record_id: &'a str,
        contributor: &'a str,
    },
    RemixUploaded {
        record_id: &'a str,
        contributor: &'a str,
        sources: Vec<&'a str>,
    },
    SourceCited {
        record_id: &'a str,
        source_id: &'a str,
    },
    RecordIncluded {
        production_id: &'a str,
        record_id: &'a str,
    },
    MemberRegistered {
        member_id: &'a str,
    },
    /// A comment on a record (a comment on a distribution comes `Owned`).
    RecordComment,
    /// Boxed: a `DomainEvent` is several times the size of the other variants, and readers
    /// move these events about by the thousand.
    Owned(Box<DomainEvent>),
}

/// The current layouts of the events `decode_borrowed` borrows from, field for field as
/// the owned structs store them (bincode is positional, and its own derive writes what its
/// serde path writes for these types: lengths and enum tags as varints, arrays bare), read
/// by bincode's `BorrowDecode` rather than through serde. Every field is decoded, so a
/// payload is checked whole; only the ids are kept. `tests` checks both decoders agree.
#[allow(dead_code)]
mod borrowed {
    use bincode::BorrowDecode;

    use crate::domain::ids::BorrowedId;

    /// `RecordKind`'s tag (checked: one of its five variants).
    #[derive(BorrowDecode)]
    pub(super) enum RecordKind {
        Text,
        Image,
        Audio,
        Video,
        Other,
    }

    #[derive(BorrowDecode)]
    pub(super) struct MediaRef {
        pub blake3: [u8; 32],
        pub size_bytes: u64,
    }

    #[derive(BorrowDecode)]
    pub(super) struct Licence<'a> {
        pub terms_version: &'a str,
    }

    #[derive(BorrowDecode)]
    pub(super) struct RecordUploaded<'a> {
        pub record_id: BorrowedId<'a>,
        pub project_id: BorrowedId<'a>,
        pub contributor: BorrowedId<'a>,
        pub kind: RecordKind,
        pub title: &'a str,
        pub media: MediaRef,
        pub licence: Licence<'a>,
    }

    #[derive(BorrowDecode)]
    pub(super) struct RemixUploaded<'a> {
        pub record_id: BorrowedId<'a>,
        pub project_id: BorrowedId<'a>,
        pub contributor: BorrowedId<'a>,
        pub kind: RecordKind,
        pub title: &'a str,
        pub media: MediaRef,
        pub licence: Licence<'a>,
        pub sources: Vec<BorrowedId<'a>>,
    }

    #[derive(BorrowDecode)]
    pub(super) struct SourceCited<'a> {
        pub record_id: BorrowedId<'a>,
        pub source_id: BorrowedId<'a>,
    }

    #[derive(BorrowDecode)]
    pub(super) struct RecordIncluded<'a> {
        pub production_id: BorrowedId<'a>,
        pub record_id: BorrowedId<'a>,
    }

    #[derive(BorrowDecode)]
    pub(super) struct SealedPersonalData<'a> {
        pub nonce: [u8; 12],
        pub ciphertext: &'a [u8],
    }

    #[derive(BorrowDecode)]
    pub(super) struct MemberRegistered<'a> {
        pub member_id: BorrowedId<'a>,
        pub handle: &'a str,
        pub personal_data: SealedPersonalData<'a>,
    }

    #[derive(BorrowDecode)]
    pub(super) enum CommentTarget<'a> {
        Record(BorrowedId<'a>),
        Distribution(BorrowedId<'a>),
        Line {
            distribution_id: BorrowedId<'a>,
            member: BorrowedId<'a>,
        },
    }

    #[derive(BorrowDecode)]
    pub(super) struct CommentPosted<'a> {
        pub comment_id: BorrowedId<'a>,
        pub author: BorrowedId<'a>,
        pub staff: bool,
        pub target: CommentTarget<'a>,
        pub reply_to: Option<BorrowedId<'a>>,
        pub body: &'a str,
    }
}

/// Decodes a payload in place; on failure, the owned decoder words the error (it is the
/// reference, as for the store's envelopes).
fn decode_borrowed_payload<'a, T: bincode::BorrowDecode<'a, ()>>(
    event_type: &str,
    schema_version: u16,
    bytes: &'a [u8],
) -> Result<T, EventDecodeError> {
    match bincode::borrow_decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, read)) if read == bytes.len() => Ok(value),
        _ => Err(DomainEvent::decode(event_type, schema_version, bytes)
            .err()
            .unwrap_or_else(|| EventDecodeError::Payload {
                event_type: event_type.to_string(),
                reason: "decodes in full but not in place".to_string(),
            })),
    }
}

impl DomainEvent {
    /// `decode`, borrowing the ids of the events `BorrowedEvent` names from `payload`
    /// instead of copying each into a `String`; every other event decoded in full. A
    /// payload that `decode` refuses, this refuses too.
    pub fn decode_borrowed<'a>(
        event_type: &str,
        schema_version: u16,
        payload: &'a [u8],
    ) -> Result<BorrowedEvent<'a>, EventDecodeError> {
        if DomainEvent::current_schema_version(event_type) != Some(schema_version) {
            return DomainEvent::decode(event_type, schema_version, payload)
                .map(|event| BorrowedEvent::Owned(Box::new(event)));
        }
        Ok(match event_type {
            "RecordUploaded" => {
                let e: borrowed::RecordUploaded =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                BorrowedEvent::RecordUploaded {
                    record_id: e.record_id.0,
                    contributor: e.contributor.0,
                }
            }
            "RemixUploaded" => {
                let e: borrowed::RemixUploaded =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                BorrowedEvent::RemixUploaded {
                    record_id: e.record_id.0,
                    contributor: e.contributor.0,
                    sources: e.sources.into_iter().map(|source| source.0).collect(),
                }
            }
            "SourceCited" => {
                let e: borrowed::SourceCited =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                BorrowedEvent::SourceCited {
                    record_id: e.record_id.0,
                    source_id: e.source_id.0,
                }
            }
            "RecordIncluded" => {
                let e: borrowed::RecordIncluded =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                BorrowedEvent::RecordIncluded {
                    production_id: e.production_id.0,
                    record_id: e.record_id.0,
                }
            }
            "MemberRegistered" => {
                let e: borrowed::MemberRegistered =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                BorrowedEvent::MemberRegistered {
                    member_id: e.member_id.0,
                }
            }
            "CommentPosted" => {
                let e: borrowed::CommentPosted =
                    decode_borrowed_payload(event_type, schema_version, payload)?;
                match e.target {
                    borrowed::CommentTarget::Record(_) => BorrowedEvent::RecordComment,
                    _ => BorrowedEvent::Owned(Box::new(DomainEvent::decode_current(
                        event_type, payload,
                    )?)),
                }
            }
            _ => BorrowedEvent::Owned(Box::new(DomainEvent::decode_current(event_type, payload)?)),
        })
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

#[cfg(test)]
mod borrowed_decode_tests {
    use super::*;
    use crate::domain::upcast::RecordUploadedV1;

    fn licence() -> Licence {
        Licence {
            terms_version: "2026-01".into(),
        }
    }

    fn media() -> MediaRef {
        MediaRef {
            blake3: [3; 32],
            size_bytes: 9,
        }
    }

    fn id<T>(make: fn(String) -> Result<T, crate::store::InvalidInput>, text: &str) -> T {
        make(text.to_string()).unwrap()
    }

    /// Every event `decode_borrowed` borrows from, and some it decodes in full.
    fn events() -> Vec<DomainEvent> {
        let record = |text: &str| id(RecordId::new, text);
        let member = |text: &str| id(MemberId::new, text);
        vec![
            RecordUploaded {
                record_id: record("r1"),
                project_id: id(ProjectId::new, "p1"),
                contributor: member("m1"),
                kind: RecordKind::Audio,
                title: "a title".into(),
                media: media(),
                licence: licence(),
            }
            .into(),
            RemixUploaded {
                record_id: record("r2"),
                project_id: id(ProjectId::new, "p1"),
                contributor: member("m2"),
                kind: RecordKind::Video,
                title: "".into(),
                media: media(),
                licence: licence(),
                sources: vec![record("r1"), record("r0"), record("r1")],
            }
            .into(),
            SourceCited {
                record_id: record("r2"),
                source_id: record("r0"),
            }
            .into(),
            RecordIncluded {
                production_id: id(ProductionId::new, "pr1"),
                record_id: record("r2"),
            }
            .into(),
            MemberRegistered {
                member_id: member("m3"),
                handle: "@m3".into(),
                personal_data: SealedPersonalData {
                    nonce: [1; 12],
                    ciphertext: vec![9; 80],
                },
            }
            .into(),
            CommentPosted {
                comment_id: id(CommentId::new, "k1"),
                author: member("m1"),
                staff: false,
                target: CommentTarget::Record(record("r1")),
                reply_to: Some(id(CommentId::new, "k0")),
                body: "nice".into(),
            }
            .into(),
            CommentPosted {
                comment_id: id(CommentId::new, "k2"),
                author: member("m1"),
                staff: true,
                target: CommentTarget::Line {
                    distribution_id: id(DistributionId::new, "d1"),
                    member: member("m2"),
                },
                reply_to: None,
                body: "because".into(),
            }
            .into(),
            RecordWithdrawn {
                record_id: record("r1"),
                reason: "asked".into(),
            }
            .into(),
        ]
    }

    /// What `decode_borrowed` must give for an event `decode` gives in full.
    fn expected(event: &DomainEvent) -> BorrowedEvent<'_> {
        match event {
            DomainEvent::RecordUploaded(e) => BorrowedEvent::RecordUploaded {
                record_id: e.record_id.as_str(),
                contributor: e.contributor.as_str(),
            },
            DomainEvent::RemixUploaded(e) => BorrowedEvent::RemixUploaded {
                record_id: e.record_id.as_str(),
                contributor: e.contributor.as_str(),
                sources: e.sources.iter().map(RecordId::as_str).collect(),
            },
            DomainEvent::SourceCited(e) => BorrowedEvent::SourceCited {
                record_id: e.record_id.as_str(),
                source_id: e.source_id.as_str(),
            },
            DomainEvent::RecordIncluded(e) => BorrowedEvent::RecordIncluded {
                production_id: e.production_id.as_str(),
                record_id: e.record_id.as_str(),
            },
            DomainEvent::MemberRegistered(e) => BorrowedEvent::MemberRegistered {
                member_id: e.member_id.as_str(),
            },
            DomainEvent::CommentPosted(CommentPosted {
                target: CommentTarget::Record(_),
                ..
            }) => BorrowedEvent::RecordComment,
            other => BorrowedEvent::Owned(Box::new(other.clone())),
        }
    }

    #[test]
    fn borrows_the_ids_decode_copies_and_refuses_what_decode_refuses() {
        for event in events() {
            let stored = event.to_proposed();
            let (event_type, version) = (stored.event_type.as_str(), stored.schema_version);
            let owned = DomainEvent::decode(event_type, version, &stored.payload).unwrap();
            assert_eq!(owned, event);
            let borrowed =
                DomainEvent::decode_borrowed(event_type, version, &stored.payload).unwrap();
            assert_eq!(borrowed, expected(&event), "{event_type}");

            let mut longer = stored.payload.clone();
            longer.push(0);
            let shorter = &stored.payload[..stored.payload.len() - 1];
            for payload in [&longer[..], shorter] {
                assert!(DomainEvent::decode(event_type, version, payload).is_err());
                assert!(
                    DomainEvent::decode_borrowed(event_type, version, payload).is_err(),
                    "{event_type}"
                );
            }
        }
        // An id that breaks the id rule, in a borrowed field: refused by both.
        let cited = DomainEvent::from(SourceCited {
            record_id: id(RecordId::new, "r2"),
            source_id: id(RecordId::new, "r0"),
        })
        .to_proposed();
        let mut payload = cited.payload.clone();
        let at = payload.iter().position(|b| *b == b'0').unwrap();
        payload[at] = b'!';
        let error = DomainEvent::decode_borrowed("SourceCited", 1, &payload).unwrap_err();
        assert_eq!(
            error,
            DomainEvent::decode("SourceCited", 1, &payload).unwrap_err()
        );
    }

    #[test]
    fn an_older_schema_version_is_upcast_and_decoded_in_full() {
        let payload = encode_payload(&RecordUploadedV1 {
            record_id: id(RecordId::new, "r9"),
            project_id: id(ProjectId::new, "p1"),
            contributor: id(MemberId::new, "m9"),
            kind: RecordKind::Text,
            title: "old".into(),
            media: media(),
        });
        let borrowed = DomainEvent::decode_borrowed("RecordUploaded", 1, &payload).unwrap();
        assert_eq!(
            borrowed,
            BorrowedEvent::Owned(Box::new(
                DomainEvent::decode("RecordUploaded", 1, &payload).unwrap()
            ))
        );
    }
}
