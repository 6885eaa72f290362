//! Checks on an append request that need no state: counts, sizes, duplicates.

use std::collections::HashSet;

use super::error::{InvalidInput, StoreError};
use super::limits;
use super::types::AppendRequest;

/// Refuses a malformed request before it reaches a writer, naming the field and the rule.
pub fn validate_append(request: &AppendRequest) -> Result<(), StoreError> {
    if request.events.is_empty() {
        return Err(InvalidInput::new("events", "an append needs at least one event").into());
    }
    if request.events.len() > limits::APPEND_EVENTS_MAX {
        return Err(InvalidInput::new(
            "events",
            format!(
                "at most {} events per append, got {}",
                limits::APPEND_EVENTS_MAX,
                request.events.len()
            ),
        )
        .into());
    }
    if request.expectations.len() > limits::APPEND_EXPECTATIONS_MAX {
        return Err(InvalidInput::new(
            "expectations",
            format!(
                "at most {} expectations per append, got {}",
                limits::APPEND_EXPECTATIONS_MAX,
                request.expectations.len()
            ),
        )
        .into());
    }
    let mut seen = HashSet::with_capacity(request.expectations.len());
    for expectation in &request.expectations {
        if !seen.insert(&expectation.stream_id) {
            return Err(InvalidInput::new(
                "expectations",
                format!(
                    "stream {} has more than one expectation",
                    expectation.stream_id
                ),
            )
            .into());
        }
    }
    let mut total_bytes = 0usize;
    for (index, event) in request.events.iter().enumerate() {
        if event.schema_version == 0 {
            return Err(InvalidInput::new(
                format!("events[{index}].schema_version"),
                "schema versions start at 1",
            )
            .into());
        }
        if event.payload.len() > limits::EVENT_PAYLOAD_BYTES_MAX {
            return Err(StoreError::TooLarge {
                field: "events[].payload",
                size_bytes: event.payload.len(),
                limit_bytes: limits::EVENT_PAYLOAD_BYTES_MAX,
            });
        }
        total_bytes += event.payload.len() + ENVELOPE_BYTES_MAX;
    }
    if total_bytes > limits::APPEND_BYTES_MAX {
        return Err(StoreError::TooLarge {
            field: "events",
            size_bytes: total_bytes,
            limit_bytes: limits::APPEND_BYTES_MAX,
        });
    }
    Ok(())
}

/// An upper bound on one event's envelope (everything but the payload) once framed:
/// every bounded string at its maximum, varints at their widest, the frame header.
pub const ENVELOPE_BYTES_MAX: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::*;

    fn request(events: usize, payload_bytes: usize) -> AppendRequest {
        AppendRequest {
            command_id: CommandId::new("c").unwrap(),
            command_fingerprint: None,
            correlation_id: None,
            causation_id: None,
            actor: Actor {
                service: ServiceName::new("test").unwrap(),
                on_behalf_of: None,
            },
            expectations: vec![],
            events: (0..events)
                .map(|_| ProposedEvent {
                    stream_id: StreamId::new("s-1").unwrap(),
                    event_type: EventType::new("E").unwrap(),
                    schema_version: 1,
                    payload: vec![0; payload_bytes],
                })
                .collect(),
        }
    }

    #[test]
    fn refuses_what_breaks_a_limit() {
        assert!(validate_append(&request(1, 10)).is_ok());
        let error = validate_append(&request(0, 10)).unwrap_err();
        assert!(error
            .to_string()
            .contains("events: an append needs at least one event"));
        let error = validate_append(&request(1, limits::EVENT_PAYLOAD_BYTES_MAX + 1)).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::TooLarge {
                    field: "events[].payload",
                    ..
                }
            ),
            "{error}"
        );
        let error = validate_append(&request(limits::APPEND_EVENTS_MAX + 1, 1)).unwrap_err();
        assert!(
            error.to_string().contains("at most 10000 events"),
            "{error}"
        );
        let error = validate_append(&request(40, limits::EVENT_PAYLOAD_BYTES_MAX)).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::TooLarge {
                    field: "events",
                    ..
                }
            ),
            "{error}"
        );
        let mut duplicate = request(1, 1);
        let expectation = StreamExpectation {
            stream_id: StreamId::new("s-1").unwrap(),
            expected: ExpectedVersion::Any,
        };
        duplicate.expectations = vec![expectation.clone(), expectation];
        assert!(validate_append(&duplicate)
            .unwrap_err()
            .to_string()
            .contains("more than one expectation"));
        let mut zero = request(1, 1);
        zero.events[0].schema_version = 0;
        assert!(validate_append(&zero)
            .unwrap_err()
            .to_string()
            .contains("events[0].schema_version"));
    }
}
