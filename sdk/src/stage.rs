//! The safe API a plugin author implements: [`Stage`], with [`Context`] and [`Emitter`].

use anyhow::Result;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::abi::{
    CallContext, EmitFn, HostContext, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN, Outcome, Role,
    Status, StrRef,
};
use crate::item::{FfiItemBuf, Item};

/// A stage type. One instance is created per pipeline stage and shared by its workers.
///
/// Sources implement [`Stage::produce`]; transforms and sinks implement [`Stage::process`].
/// Return errors with `anyhow` (`bail!`, `?`, `.context(..)`); a panic is caught at the boundary
/// and becomes an error for the item.
pub trait Stage: Send + Sync + Sized + 'static {
    /// Parameters from the pipeline's `params:` map. Use `#[serde(deny_unknown_fields)]`; the
    /// JSON Schema derived from this type is checked by the host before the run starts.
    type Params: DeserializeOwned + JsonSchema;

    /// Dotted name used in pipelines, e.g. `nifti.read`.
    const NAME: &'static str;
    const ROLE: Role;
    /// Item kinds accepted (empty for sources).
    const INPUTS: &'static [&'static str];
    /// Item kinds produced (empty for sinks); `"same"` means "the kind that came in".
    const OUTPUTS: &'static [&'static str];
    const DESCRIPTION: &'static str;

    fn new(params: Self::Params, host: &Host) -> Result<Self>;

    /// Sources: emit items until the input is exhausted or `out.emit` reports cancellation.
    /// Called once per worker: split the work with `ctx.worker_index()`/`ctx.worker_count()`.
    fn produce(&self, _ctx: &Context, _out: &mut Emitter) -> Result<()> {
        anyhow::bail!("stage {} is not a source", Self::NAME)
    }

    /// Transforms and sinks: handle one item.
    fn process(&self, _ctx: &Context, _item: Item, _out: &mut Emitter) -> Result<()> {
        anyhow::bail!("stage {} takes no input", Self::NAME)
    }

    /// Called once when every worker is done (flush manifests, write summaries).
    fn finish(&self, _ctx: &Context, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }
}

/// Host services available for the life of a stage instance.
pub struct Host {
    raw: *const HostContext,
}

// SAFETY: the host guarantees the context outlives the stage and its callbacks are thread-safe.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Host {
    /// # Safety
    /// `raw` must be a valid `HostContext` that outlives the returned value.
    pub unsafe fn from_raw(raw: *const HostContext) -> Host {
        Host { raw }
    }

    fn ctx(&self) -> &HostContext {
        // SAFETY: valid for our lifetime (constructor contract).
        unsafe { &*self.raw }
    }

    pub fn log(&self, level: u32, target: &str, msg: &str) {
        let c = self.ctx();
        // SAFETY: valid callback per the ABI.
        unsafe { (c.log)(c.data, level, StrRef::new(target), StrRef::new(msg)) }
    }

    pub fn is_cancelled(&self) -> bool {
        let c = self.ctx();
        // SAFETY: valid callback per the ABI.
        unsafe { (c.is_cancelled)(c.data) }
    }

    /// Removes the temporary files a killed run left under `dir` (see
    /// [`crate::fsio::remove_stale_temps`]), saying so in the log. Sinks call it on creation.
    pub fn remove_stale_temps(&self, stage: &str, dir: &std::path::Path) {
        let n = crate::fsio::remove_stale_temps(dir);
        if n > 0 {
            self.log(
                LOG_INFO,
                stage,
                &format!("removed {n} temporary file(s) left by an interrupted run"),
            );
        }
    }

    /// Folder for durable state given by the pipeline (`state_dir`); keep yours in
    /// `state_dir().join(ctx.stage_id())`.
    pub fn state_dir(&self) -> std::path::PathBuf {
        // SAFETY: the string lives as long as the context.
        std::path::PathBuf::from(unsafe { self.ctx().state_dir.as_str() })
    }

    /// This process's shard of the inputs ([`Shard::ALL`](crate::shard::Shard::ALL) when the
    /// run is not split).
    pub fn shard(&self) -> crate::shard::Shard {
        let c = self.ctx();
        crate::shard::Shard::new(c.shard_index, c.shard_count).unwrap_or(crate::shard::Shard::ALL)
    }

    /// CUDA device chosen by the host, if the run uses one.
    pub fn cuda_device(&self) -> Option<i32> {
        let d = self.ctx().cuda_device;
        (d >= 0).then_some(d)
    }
}

/// Per-call context: which stage and worker, the seed, logging and cancellation.
pub struct Context<'a> {
    raw: &'a CallContext,
    host: Host,
}

impl<'a> Context<'a> {
    /// # Safety
    /// `raw` and its host pointer must be valid for `'a`.
    pub unsafe fn from_raw(raw: &'a CallContext) -> Context<'a> {
        Context {
            raw,
            // SAFETY: forwarded contract.
            host: unsafe { Host::from_raw(raw.host) },
        }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn stage_id(&self) -> &str {
        // SAFETY: borrowed for the call.
        unsafe { self.raw.stage_id.as_str() }
    }
    pub fn worker_index(&self) -> usize {
        self.raw.worker_index as usize
    }
    pub fn worker_count(&self) -> usize {
        self.raw.worker_count.max(1) as usize
    }
    /// Deterministic seed of this call (per item for `process`).
    pub fn seed(&self) -> u64 {
        self.raw.seed
    }
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }
    pub fn error(&self, msg: &str) {
        self.host.log(LOG_ERROR, self.stage_id(), msg)
    }
    pub fn warn(&self, msg: &str) {
        self.host.log(LOG_WARN, self.stage_id(), msg)
    }
    pub fn info(&self, msg: &str) {
        self.host.log(LOG_INFO, self.stage_id(), msg)
    }
    pub fn debug(&self, msg: &str) {
        self.host.log(LOG_DEBUG, self.stage_id(), msg)
    }
}

/// Error returned by [`Emitter::emit`] when the run is stopping; return it (with `?`) so the
/// stage ends quickly.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled: the run is stopping")
    }
}
impl std::error::Error for Cancelled {}

/// How the processing of one emitted item ended (see [`Emitter::take_completions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub key: String,
    pub outcome: Outcome,
    /// For [`Outcome::Failed`]: the first error a stage reported for the item.
    pub error: Option<String>,
}

/// Sends items downstream. Blocks while downstream queues are full (backpressure).
pub struct Emitter {
    raw: EmitFn,
}

impl Emitter {
    pub fn from_raw(raw: EmitFn) -> Emitter {
        Emitter { raw }
    }

    pub fn emit(&mut self, item: Item) -> Result<()> {
        let mut buf = FfiItemBuf::new(&item);
        drop(item);
        // SAFETY: valid callback per the ABI; the buffer lives across the call.
        let status = unsafe { (self.raw.emit)(self.raw.ctx, buf.as_ptr()) };
        // The receiver owns the tensor references once the call returns (whatever the status).
        buf.mark_transferred();
        match status {
            Status::Ok => Ok(()),
            Status::Cancelled => Err(Cancelled.into()),
            s => anyhow::bail!("emit failed ({s:?})"),
        }
    }

    /// Sources: waits until one more item may be in flight (the stage's `max_in_flight`; an item
    /// counts until the tensors it carried are released everywhere, or until it is complete).
    /// Call it before reading the next input so memory holds at most that many items; `emit`
    /// waits anyway. Returns [`Cancelled`] when the run is stopping.
    pub fn wait_ready(&mut self) -> Result<()> {
        // SAFETY: valid callback per the ABI.
        match unsafe { (self.raw.wait_ready)(self.raw.ctx) } {
            Status::Ok => Ok(()),
            _ => Err(Cancelled.into()),
        }
    }

    /// Sources: the items emitted by this stage whose processing ended in every branch of the
    /// pipeline since the last call (key and outcome). The host records completions from the
    /// first call on, so call it once before emitting when you need them.
    pub fn take_completed(&mut self) -> Vec<(String, Outcome)> {
        self.take_completions()
            .into_iter()
            .map(|c| (c.key, c.outcome))
            .collect()
    }

    /// [`Emitter::take_completed`] with, for failed items, the first error reported for them
    /// (what a queue hands to its dead-letter subject).
    pub fn take_completions(&mut self) -> Vec<Completion> {
        unsafe extern "C" fn visit(
            v: *mut std::ffi::c_void,
            key: StrRef,
            outcome: u32,
            error: StrRef,
        ) {
            // SAFETY: `v` is the Vec passed below; the strings are borrowed for the call.
            let out = unsafe { &mut *(v as *mut Vec<Completion>) };
            let error = unsafe { error.as_str() };
            out.push(Completion {
                key: unsafe { key.as_str() }.to_string(),
                outcome: Outcome::from_u32(outcome),
                error: (!error.is_empty()).then(|| error.to_string()),
            });
        }
        let mut out: Vec<Completion> = Vec::new();
        // SAFETY: valid callback per the ABI; `out` outlives the call.
        unsafe {
            (self.raw.take_completed)(
                self.raw.ctx,
                &mut out as *mut Vec<Completion> as *mut std::ffi::c_void,
                visit,
            )
        };
        out
    }

    /// Reports that one piece of work failed (e.g. one unreadable file of a folder) without
    /// failing the whole call. The host applies the stage's `on_error` policy: with `skip` or
    /// `dead_letter` this returns `Ok` and the stage goes on; with `fail` it returns
    /// [`Cancelled`] so the stage stops.
    pub fn item_error(
        &mut self,
        item_key: &str,
        source: &str,
        error: &anyhow::Error,
    ) -> Result<()> {
        let msg = format!("{error:#}");
        // SAFETY: valid callback per the ABI; strings borrowed for the call.
        let status = unsafe {
            (self.raw.item_error)(
                self.raw.ctx,
                StrRef::new(item_key),
                StrRef::new(source),
                StrRef::new(&msg),
            )
        };
        match status {
            Status::Ok => Ok(()),
            _ => Err(Cancelled.into()),
        }
    }
}
