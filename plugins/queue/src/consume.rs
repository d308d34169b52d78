//! `queue.consume`: a source pulling references from the work queue with a durable consumer
//! that any number of worker processes share. A message is acked only when the engine reports
//! its item complete (every sink has renamed its outputs into place); until then the worker
//! sends in-progress acks, so a long step does not outlive the ack wait. A worker that dies
//! leaves its messages unacked: JetStream redelivers them to another, which replaces whatever
//! the first may have started (`replay` in the item's metadata).
//!
//! A failed item is nak'ed with a delay and tried again; at its `max_deliver`-th failure, or
//! when it arrives having been delivered more often than that without completing (the workers
//! died on it), it goes to the dead-letter subject with the error, and is acked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Message, stream};
use futures_util::StreamExt;
use mindscan_sdk::duration::Span;
use mindscan_sdk::prelude::*;
use mindscan_sdk::{Cancelled, Completion};

use crate::nats::{Connection, Server, connect, ensure_stream, publish_confirmed, retry};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeParams {
    /// The server and stream (`url`, `stream`, `subject`, `duplicate_window`).
    #[serde(default)]
    pub nats: Server,
    /// Durable consumer shared by every worker (created if missing; an existing one keeps its
    /// settings).
    #[serde(default = "default_durable")]
    pub durable: String,
    /// A message neither acked nor marked in progress for this long is redelivered.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: Span,
    /// Attempts before a failing reference goes to the dead-letter subject.
    #[serde(default = "default_max_deliver")]
    #[schemars(range(min = 1))]
    pub max_deliver: u32,
    /// Pause before a failed reference is tried again.
    #[serde(default = "default_nak_delay")]
    pub nak_delay: Span,
    /// Where references that keep failing go, with their error (kept in the stream
    /// `<stream>_DEAD`).
    #[serde(default = "default_dead_letter")]
    pub dead_letter_subject: String,
    /// Stop once the stream is empty and nothing is in flight (drain a batch), instead of
    /// waiting for more.
    #[serde(default)]
    pub until_empty: bool,
}

fn default_durable() -> String {
    "mindscan-workers".into()
}
fn default_ack_wait() -> Span {
    Span(Duration::from_secs(60))
}
fn default_max_deliver() -> u32 {
    5
}
fn default_nak_delay() -> Span {
    Span(Duration::from_secs(10))
}
fn default_dead_letter() -> String {
    "mindscan.dead".into()
}

/// A message whose item is in the pipeline.
struct Pending {
    msg: Message,
    delivered: i64,
}

type InFlight = Arc<Mutex<HashMap<String, VecDeque<Pending>>>>;

pub struct QueueConsume {
    conn: Connection,
    consumer: PullConsumer,
    stream: String,
    dead_subject: String,
    max_deliver: i64,
    nak_delay: Duration,
    ack_wait: Duration,
    until_empty: bool,
    inflight: InFlight,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for QueueConsume {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// The last step of a message.
enum Settle {
    Ack,
    Nak(Option<Duration>),
}

impl QueueConsume {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Pending>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }

    /// The next message, waiting up to `wait` for one.
    async fn fetch_one(&self, wait: Duration) -> Result<Option<Message>> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| anyhow!("cannot pull from '{}': {e}", self.stream))?;
        match batch.next().await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(anyhow!("cannot pull from '{}': {e}", self.stream)),
            None => Ok(None),
        }
    }

    async fn stream_is_empty(&self) -> Result<bool> {
        let info = self
            .conn
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| anyhow!("{e}"))?
            .get_info()
            .await
            .map_err(|e| anyhow!("{e}"))?;
        Ok(info.state.messages == 0)
    }

    fn finish(&self, ctx: &Context, key: &str, msg: &Message, how: Settle) {
        let kind = match how {
            Settle::Ack => AckKind::Ack,
            Settle::Nak(d) => AckKind::Nak(d),
        };
        // An ack that never arrives costs a redelivery (the outputs are replaced), not a loss.
        let r = retry(
            &self.conn,
            ctx,
            &format!("settling {key}"),
            self.ack_wait,
            async move || msg.double_ack_with(kind).await.map_err(|e| anyhow!("{e}")),
        );
        if let Err(e) = r {
            ctx.warn(&format!("{key}: {e:#} (it will be delivered again)"));
        }
    }

    /// Publishes the reference and its error where an operator looks, then acks it.
    fn dead_letter(&self, ctx: &Context, msg: &Message, delivered: i64, error: &str) {
        let reference: serde_json::Value = serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|_| String::from_utf8_lossy(&msg.payload).into_owned().into());
        let record = serde_json::json!({
            "error": error,
            "deliveries": delivered,
            "stream_sequence": msg.info().map(|i| i.stream_sequence).ok(),
            "worker": worker_name(),
            "reference": reference,
        });
        let key = reference["key"].as_str().unwrap_or("?").to_string();
        let body = record.to_string();
        let sent = publish_confirmed(
            &self.conn,
            ctx,
            &format!("dead-lettering {key}"),
            self.ack_wait,
            &self.dead_subject,
            None,
            body.as_bytes(),
        );
        match sent {
            Ok(_) => {
                ctx.error(&format!(
                    "{key}: to the dead-letter subject {} after {delivered} deliveries: {error}",
                    self.dead_subject
                ));
                self.finish(ctx, &key, msg, Settle::Ack);
            }
            // Left unacked: it comes back, and is dead-lettered then.
            Err(e) => ctx.warn(&format!("{key}: {e:#}")),
        }
    }

    /// Acks, naks or dead-letters the messages whose items ended.
    fn settle(&self, ctx: &Context, done: Vec<Completion>) {
        for c in done {
            let pending = {
                let mut map = self.lock();
                let p = map.get_mut(&c.key).and_then(VecDeque::pop_front);
                if map.get(&c.key).is_some_and(VecDeque::is_empty) {
                    map.remove(&c.key);
                }
                p
            };
            let Some(p) = pending else { continue };
            match c.outcome {
                Outcome::Done => self.finish(ctx, &c.key, &p.msg, Settle::Ack),
                Outcome::Failed => {
                    let error = c.error.unwrap_or_else(|| "failed".into());
                    if p.delivered >= self.max_deliver {
                        self.dead_letter(ctx, &p.msg, p.delivered, &error);
                    } else {
                        ctx.warn(&format!(
                            "{}: attempt {} of {} failed; again in {:?}: {error}",
                            c.key, p.delivered, self.max_deliver, self.nak_delay
                        ));
                        self.finish(ctx, &c.key, &p.msg, Settle::Nak(Some(self.nak_delay)));
                    }
                }
                // The run is stopping: another worker may take it at once.
                Outcome::Abandoned => self.finish(ctx, &c.key, &p.msg, Settle::Nak(None)),
            }
        }
    }

    /// Turns a message into the reference item it carries and emits it.
    fn take(&self, ctx: &Context, out: &mut Emitter, msg: Message) -> Result<()> {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let meta: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_slice(&msg.payload) {
                Ok(m) => m,
                Err(e) => {
                    self.dead_letter(ctx, &msg, delivered, &format!("not JSON: {e}"));
                    return Ok(());
                }
            };
        let mut item = Item::new(kinds::REFERENCE, "");
        item.meta = Meta(meta);
        let key = item.key().to_string();
        if let Err(e) = mindscan_sdk::reference::Reference::of(&item) {
            self.dead_letter(ctx, &msg, delivered, &format!("not a reference: {e:#}"));
            return Ok(());
        }
        if key.is_empty() {
            self.dead_letter(ctx, &msg, delivered, "the reference has no key");
            return Ok(());
        }
        if delivered > self.max_deliver {
            let why = format!(
                "delivered {delivered} times without completing (the workers died or hung on it)"
            );
            self.dead_letter(ctx, &msg, delivered, &why);
            return Ok(());
        }
        if delivered > 1 {
            // An earlier attempt may have written some outputs: sinks replace them.
            item.meta.set("replay", true);
        }
        ctx.info(&format!("took {key} (delivery {delivered})"));
        self.lock()
            .entry(key.clone())
            .or_default()
            .push_back(Pending {
                msg: msg.clone(),
                delivered,
            });
        out.emit(item)
    }

    fn nak_everything(&self, ctx: &Context) {
        let all: Vec<(String, Pending)> = self
            .lock()
            .drain()
            .flat_map(|(k, v)| v.into_iter().map(move |p| (k.clone(), p)))
            .collect();
        for (key, p) in all {
            self.finish(ctx, &key, &p.msg, Settle::Nak(None));
        }
    }
}

fn worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host} pid {}", std::process::id())
}

impl Stage for QueueConsume {
    type Params = ConsumeParams;
    const NAME: &'static str = "queue.consume";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const DESCRIPTION: &'static str = "Take references from a NATS JetStream work queue shared \
         by any number of workers; ack each once complete, redeliver what a dead worker held, \
         dead-letter what keeps failing";

    fn new(p: ConsumeParams, host: &Host) -> Result<Self> {
        if host.shard().is_split() {
            bail!("queue.consume cannot be sharded: the queue already shares the work");
        }
        if p.max_deliver == 0 {
            bail!("max_deliver must be at least 1");
        }
        if p.ack_wait.0 < Duration::from_secs(1) {
            bail!("ack_wait must be at least 1s");
        }
        let conn = connect(&p.nats)?;
        let ack_wait = p.ack_wait.0;
        let dead_stream = format!("{}_DEAD", p.nats.stream);
        let consumer = conn.rt.block_on(async {
            ensure_stream(
                &conn.js,
                stream::Config {
                    name: dead_stream,
                    subjects: vec![p.dead_letter_subject.clone()],
                    storage: stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await?;
            let stream = conn
                .js
                .get_stream(&p.nats.stream)
                .await
                .map_err(|e| anyhow!("stream '{}': {e}", p.nats.stream))?;
            stream
                .get_or_create_consumer::<pull::Config>(
                    &p.durable,
                    pull::Config {
                        durable_name: Some(p.durable.clone()),
                        filter_subject: p.nats.subject.clone(),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait,
                        // Unlimited: this stage counts deliveries and dead-letters itself.
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow!("durable consumer '{}': {e}", p.durable))
        })?;
        let inflight: InFlight = Arc::default();
        let ticker = {
            let inflight = inflight.clone();
            let period = (ack_wait / 3).max(Duration::from_millis(300));
            conn.rt.spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let msgs: Vec<Message> = inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .values()
                        .flatten()
                        .map(|p| p.msg.clone())
                        .collect();
                    for m in msgs {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                }
            })
        };
        Ok(QueueConsume {
            conn,
            consumer,
            stream: p.nats.stream,
            dead_subject: p.dead_letter_subject,
            max_deliver: i64::from(p.max_deliver),
            nak_delay: p.nak_delay.0,
            ack_wait,
            until_empty: p.until_empty,
            inflight,
            ticker,
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        // Completions are recorded from the first call on.
        let _ = out.take_completions();
        if ctx.worker_index() == 0 {
            ctx.info(&format!(
                "consuming '{}' from NATS at {}",
                self.stream, self.conn.url
            ));
        }
        let mut warned = false;
        let result = loop {
            self.settle(ctx, out.take_completions());
            if ctx.is_cancelled() || out.wait_ready().is_err() {
                break Ok(());
            }
            let busy = self.in_flight() > 0;
            // A batch job ends as soon as nothing is left, not one pull later.
            if self.until_empty
                && !busy
                && self
                    .conn
                    .rt
                    .block_on(self.stream_is_empty())
                    .unwrap_or(false)
            {
                break Ok(());
            }
            // While items are in the pipeline, short pulls: their completions are settled
            // (acked) within tens of milliseconds of the engine reporting them.
            let wait = Duration::from_millis(if busy { 50 } else { 500 });
            match self.conn.rt.block_on(self.fetch_one(wait)) {
                Ok(Some(msg)) => {
                    warned = false;
                    if let Err(e) = self.take(ctx, out, msg) {
                        break if e.is::<Cancelled>() { Ok(()) } else { Err(e) };
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if !warned {
                        ctx.warn(&format!("{e:#}; retrying"));
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        };
        // Settle what this process still has in the pipeline before the stage ends.
        while self.in_flight() > 0 && !ctx.is_cancelled() {
            self.settle(ctx, out.take_completions());
            std::thread::sleep(Duration::from_millis(10));
        }
        if ctx.is_cancelled() {
            self.settle(ctx, out.take_completions());
            self.nak_everything(ctx);
        }
        result
    }
}
