//! `stemma store …`

use std::path::Path;

use ledger::store::{EmbeddedOptions, EmbeddedStore, StoreError};
use serde::Serialize;

#[derive(Serialize)]
struct Status {
    data_directory: String,
    head_position: u64,
    head_hash: String,
    segments: usize,
    streams: usize,
    /// Where the index checkpoint open took the index's maps from, if it did.
    index_from_checkpoint: Option<u64>,
    torn_tail: Option<TornTail>,
}

#[derive(Serialize)]
struct TornTail {
    segment: String,
    offset: u64,
    bytes_discarded: u64,
}

pub async fn status(data: &Path, json: bool) -> Result<(), StoreError> {
    let (store, report) = EmbeddedStore::open(data, EmbeddedOptions::default()).await?;
    store.close().await;
    let status = Status {
        data_directory: data.display().to_string(),
        head_position: report.head.position,
        head_hash: report.head.hash.to_hex(),
        segments: report.segments,
        streams: report.streams,
        index_from_checkpoint: report.index_from_checkpoint,
        torn_tail: report.torn_tail.map(|tail| TornTail {
            segment: tail.segment.display().to_string(),
            offset: tail.offset,
            bytes_discarded: tail.bytes_discarded,
        }),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
        return Ok(());
    }
    println!("data directory  {}", status.data_directory);
    println!("head position   {}", status.head_position);
    println!("head hash       {}", status.head_hash);
    println!("segments        {}", status.segments);
    println!("streams         {}", status.streams);
    match status.index_from_checkpoint {
        Some(position) => {
            println!("index           from the checkpoint at {position}, then the log")
        }
        None => println!("index           built from the log"),
    }
    match &status.torn_tail {
        Some(tail) => println!(
            "torn tail       cut {} bytes at offset {} of {}",
            tail.bytes_discarded, tail.offset, tail.segment
        ),
        None => println!("torn tail       none"),
    }
    Ok(())
}
