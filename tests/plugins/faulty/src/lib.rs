//! Stages that misbehave on purpose, for the engine's end-to-end tests:
//! `test.source`, `test.panic`, `test.fail`, `test.sleep` and `test.slow_sink`.

use std::sync::Mutex;
use std::time::Duration;

use mindscan_sdk::prelude::*;

/// Key of item `i` of `test.source`.
fn item_key(i: u64) -> String {
    format!("item-{i:05}")
}

fn sleep_ms(ms: u64) {
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

// ---------------------------------------------------------------- test.source

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    /// Number of items to emit (split over the workers).
    pub count: u64,
    /// Size of each item's data, in MiB (u8 voxels, every page touched).
    #[serde(default = "one")]
    pub mib: u64,
    /// Pause before each item.
    #[serde(default)]
    pub delay_ms: u64,
    /// At the end, write a JSON report here: `max_live` (most of this source's buffers alive at
    /// once, counting the one being emitted) and `max_incomplete` (most earlier items not yet
    /// complete when an item was emitted).
    pub live_report: Option<String>,
}

/// Buffers of `test.source` still alive somewhere in the pipeline.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Attached to each buffer `test.source` emits; counts it out when the last handle drops.
struct LiveGuard;

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn one() -> u64 {
    1
}

/// Emits `count` volumes of shape `[256, 256, 16 * mib]` (u8), keys `item-00000`...
pub struct Source(SourceParams);

impl Stage for Source {
    type Params = SourceParams;
    const NAME: &'static str = "test.source";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str = "Emit `count` synthetic volumes of `mib` MiB";

    fn new(p: SourceParams, _host: &Host) -> Result<Self> {
        Ok(Source(p))
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let (w, n) = (ctx.worker_index() as u64, ctx.worker_count() as u64);
        let (mut emitted, mut completed, mut max_live, mut max_incomplete) = (0u64, 0u64, 0, 0);
        for i in (w..self.0.count).step_by(n as usize) {
            sleep_ms(self.0.delay_ms);
            if ctx.is_cancelled() {
                break;
            }
            out.wait_ready()?;
            completed += out.take_completed().len() as u64;
            // Completions are shared by every worker of the stage: only a one-worker count is exact.
            max_incomplete = max_incomplete.max(emitted.saturating_sub(completed));
            let shape = [256, 256, 16 * self.0.mib.max(1) as usize];
            // A non-zero fill writes every page, so the memory is really resident.
            let data = vec![(i % 200) as u8 + 1; shape.iter().product()];
            let mut tensor = Tensor::volume(data, &shape);
            if self.0.live_report.is_some() {
                max_live = max_live.max(LIVE.fetch_add(1, SeqCst) + 1);
                tensor.attach_guard(std::sync::Arc::new(LiveGuard));
            }
            let mut item = Item::new(kinds::VOLUME, &item_key(i)).with_tensor("data", tensor);
            item.meta.set(keys::INDEX, i);
            item.meta.set("stem", item_key(i));
            item.meta
                .set(keys::SOURCE, format!("synthetic/{}", item_key(i)));
            let mut affine = [[0.0; 4]; 4];
            for (d, row) in affine.iter_mut().enumerate() {
                row[d] = 1.0;
            }
            item.meta.set_affine(&affine);
            item.meta.set(keys::SPACING, [1.0, 1.0, 1.0]);
            out.emit(item)?;
            emitted += 1;
        }
        if let Some(path) = &self.0.live_report {
            let report =
                serde_json::json!({"max_live": max_live, "max_incomplete": max_incomplete});
            std::fs::write(path, report.to_string())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- test.panic / test.fail

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EveryParams {
    /// Items whose `index` is a multiple of this misbehave.
    pub every: u64,
}

fn hits(item: &Item, every: u64) -> bool {
    let index: u64 = item.meta.get(keys::INDEX).unwrap_or(0);
    every > 0 && index.is_multiple_of(every)
}

/// Panics on items whose index % `every` == 0; passes the others on.
pub struct Panic(u64);

impl Stage for Panic {
    type Params = EveryParams;
    const NAME: &'static str = "test.panic";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str = "Panic on every `every`-th item";

    fn new(p: EveryParams, _host: &Host) -> Result<Self> {
        Ok(Panic(p.every))
    }

    fn process(&self, _ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        if hits(&item, self.0) {
            panic!("deliberate panic on {}", item.key());
        }
        out.emit(item)
    }
}

/// Returns an error for items whose index % `every` == 0; passes the others on.
pub struct Fail(u64);

impl Stage for Fail {
    type Params = EveryParams;
    const NAME: &'static str = "test.fail";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str = "Fail on every `every`-th item";

    fn new(p: EveryParams, _host: &Host) -> Result<Self> {
        Ok(Fail(p.every))
    }

    fn process(&self, _ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        if hits(&item, self.0) {
            bail!("deliberate failure on {}", item.key());
        }
        out.emit(item)
    }
}

// ---------------------------------------------------------------- test.sleep

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepParams {
    /// Items whose `index` is a multiple of this sleep; the others pass at once.
    pub every: u64,
    /// How long a sleeping item sleeps, at most.
    pub ms: u64,
    /// Check `ctx.is_cancelled()` every 5 ms while sleeping, and stop with an error saying so
    /// when it turns true; `false` sleeps through (a plugin that never checks).
    #[serde(default = "yes")]
    pub check_cancel: bool,
}

fn yes() -> bool {
    true
}

/// Sleeps on items whose index % `every` == 0 (watching cancellation unless told not to),
/// then passes them on.
pub struct Sleep(SleepParams);

impl Stage for Sleep {
    type Params = SleepParams;
    const NAME: &'static str = "test.sleep";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str = "Sleep on every `every`-th item, watching cancellation";

    fn new(p: SleepParams, _host: &Host) -> Result<Self> {
        Ok(Sleep(p))
    }

    fn process(&self, ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        if hits(&item, self.0.every) {
            let start = std::time::Instant::now();
            let total = Duration::from_millis(self.0.ms);
            while start.elapsed() < total {
                if self.0.check_cancel && ctx.is_cancelled() {
                    bail!("{} saw is_cancelled turn true while sleeping", item.key());
                }
                std::thread::sleep(Duration::from_millis(5).min(total));
            }
        }
        out.emit(item)
    }
}

// ---------------------------------------------------------------- test.slow_sink

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkParams {
    /// Pause per item.
    #[serde(default)]
    pub delay_ms: u64,
    /// JSON report written at finish: items, keys, bytes, peak_rss_kib.
    pub report: String,
}

#[derive(Default)]
struct Seen {
    keys: Vec<String>,
    bytes: u64,
}

/// Sleeps per item; at finish writes a JSON report with what it saw and the process peak RSS.
pub struct SlowSink {
    delay_ms: u64,
    report: String,
    seen: Mutex<Seen>,
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Stage for SlowSink {
    type Params = SinkParams;
    const NAME: &'static str = "test.slow_sink";
    const ROLE: Role = Role::Sink;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &[];
    const DESCRIPTION: &'static str = "Slow sink that reports items seen and peak RSS";

    fn new(p: SinkParams, _host: &Host) -> Result<Self> {
        Ok(SlowSink {
            delay_ms: p.delay_ms,
            report: p.report,
            seen: Mutex::new(Seen::default()),
        })
    }

    fn process(&self, _ctx: &Context, item: Item, _out: &mut Emitter) -> Result<()> {
        let bytes = item.data()?.dense_bytes()?.len() as u64;
        sleep_ms(self.delay_ms);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.keys.push(item.key().to_string());
        seen.bytes += bytes;
        Ok(())
    }

    fn finish(&self, _ctx: &Context, _out: &mut Emitter) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.keys.sort();
        let report = serde_json::json!({
            "items": seen.keys.len(),
            "keys": seen.keys,
            "bytes": seen.bytes,
            "peak_rss_kib": peak_rss_kib(),
        });
        std::fs::write(&self.report, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("{}: cannot write report", self.report))
    }
}

export_plugin!(
    name: "faulty",
    stages: [Source, Panic, Fail, Sleep, SlowSink],
);
