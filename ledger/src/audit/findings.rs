//! What `verify` reports: one `Finding` per thing found wrong, located by position.

use std::fmt;

use serde::Serialize;

use crate::store::Position;

/// Which check a finding comes from. Serialized in snake case; the names are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A segment header is unreadable, or names the wrong first position or previous hash.
    SegmentHeader,
    /// Bytes that are not a valid frame (bad magic, length or checksum) before later data.
    Frame,
    /// A group commit with fewer frames than its range names, followed by later data.
    IncompleteCommit,
    /// A frame whose envelope does not decode.
    Envelope,
    /// Positions are not gap-free from 1.
    Position,
    /// An event's position lies outside the commit range of its frame.
    CommitRange,
    /// Stream versions are not gap-free from 1.
    StreamVersion,
    /// An event's `previous_hash` is not the hash of the event before it.
    HashLink,
    /// An event's hash is not the blake3 of its content: the content was changed.
    Hash,
    /// The history does not reach, or does not match, the checkpoint given.
    Checkpoint,
    /// The payload does not decode as a domain event (through the upcasters).
    Decode,
    /// An event that cannot be applied to the state it follows: an unknown entity, or an
    /// id created twice.
    Apply,
    /// Rule 1: a remix without sources; a source or citation naming a missing or withdrawn
    /// record, the record itself, or closing a cycle.
    FamilyTree,
    /// Rule 2: a lead fee agreed twice or off the project's production, or a lead assigned
    /// before their fee was agreed.
    Lead,
    /// Rule 3: a missing or withdrawn record included, or one included twice.
    Inclusion,
    /// Rule 4: the recorded pool or its inputs differ from the recomputed ones, or a second
    /// distribution of a production opened while one is open.
    Pool,
    /// Rule 5: a line of an unknown member, without a rationale, for records that are not
    /// the member's or not in the production; two lines of one member; lines that do not
    /// add up to the count their proposal or amendment announced.
    Lines,
    /// Rule 5: the finalized amounts differ from the line rule's.
    LineAmounts,
    /// Rule 6: a window of another length than the production's or opened at another
    /// time than its publication; a member comment or an amendment after the window
    /// closed; an amendment without a reason or answering another distribution's comments.
    Window,
    /// Rule 7: a finalization that the rule forbids.
    Finalization,
    /// Rule 8: a payout whose amount, member or id does not follow from the finalized
    /// line or the agreed fee.
    Payout,
    /// Rule 8: a payout issued twice, or settled twice.
    PayoutTwice,
    /// Rule 8: a distribution's payouts do not cover every line once, or do not sum to
    /// its pool.
    PayoutsSum,
    /// Rule 8: a settlement, failure or retry out of order.
    PayoutState,
    /// Rule 9: a revenue, expense, fee or amount that is not positive, not in the
    /// production's currency, or past the ledger's bound.
    Money,
    /// Rule 10: a record credited to someone who is not a member, or a line paying a
    /// member the production does not credit.
    Credits,
}

impl Check {
    /// Every check, in the order above: for listings (the CLI, the gRPC auditor service).
    pub const ALL: [Check; 26] = [
        Check::SegmentHeader,
        Check::Frame,
        Check::IncompleteCommit,
        Check::Envelope,
        Check::Position,
        Check::CommitRange,
        Check::StreamVersion,
        Check::HashLink,
        Check::Hash,
        Check::Checkpoint,
        Check::Decode,
        Check::Apply,
        Check::FamilyTree,
        Check::Lead,
        Check::Inclusion,
        Check::Pool,
        Check::Lines,
        Check::LineAmounts,
        Check::Window,
        Check::Finalization,
        Check::Payout,
        Check::PayoutTwice,
        Check::PayoutsSum,
        Check::PayoutState,
        Check::Money,
        Check::Credits,
    ];

    /// The stable name, as serialized (snake case).
    pub fn name(self) -> &'static str {
        match self {
            Check::SegmentHeader => "segment_header",
            Check::Frame => "frame",
            Check::IncompleteCommit => "incomplete_commit",
            Check::Envelope => "envelope",
            Check::Position => "position",
            Check::CommitRange => "commit_range",
            Check::StreamVersion => "stream_version",
            Check::HashLink => "hash_link",
            Check::Hash => "hash",
            Check::Checkpoint => "checkpoint",
            Check::Decode => "decode",
            Check::Apply => "apply",
            Check::FamilyTree => "family_tree",
            Check::Lead => "lead",
            Check::Inclusion => "inclusion",
            Check::Pool => "pool",
            Check::Lines => "lines",
            Check::LineAmounts => "line_amounts",
            Check::Window => "window",
            Check::Finalization => "finalization",
            Check::Payout => "payout",
            Check::PayoutTwice => "payout_twice",
            Check::PayoutsSum => "payouts_sum",
            Check::PayoutState => "payout_state",
            Check::Money => "money",
            Check::Credits => "credits",
        }
    }

    /// The rule the check enforces, in words.
    pub fn rule(self) -> &'static str {
        match self {
            Check::SegmentHeader => "each segment starts where the one before ended",
            Check::Frame => "every frame has a valid magic, length and checksum",
            Check::IncompleteCommit => "a group commit is written whole",
            Check::Envelope => "every frame holds a decodable envelope",
            Check::Position => "positions are gap-free from 1",
            Check::CommitRange => "an event lies in the commit range of its frame",
            Check::StreamVersion => "stream versions are gap-free from 1",
            Check::HashLink => "every event links to the hash of the one before",
            Check::Hash => "every event's hash is the blake3 of its content",
            Check::Checkpoint => "the history up to the checkpoint is unchanged",
            Check::Decode => "every event decodes as a domain event",
            Check::Apply => "every event applies to the state before it",
            Check::FamilyTree => {
                "rule 1: a remix has sources; sources and citations are existing, non-withdrawn \
                 records; no self-citation, no cycle"
            }
            Check::Lead => "rule 2: a lead's fee is agreed, once, before the lead is assigned",
            Check::Inclusion => "rule 3: only existing, non-withdrawn records are included, once",
            Check::Pool => {
                "rule 4: pool = share x max(revenue - expenses, 0) - earlier pools, half-to-even"
            }
            Check::Lines => {
                "rule 5: one line per member, positive weight, rationale, the member's own \
                 records in the production"
            }
            Check::LineAmounts => {
                "rule 5: pool x weight / sum of weights, rounded down, largest remainders"
            }
            Check::Window => {
                "rule 6: the production's window from first publication; member comments and \
                 amendments (with a reason) only during it"
            }
            Check::Finalization => {
                "rule 7: window closed, comments answered, every contributor paid, sum = pool"
            }
            Check::Payout => "rule 8: a payout pays its finalized line or its agreed fee",
            Check::PayoutTwice => "rule 8: a payout is issued once and paid once",
            Check::PayoutsSum => "rule 8: one payout per line; payouts sum to the pool",
            Check::PayoutState => "rule 8: settle or fail once per attempt; retry only failed",
            Check::Money => {
                "rule 9: positive amounts in the production's currency, within the ledger's bound"
            }
            Check::Credits => {
                "rule 10: credits name members: contributors of included records and their ancestors"
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing found wrong, with where it is and what was expected instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The event's position, or the position expected next where no event could be read.
    pub position: Position,
    pub check: Check,
    pub rule: &'static str,
    pub stream_id: Option<String>,
    pub event_type: Option<String>,
    /// The segment file and byte offset, for findings about bytes.
    pub segment: Option<String>,
    pub offset: Option<u64>,
    pub expected: String,
    pub found: String,
}

impl Finding {
    pub fn new(
        position: Position,
        check: Check,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Finding {
        Finding {
            position,
            check,
            rule: check.rule(),
            stream_id: None,
            event_type: None,
            segment: None,
            offset: None,
            expected: expected.into(),
            found: found.into(),
        }
    }

    pub fn in_event(mut self, stream_id: &str, event_type: &str) -> Finding {
        self.stream_id = Some(stream_id.to_string());
        self.event_type = Some(event_type.to_string());
        self
    }

    pub fn at_bytes(mut self, segment: &std::path::Path, offset: u64) -> Finding {
        self.segment = Some(segment.display().to_string());
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "position {}: {}", self.position, self.check)?;
        if let Some(stream) = &self.stream_id {
            write!(f, " in {stream}")?;
        }
        if let Some(event_type) = &self.event_type {
            write!(f, " ({event_type})")?;
        }
        if let (Some(segment), Some(offset)) = (&self.segment, self.offset) {
            write!(f, " at {segment} offset {offset}")?;
        }
        write!(
            f,
            ": expected {}, found {} [{}]",
            self.expected, self.found, self.rule
        )
    }
}

/// Findings kept in a report; later ones are only counted, so a log damaged everywhere
/// cannot exhaust memory.
pub const FINDINGS_KEPT_MAX: usize = 10_000;

/// The findings of one run.
#[derive(Clone, Debug, Default)]
pub struct FindingSink {
    pub kept: Vec<Finding>,
    pub dropped: u64,
}

impl FindingSink {
    pub fn push(&mut self, finding: Finding) {
        if self.kept.len() < FINDINGS_KEPT_MAX {
            self.kept.push(finding);
        } else {
            self.dropped += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.kept.len() as u64 + self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_names_and_each_rule_has_its_check() {
        let mut names = std::collections::HashSet::new();
        for check in Check::ALL {
            let serialized = serde_json::to_value(check).unwrap();
            assert_eq!(serialized.as_str(), Some(check.name()));
            assert!(names.insert(check.name()), "{check} listed twice");
        }
        for rule in 1..=10 {
            let prefix = format!("rule {rule}:");
            assert!(
                Check::ALL
                    .iter()
                    .any(|check| check.rule().starts_with(&prefix)),
                "no check for rule {rule}"
            );
        }
    }
}
