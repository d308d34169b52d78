//! Scale-out through a NATS JetStream work queue: `queue.publish` puts references on it (one
//! watcher), `queue.consume` hands them to the rest of a pipeline on any number of machines,
//! acking each only once the engine reports it complete.

pub mod consume;
pub mod nats;
pub mod publish;

mindscan_sdk::plugin!(name: "queue", stages: [publish::QueuePublish, consume::QueueConsume]);
