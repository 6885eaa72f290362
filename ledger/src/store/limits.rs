//! Every bound the store enforces, named with its unit. Inputs over a bound are refused
//! with an error naming the field and the bound; nothing is written.

/// Stream ids: `<category>-<id>` with a 64-byte id and room for the category.
pub const STREAM_ID_LENGTH_BYTES_MAX: usize = 128;
/// Command, correlation and causation ids, service names, member ids.
pub const OPAQUE_ID_LENGTH_BYTES_MAX: usize = 64;
/// Event type names.
pub const EVENT_TYPE_LENGTH_BYTES_MAX: usize = 64;
/// One event's payload. Large enough for a chunk of an allocation proposal; the domain
/// splits anything larger over several events.
pub const EVENT_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Events in one append (one command).
pub const APPEND_EVENTS_MAX: usize = 10_000;
/// Expectations in one append.
pub const APPEND_EXPECTATIONS_MAX: usize = 1_024;
/// The encoded size of one append: every event with its envelope.
pub const APPEND_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Events returned by one read call.
pub const READ_EVENTS_MAX: usize = 65_536;
/// Bytes of records one batch read (`EventStore::read_all_batch`) gathers before it stops;
/// it always holds at least one event when there is one, so it may pass this by one record.
pub const READ_BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;
