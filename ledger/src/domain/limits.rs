//! Every bound on a command's input, named with its unit. A command over a bound is refused
//! with `Rejection::TooLong` / `Rejection::TooMany`, naming the field and the bound.

/// A member's public handle.
pub const HANDLE_LENGTH_BYTES_MAX: usize = 64;
/// Titles of projects and records.
pub const TITLE_LENGTH_BYTES_MAX: usize = 200;
/// A comment's body.
pub const COMMENT_LENGTH_BYTES_MAX: usize = 4_000;
/// A line's rationale.
pub const RATIONALE_LENGTH_BYTES_MAX: usize = 1_000;
/// Why an amendment was made; why a record was withdrawn; why a payout failed; what a
/// revenue or expense entry is.
pub const REASON_LENGTH_BYTES_MAX: usize = 1_000;
/// The licence terms version a record was granted under.
pub const TERMS_VERSION_LENGTH_BYTES_MAX: usize = 32;
/// Sources named by one remix.
pub const SOURCES_PER_REMIX_MAX: usize = 64;
/// Lines of one proposal (also the most lines one amendment may change).
pub const LINES_PER_PROPOSAL_MAX: usize = 10_000;
/// Records one line pays for.
pub const RECORDS_PER_LINE_MAX: usize = 16;
/// Comments one amendment says it answers.
pub const ANSWERED_COMMENTS_PER_AMENDMENT_MAX: usize = 64;
/// Sealed personal data (ciphertext and tag).
pub const SEALED_PERSONAL_DATA_BYTES_MAX: usize = 4_096;
/// Largest feedback window a production may set: one year.
pub const FEEDBACK_WINDOW_MICROS_MAX: i64 = 366 * 24 * 3_600 * 1_000_000;
/// The default feedback window: fourteen days.
pub const FEEDBACK_WINDOW_MICROS_DEFAULT: i64 = 14 * 24 * 3_600 * 1_000_000;
/// Encoded proposal lines per event, so that one event stays under the store's payload
/// bound (`store::limits::EVENT_PAYLOAD_BYTES_MAX`) whatever the lines hold: a line is at
/// most ~2.2 KB (member id, weight, rationale, 16 record ids).
pub const LINES_PER_EVENT_MAX: usize = 400;
