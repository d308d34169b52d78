//! What both queue stages share: the server and stream they name, the connection, and the
//! work-queue stream created on first use.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use mindscan_sdk::duration::Span;
use mindscan_sdk::prelude::*;
use tokio::runtime::Runtime;

/// Where the work queue lives. The same fields for `queue.publish` and `queue.consume`.
#[derive(Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// NATS server URL (`nats://host:4222`; `nats://user:password@host` or `nats://token@host`
    /// for credentials, never logged). Default: `$NATS_URL`, else `nats://127.0.0.1:4222`.
    #[serde(default)]
    pub url: Option<String>,
    /// JetStream stream holding the work (created as a file-backed work queue if missing).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject the references are published on.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// How long JetStream remembers a message id: a reference published again within it (a
    /// watcher replaying after a crash) is dropped as a duplicate. Applies when the stream is
    /// created.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window: Span,
}

fn default_stream() -> String {
    "MINDSCAN".into()
}
fn default_subject() -> String {
    "mindscan.work".into()
}
fn default_duplicate_window() -> Span {
    Span(Duration::from_secs(3600))
}

impl Default for Server {
    fn default() -> Self {
        Server {
            url: None,
            stream: default_stream(),
            subject: default_subject(),
            duplicate_window: default_duplicate_window(),
        }
    }
}

impl Server {
    pub fn url(&self) -> String {
        self.url
            .clone()
            .or_else(|| std::env::var("NATS_URL").ok())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
    }

    fn check(&self) -> Result<()> {
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        };
        if !token_ok(&self.stream) {
            bail!(
                "stream '{}': use letters, digits, '-' and '_' only",
                self.stream
            );
        }
        if self.subject.is_empty()
            || self
                .subject
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
        {
            bail!(
                "subject '{}': dot-separated tokens, no wildcards",
                self.subject
            );
        }
        Ok(())
    }
}

/// The URL as it may be printed: without user, password or token.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    }
}

/// A connection with its own small runtime (the engine's workers are plain threads; they
/// `block_on` it).
pub struct Connection {
    pub rt: Runtime,
    pub js: jetstream::Context,
    pub url: String,
}

/// Connects and makes sure the work-queue stream exists. The client reconnects by itself
/// after a server restart; only the first connection must succeed.
pub fn connect(server: &Server) -> Result<Connection> {
    server.check()?;
    let url = server.url();
    let shown = redacted(&url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nats")
        .enable_all()
        .build()
        .context("cannot start the NATS client runtime")?;
    let js = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .connect(url.as_str())
            .await
            .map_err(|e| anyhow!("cannot reach NATS at {shown}: {e}"))?;
        let js = jetstream::new(client);
        ensure_stream(
            &js,
            stream::Config {
                name: server.stream.clone(),
                subjects: vec![server.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: server.duplicate_window.0,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("NATS at {shown}"))?;
        Ok::<_, mindscan_sdk::anyhow::Error>(js)
    })?;
    Ok(Connection { rt, js, url: shown })
}

/// Creates the stream unless it exists (its existing configuration is kept). Workers that
/// start together race to create it: the loser's create fails ("subjects overlap with an
/// existing stream" on nats-server 2.9), so a failed create that finds the stream now is fine.
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<()> {
    let name = config.name.clone();
    match js.get_or_create_stream(config).await {
        Ok(_) => Ok(()),
        Err(_) if js.get_stream(&name).await.is_ok() => Ok(()),
        Err(e) => Err(anyhow!(
            "cannot open or create the JetStream stream '{name}': {e}"
        )),
    }
}

/// Publishes `payload` on `subject` and waits until JetStream has stored it (its PubAck),
/// retrying as [`retry`] does. With `msg_id`, the stream's duplicate window drops a second
/// publication of the same id (the ack then says `duplicate`).
pub fn publish_confirmed(
    conn: &Connection,
    ctx: &Context,
    what: &str,
    give_up: Duration,
    subject: &str,
    msg_id: Option<&str>,
    payload: &[u8],
) -> Result<jetstream::publish::PublishAck> {
    let js = &conn.js;
    retry(conn, ctx, what, give_up, async || {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        js.publish_with_headers(subject.to_string(), headers, payload.to_vec().into())
            .await
            .map_err(|e| anyhow!("{e}"))?
            .await
            .map_err(|e| anyhow!("not confirmed: {e}"))
    })
}

/// Retries `op` with growing pauses (0.1 s … 2 s) until it succeeds, the run stops, or
/// `give_up` has passed: a server restart or a leader election is a pause, not a failure.
pub fn retry<T>(
    conn: &Connection,
    ctx: &Context,
    what: &str,
    give_up: Duration,
    mut op: impl AsyncFnMut() -> Result<T>,
) -> Result<T> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match conn.rt.block_on(op()) {
            Ok(v) => {
                if warned {
                    ctx.info(&format!("{what}: NATS at {} answers again", conn.url));
                }
                return Ok(v);
            }
            Err(e) => {
                if ctx.is_cancelled() || start.elapsed() >= give_up {
                    return Err(e.context(format!("{what} (NATS at {})", conn.url)));
                }
                if !warned {
                    ctx.warn(&format!("{what}: {e:#}; retrying"));
                    warned = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_logs() {
        assert_eq!(
            redacted("nats://alice:s3cret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(redacted("nats://tok@host"), "nats://***@host");
        assert_eq!(redacted("nats://host:4222"), "nats://host:4222");
        assert_eq!(redacted("alice:pw@host"), "***@host");
    }

    #[test]
    fn stream_and_subject_names_are_checked() {
        let mut s = Server::default();
        assert!(s.check().is_ok());
        s.subject = "work.>".into();
        assert!(s.check().is_err());
        s.subject = "a..b".into();
        assert!(s.check().is_err());
        s.subject = "ok".into();
        s.stream = "has.dot".into();
        assert!(s.check().is_err());
    }
}
