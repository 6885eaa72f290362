//! Model-based property test: random interleavings of appends (right and wrong expected
//! versions, repeated command ids with the same or other content), reads and reopens,
//! against a plain in-memory model of what the store promises.

use std::collections::HashMap;

use ledger::store::{
    AppendRequest, AppendResult, EmbeddedOptions, EmbeddedStore, EventStore, ExpectedVersion,
    StoreError,
};
use proptest::prelude::*;
use stemma_tests::{append, conformance, event, stream};

const STREAMS: usize = 4;
const COMMAND_IDS: u8 = 12;

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    Right,
    Wrong,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        command: u8,
        /// Same command id and variant: the same content (a retry).
        variant: bool,
        expectations: Vec<(usize, Expect)>,
    },
    ReadStream {
        stream: usize,
        from_version: u64,
        max_count: usize,
    },
    ReadAll {
        from_position: u64,
        max_count: usize,
    },
    Reopen(Checkpoint),
}

/// What becomes of the index checkpoint the close wrote, before the reopen.
#[derive(Clone, Copy, Debug)]
enum Checkpoint {
    /// Kept: the reopen takes the maps from it.
    Keep,
    /// Gone: the reopen builds the index from the log.
    Delete,
    /// Replaced by the checkpoint of an earlier close, as after a crash that left the last
    /// close's behind: the reopen takes the maps from it and indexes the events after it.
    Older,
    /// One byte changed: the reopen ignores it and builds the index from the log.
    Damage,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::Right),
        Just(Expect::Wrong)
    ];
    prop_oneof![
        6 => (0..COMMAND_IDS, any::<bool>(), proptest::collection::vec((0..STREAMS, expect), 0..3))
            .prop_map(|(command, variant, expectations)| Op::Append { command, variant, expectations }),
        2 => (0..STREAMS, 0u64..6, 1usize..5).prop_map(|(stream, from_version, max_count)| Op::ReadStream { stream, from_version, max_count }),
        2 => (0u64..40, 1usize..12).prop_map(|(from_position, max_count)| Op::ReadAll { from_position, max_count }),
        1 => prop_oneof![
            Just(Checkpoint::Keep),
            Just(Checkpoint::Delete),
            Just(Checkpoint::Older),
            Just(Checkpoint::Damage)
        ]
        .prop_map(Op::Reopen),
    ]
}

fn stream_name(i: usize) -> String {
    format!("s-{i}")
}

/// The events of a command: a function of (command, variant) only, so a retry is the same.
fn content(command: u8, variant: bool) -> Vec<(usize, Vec<u8>)> {
    let count = 1 + (command as usize % 3);
    (0..count)
        .map(|i| {
            let stream = (command as usize + i * (1 + variant as usize)) % STREAMS;
            (stream, vec![command, variant as u8, i as u8])
        })
        .collect()
}

#[derive(Default)]
struct Model {
    /// (stream, version, payload, command) in log order.
    log: Vec<(usize, u64, Vec<u8>, u8)>,
    commands: HashMap<u8, (bool, AppendResult)>,
}

impl Model {
    fn version(&self, stream: usize) -> u64 {
        self.log.iter().filter(|(s, ..)| *s == stream).count() as u64
    }

    fn request(
        &self,
        command: u8,
        variant: bool,
        expectations: &[(usize, Expect)],
    ) -> AppendRequest {
        let mut seen = Vec::new();
        let expectations: Vec<(String, ExpectedVersion)> = expectations
            .iter()
            .filter(|(s, _)| {
                let first = !seen.contains(s);
                seen.push(*s);
                first
            })
            .map(|(s, expect)| {
                let current = self.version(*s);
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::Right => ExpectedVersion::Exact(current),
                    Expect::Wrong => ExpectedVersion::Exact(current + 1),
                };
                (stream_name(*s), expected)
            })
            .collect();
        let expectations: Vec<(&str, ExpectedVersion)> =
            expectations.iter().map(|(s, e)| (s.as_str(), *e)).collect();
        let events = content(command, variant)
            .into_iter()
            .map(|(s, payload)| event(&stream_name(s), &payload))
            .collect();
        append(&format!("cmd-{command}"), &expectations, events)
    }

    /// What the store must answer, and the model's new state.
    fn append(
        &mut self,
        command: u8,
        variant: bool,
        request: &AppendRequest,
    ) -> Result<Option<AppendResult>, String> {
        if let Some((original_variant, original)) = self.commands.get(&command) {
            return if *original_variant == variant {
                Ok(Some(original.clone()))
            } else {
                Err("reused".into())
            };
        }
        for expectation in &request.expectations {
            let s: usize = expectation.stream_id.as_str()[2..].parse().unwrap();
            if !expectation.expected.is_met_by(self.version(s)) {
                return Err("conflict".into());
            }
        }
        for (s, payload) in content(command, variant) {
            let version = self.version(s) + 1;
            self.log.push((s, version, payload, command));
        }
        Ok(None)
    }
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_size_bytes: 4 * 1024,
        ..EmbeddedOptions::default()
    }
}

async fn run(ops: Vec<Op>) {
    let directory = tempfile::tempdir().unwrap();
    // The bytes of a checkpoint an earlier reopen used, and its position.
    let mut older_checkpoint: Option<(u64, Vec<u8>)> = None;
    let (mut store, _) = EmbeddedStore::open(directory.path(), options())
        .await
        .unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                command,
                variant,
                expectations,
            } => {
                let request = model.request(command, variant, &expectations);
                let before = model.log.len() as u64;
                let expected = model.append(command, variant, &request);
                let actual = store.append(request).await;
                match (expected, actual) {
                    (Ok(Some(original)), Ok(result)) => {
                        assert_eq!(result, original, "a retry returns the original result")
                    }
                    (Ok(None), Ok(result)) => {
                        assert_eq!(result.first_position, before + 1);
                        assert_eq!(result.last_position, model.log.len() as u64);
                        model.commands.insert(command, (variant, result));
                    }
                    (Err(why), Err(StoreError::CommandIdReused { .. })) if why == "reused" => {}
                    (Err(why), Err(StoreError::WrongExpectedVersion { .. }))
                        if why == "conflict" => {}
                    (expected, actual) => panic!("model says {expected:?}, store says {actual:?}"),
                }
            }
            Op::ReadStream {
                stream: s,
                from_version,
                max_count,
            } => {
                let events = store
                    .read_stream(&stream(&stream_name(s)), from_version, max_count)
                    .await
                    .unwrap();
                let expected: Vec<(u64, u64, Vec<u8>)> = model
                    .log
                    .iter()
                    .enumerate()
                    .filter(|(_, (es, version, ..))| *es == s && *version >= from_version.max(1))
                    .take(max_count)
                    .map(|(i, (_, version, payload, _))| (i as u64 + 1, *version, payload.clone()))
                    .collect();
                let actual: Vec<(u64, u64, Vec<u8>)> = events
                    .into_iter()
                    .map(|e| (e.position, e.stream_version, e.payload))
                    .collect();
                assert_eq!(actual, expected);
            }
            Op::ReadAll {
                from_position,
                max_count,
            } => {
                let events = store.read_all(from_position, max_count).await.unwrap();
                let start = from_position.max(1) as usize - 1;
                let expected: Vec<(String, Vec<u8>, String)> = model
                    .log
                    .iter()
                    .skip(start)
                    .take(max_count)
                    .map(|(s, _, payload, command)| {
                        (stream_name(*s), payload.clone(), format!("cmd-{command}"))
                    })
                    .collect();
                let actual: Vec<(String, Vec<u8>, String)> = events
                    .into_iter()
                    .map(|e| (e.stream_id.to_string(), e.payload, e.command_id.to_string()))
                    .collect();
                assert_eq!(actual, expected);
            }
            Op::Reopen(fate) => {
                store.close().await;
                drop(store);
                let index = directory.path().join("INDEX");
                let head = model.log.len() as u64;
                // Where the checkpoint the reopen may use was taken (none for an empty log).
                let current = (head > 0).then_some(head);
                let expected = match fate {
                    Checkpoint::Keep => current,
                    Checkpoint::Delete => {
                        let _ = std::fs::remove_file(&index);
                        None
                    }
                    Checkpoint::Older => match &older_checkpoint {
                        Some((position, bytes)) => {
                            std::fs::write(&index, bytes).unwrap();
                            Some(*position)
                        }
                        None => current,
                    },
                    Checkpoint::Damage => match std::fs::read(&index) {
                        Ok(mut bytes) => {
                            let middle = bytes.len() / 2;
                            bytes[middle] ^= 0x40;
                            std::fs::write(&index, bytes).unwrap();
                            None
                        }
                        Err(_) => None,
                    },
                };
                if let (Some(position), Ok(bytes)) = (current, std::fs::read(&index)) {
                    if matches!(fate, Checkpoint::Keep) {
                        older_checkpoint = Some((position, bytes));
                    }
                }
                let (reopened, report) = EmbeddedStore::open(directory.path(), options())
                    .await
                    .unwrap();
                assert_eq!(report.head.position, head);
                assert_eq!(report.torn_tail, None);
                assert_eq!(report.index_from_checkpoint, expected, "{fate:?}");
                store = reopened;
            }
        }
        assert_eq!(store.head().await.unwrap().position, model.log.len() as u64);
    }
    let all = conformance::read_everything(&store).await;
    assert_eq!(all.len(), model.log.len());
    store.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}
