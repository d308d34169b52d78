//! An `s3://bucket/prefix` location: the object store behind it and the blocking calls the
//! stages make (stages run on plain threads; one small tokio runtime serves them all).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncWriteExt;

/// Files up to this size go up in one PUT; larger ones as a multipart upload of parts this big
/// (S3's minimum part is 5 MiB). `MINDSCAN_S3_PART_BYTES` overrides it (at least 5 MiB), for
/// servers with other limits.
const PART_BYTES: usize = 8 << 20;

/// Whether `s` names an object-store location rather than a local path.
pub fn is_url(s: &str) -> bool {
    s.starts_with("s3://") || s.starts_with("s3a://")
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // reqwest is built without a bundled TLS provider: rustls gets ring's (an error only
        // says another one was installed first, which serves as well).
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mindscan-storage")
            .enable_all()
            .build()
            .expect("cannot start the storage runtime")
    })
}

/// One store per bucket for the whole process (connections are pooled inside it).
fn store_for(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    static STORES: Mutex<Option<HashMap<String, Arc<dyn ObjectStore>>>> = Mutex::new(None);
    let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    if let Some(s) = stores.get(bucket) {
        return Ok(s.clone());
    }
    let _guard = runtime().enter();
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("s3://{bucket}: cannot set up the S3 client"))?,
    );
    stores.insert(bucket.to_string(), store.clone());
    Ok(store)
}

/// A bucket and a key prefix in it.
#[derive(Clone)]
pub struct Remote {
    bucket: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
}

/// An object found under a prefix.
#[derive(Clone, Debug)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

impl Remote {
    /// `s3://bucket/prefix` (or `s3a://`); the prefix may be empty or end in `/`.
    pub fn parse(url: &str) -> Result<Remote> {
        let rest = url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("s3a://"))
            .ok_or_else(|| anyhow!("{url}: not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url}: the URL names no bucket (s3://BUCKET/prefix)");
        }
        if prefix.contains(['*', '?', '[']) {
            bail!("{url}: glob patterns are not supported in s3:// URLs; name a prefix");
        }
        Ok(Remote {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            store: store_for(bucket)?,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix without slashes at either end ("" for the whole bucket).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `s3://bucket/key`.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }

    /// The URL this location was opened with, normalised.
    pub fn url(&self) -> String {
        self.url_of(&self.prefix)
    }

    /// The key for `rel` below the prefix.
    pub fn key_for(&self, rel: &str) -> String {
        let rel = rel.trim_start_matches('/');
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Every object whose key is the prefix or lies below it, sorted by key.
    pub fn list(&self) -> Result<Vec<Object>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let mut found: Vec<Object> = runtime()
            .block_on(async move {
                let below = (!prefix.is_empty()).then(|| Key::from(prefix.as_str()));
                let mut objects = Vec::new();
                let mut stream = store.list(below.as_ref());
                while let Some(meta) = stream.next().await {
                    let meta = meta?;
                    objects.push(Object {
                        key: meta.location.to_string(),
                        size: meta.size,
                        modified: meta.last_modified.timestamp(),
                    });
                }
                if objects.is_empty()
                    && let Some(key) = below
                    && let Ok(meta) = store.head(&key).await
                {
                    objects.push(Object {
                        key: meta.location.to_string(),
                        size: meta.size,
                        modified: meta.last_modified.timestamp(),
                    });
                }
                Ok::<_, object_store::Error>(objects)
            })
            .with_context(|| format!("{}: cannot list", self.url()))?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Streams the object `key` into `to` (a new file; the caller renames it into place).
    pub fn download(&self, key: &str, to: &Path) -> Result<()> {
        let store = self.store.clone();
        let location = Key::from(key);
        let to_owned = to.to_path_buf();
        runtime()
            .block_on(async move {
                let got = store.get(&location).await?;
                let mut stream = got.into_stream();
                let mut file = tokio::fs::File::create(&to_owned).await.map_err(|e| {
                    object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    }
                })?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| object_store::Error::Generic {
                            store: "local",
                            source: Box::new(e),
                        })?;
                }
                file.flush()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    })
            })
            .with_context(|| format!("{}: cannot download", self.url_of(key)))
    }

    /// Uploads the local file `from` as the object `key`, whole or not at all: one PUT up to
    /// the part size, else a multipart upload that is completed only after its last part and
    /// aborted when anything fails (S3 then keeps no object and no parts).
    pub fn upload_file(&self, key: &str, from: &Path) -> Result<()> {
        let part = part_bytes();
        let store = self.store.clone();
        let location = Key::from(key);
        let from_owned = from.to_path_buf();
        runtime()
            .block_on(async move {
                use tokio::io::AsyncReadExt;
                let io = |e: std::io::Error| anyhow::Error::new(e).context("cannot read");
                let mut file = tokio::fs::File::open(&from_owned).await.map_err(io)?;
                let len = file.metadata().await.map_err(io)?.len();
                if len <= part as u64 {
                    let mut bytes = Vec::with_capacity(len as usize);
                    file.read_to_end(&mut bytes).await.map_err(io)?;
                    store.put(&location, PutPayload::from(bytes)).await?;
                    return Ok(());
                }
                let upload = store.put_multipart(&location).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
                let mut buf = vec![0u8; 1 << 20];
                let sent: Result<()> = async {
                    loop {
                        let n = file.read(&mut buf).await.map_err(io)?;
                        if n == 0 {
                            return Ok(());
                        }
                        // At most two parts in flight: memory stays two parts per upload.
                        writer.wait_for_capacity(2).await?;
                        writer.write(&buf[..n]);
                    }
                }
                .await;
                match sent {
                    Ok(()) => writer.finish().await.map(|_| ()).map_err(Into::into),
                    Err(e) => {
                        let _ = writer.abort().await;
                        Err(e)
                    }
                }
            })
            .with_context(|| format!("{}: cannot upload {}", self.url_of(key), from.display()))
    }
}

fn part_bytes() -> usize {
    std::env::var("MINDSCAN_S3_PART_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(PART_BYTES, |n| n.max(5 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let r = Remote::parse("s3://scans/site-a/").unwrap();
        assert_eq!((r.bucket(), r.prefix()), ("scans", "site-a"));
        assert_eq!(r.key_for("sub/x.nii.gz"), "site-a/sub/x.nii.gz");
        assert_eq!(r.url(), "s3://scans/site-a");
        let whole = Remote::parse("s3a://scans").unwrap();
        assert_eq!(whole.key_for("/x"), "x");
        assert!(Remote::parse("s3:///x").is_err());
        let glob = Remote::parse("s3://b/*.nii").err().unwrap().to_string();
        assert!(glob.contains("glob"), "{glob}");
        assert!(is_url("s3://b") && !is_url("/data/s3://b") && !is_url("b"));
    }
}
