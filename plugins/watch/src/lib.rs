//! Continuous ingestion: the `watch.folder` source, which turns files arriving in folders
//! (a scanner's or PACS's export) into one item per stable series, exactly once, with a
//! durable SQLite journal; `watch.scan`, the same emitting references instead of volumes.

pub mod discover;
pub mod journal;
pub mod stage;

mindscan_sdk::plugin!(name: "watch", stages: [stage::WatchFolder, stage::WatchScan]);
