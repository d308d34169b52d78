//! `queue.publish`: a sink putting references on the work queue. An item is complete once
//! JetStream has stored it (its PubAck), so a watcher upstream journals "done" only for
//! references that are safely queued. The message id is the reference's key and version: a
//! reference published again after a crash is dropped by JetStream's duplicate window.

use std::time::Duration;

use mindscan_sdk::duration::Span;
use mindscan_sdk::prelude::*;
use mindscan_sdk::reference::Reference;

use crate::nats::{Connection, Server, connect, publish_confirmed};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// The server and stream (`url`, `stream`, `subject`, `duplicate_window`).
    #[serde(default)]
    pub nats: Server,
    /// How long to keep retrying a publication the server does not confirm (a restart, an
    /// outage) before the item fails.
    #[serde(default = "default_give_up")]
    pub give_up: Span,
}

fn default_give_up() -> Span {
    Span(Duration::from_secs(600))
}

pub struct QueuePublish {
    conn: Connection,
    subject: String,
    give_up: Duration,
}

/// The message id: one per series version (`Nats-Msg-Id`).
pub fn message_id(item: &Item) -> String {
    let version: u64 = item.meta.get("version").unwrap_or(1);
    format!("{}.v{version}", item.key())
}

impl Stage for QueuePublish {
    type Params = PublishParams;
    const NAME: &'static str = "queue.publish";
    const ROLE: Role = Role::Sink;
    const INPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const OUTPUTS: &'static [&'static str] = &[];
    const DESCRIPTION: &'static str = "Put references on a NATS JetStream work queue (one \
         message per series version, duplicates dropped), for queue.consume workers";

    fn new(p: PublishParams, _host: &Host) -> Result<Self> {
        Ok(QueuePublish {
            conn: connect(&p.nats)?,
            subject: p.nats.subject,
            give_up: p.give_up.0,
        })
    }

    fn process(&self, ctx: &Context, item: Item, _out: &mut Emitter) -> Result<()> {
        // Refuse what a worker could not decode before it reaches the queue.
        Reference::of(&item)?;
        let payload = serde_json::to_vec(&item.meta.0)?;
        let id = message_id(&item);
        let ack = publish_confirmed(
            &self.conn,
            ctx,
            &format!("publishing {id}"),
            self.give_up,
            &self.subject,
            Some(&id),
            &payload,
        )?;
        if ack.duplicate {
            ctx.debug(&format!("{id}: already queued"));
        } else {
            ctx.debug(&format!("{id}: queued as #{}", ack.sequence));
        }
        Ok(())
    }
}
