//! The host side of the ABI: creates stage instances and calls them, turning the plugin's
//! callbacks (emit, item errors, logs, cancellation checks) into Rust calls.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use mindscan_sdk::abi::{
    self, ABI_VERSION, CallContext, EmitFn, ErrorSink, HostContext, Outcome, Status, StrRef,
};
use mindscan_sdk::item::{FfiItemBuf, item_from_ffi};
use mindscan_sdk::{Item, seed};

use crate::registry::StageType;

/// Why a run is stopping: Ctrl-C / SIGTERM (`cancel`), or a stage's `on_error: fail`
/// (`failed`). Plugins see either as "cancelled": both mean "stop producing".
pub struct StopFlags {
    pub cancel: Arc<AtomicBool>,
    pub failed: AtomicBool,
}

impl StopFlags {
    pub fn stopping(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }
}

/// Run-wide services handed to plugins. Lives in an `Arc` that every stage instance holds, so
/// the context's address stays valid while any plugin can use it.
pub struct HostServices {
    /// Boxed: `ctx.data` points to it.
    stop: Box<StopFlags>,
    /// Backs `ctx.state_dir`.
    state_dir_text: Box<str>,
    ctx: HostContext,
}

// SAFETY: `ctx.data` points to the StopFlags kept alive (at a fixed address) by `stop`.
unsafe impl Send for HostServices {}
unsafe impl Sync for HostServices {}

impl HostServices {
    pub fn new(
        cancel: Arc<AtomicBool>,
        cuda_device: Option<i32>,
        state_dir: &std::path::Path,
        shard: mindscan_sdk::shard::Shard,
    ) -> Arc<HostServices> {
        let stop = Box::new(StopFlags {
            cancel,
            failed: AtomicBool::new(false),
        });
        let data = &*stop as *const StopFlags as *mut c_void;
        let state_dir: Box<str> = state_dir.to_string_lossy().into();
        Arc::new(HostServices {
            stop,
            ctx: HostContext {
                state_dir: StrRef::new(&state_dir),
                abi_version: ABI_VERSION,
                data,
                log: host_log,
                is_cancelled: host_is_cancelled,
                cuda_device: cuda_device.unwrap_or(-1),
                shard_index: shard.index,
                shard_count: shard.count,
            },
            state_dir_text: state_dir,
        })
    }

    /// The run's stop flags (the runtime sets `failed`).
    pub fn stop(&self) -> &StopFlags {
        &self.stop
    }

    pub fn context(&self) -> *const HostContext {
        &self.ctx
    }
}

unsafe extern "C" fn host_log(_data: *mut c_void, level: u32, target: StrRef, message: StrRef) {
    let _ = catch_unwind(|| {
        // SAFETY: borrowed for the call.
        let (target, msg) = unsafe { (target.as_str(), message.as_str()) };
        match level {
            abi::LOG_ERROR => tracing::error!(stage = target, "{msg}"),
            abi::LOG_WARN => tracing::warn!(stage = target, "{msg}"),
            abi::LOG_INFO => tracing::info!(stage = target, "{msg}"),
            abi::LOG_DEBUG => tracing::debug!(stage = target, "{msg}"),
            _ => tracing::trace!(stage = target, "{msg}"),
        }
    });
}

unsafe extern "C" fn host_is_cancelled(data: *mut c_void) -> bool {
    // SAFETY: `data` is the StopFlags owned by the HostServices of this context.
    let flags = unsafe { &*(data as *const StopFlags) };
    flags.stopping()
}

/// What a `process` call with a time limit sees as "cancelled": the run stopping, or its
/// deadline passed.
struct CallFlags<'a> {
    stop: &'a StopFlags,
    deadline: Instant,
}

unsafe extern "C" fn call_is_cancelled(data: *mut c_void) -> bool {
    // SAFETY: `data` is the CallFlags of a `process` call, alive for the call.
    let flags = unsafe { &*(data as *const CallFlags<'_>) };
    flags.stop.stopping() || Instant::now() >= flags.deadline
}

/// Where a stage's outputs go.
pub trait Outlet: Sync {
    /// Takes an item the stage produced. Returns `Cancelled` to ask the stage to stop.
    fn emit(&self, item: Item) -> Status;
    /// A piece of work failed inside the stage; apply the error policy.
    fn item_error(&self, key: &str, source: &str, message: &str) -> Status;
    /// Sources: waits until one more item may be in flight.
    fn wait_ready(&self) -> Status {
        Status::Ok
    }
    /// Sources: hands over the items whose processing ended since the last call.
    fn take_completed(&self, _visit: &mut dyn FnMut(&str, Outcome, &str)) {}
}

unsafe extern "C" fn outlet_wait_ready(ctx: *mut c_void) -> Status {
    // SAFETY: as in `outlet_emit`.
    let outlet: &dyn Outlet = unsafe { *(ctx as *const &dyn Outlet) };
    catch_unwind(AssertUnwindSafe(|| outlet.wait_ready())).unwrap_or(Status::Panic)
}

unsafe extern "C" fn outlet_take_completed(
    ctx: *mut c_void,
    visitor: *mut c_void,
    visit: abi::CompletedVisitor,
) -> Status {
    // SAFETY: as in `outlet_emit`; `visit` is the plugin's callback for `visitor`.
    let outlet: &dyn Outlet = unsafe { *(ctx as *const &dyn Outlet) };
    catch_unwind(AssertUnwindSafe(|| {
        outlet.take_completed(&mut |key, outcome, error| unsafe {
            visit(
                visitor,
                StrRef::new(key),
                outcome as u32,
                StrRef::new(error),
            )
        })
    }))
    .map(|()| Status::Ok)
    .unwrap_or(Status::Panic)
}

unsafe extern "C" fn outlet_emit(ctx: *mut c_void, item: *const abi::FfiItem) -> Status {
    // SAFETY: `ctx` is a `&&dyn Outlet` built in `emit_fn`, valid for the call.
    let outlet: &dyn Outlet = unsafe { *(ctx as *const &dyn Outlet) };
    // Take ownership first so the references are released even if the outlet panics.
    let item = unsafe { item_from_ffi(item, true) };
    catch_unwind(AssertUnwindSafe(|| match item {
        Ok(item) => outlet.emit(item),
        Err(e) => outlet.item_error("", "", &format!("malformed item from plugin: {e:#}")),
    }))
    .unwrap_or(Status::Panic)
}

unsafe extern "C" fn outlet_item_error(
    ctx: *mut c_void,
    key: StrRef,
    source: StrRef,
    message: StrRef,
) -> Status {
    // SAFETY: as in `outlet_emit`; strings borrowed for the call.
    let outlet: &dyn Outlet = unsafe { *(ctx as *const &dyn Outlet) };
    let (k, s, m) = unsafe { (key.as_str(), source.as_str(), message.as_str()) };
    catch_unwind(AssertUnwindSafe(|| outlet.item_error(k, s, m))).unwrap_or(Status::Panic)
}

fn emit_fn(outlet: &&dyn Outlet) -> EmitFn {
    EmitFn {
        ctx: outlet as *const &dyn Outlet as *mut c_void,
        emit: outlet_emit,
        item_error: outlet_item_error,
        wait_ready: outlet_wait_ready,
        take_completed: outlet_take_completed,
    }
}

unsafe extern "C" fn write_error(ctx: *mut c_void, message: StrRef) {
    // SAFETY: `ctx` is the `String` passed in `call`; message borrowed.
    let s = unsafe { &mut *(ctx as *mut String) };
    s.push_str(unsafe { message.as_str() });
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    Failed(String),
    Panicked(String),
    Cancelled,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Failed(m) => f.write_str(m),
            CallError::Panicked(m) => write!(f, "plugin {m}"),
            CallError::Cancelled => f.write_str("cancelled"),
        }
    }
}

fn status_result(status: Status, msg: String) -> Result<(), CallError> {
    match status {
        Status::Ok => Ok(()),
        Status::Cancelled => Err(CallError::Cancelled),
        Status::Panic => Err(CallError::Panicked(msg)),
        Status::Error => Err(CallError::Failed(msg)),
    }
}

/// A live stage instance inside a plugin. Destroyed (in the plugin) on drop.
pub struct StageInstance {
    pub ty: StageType,
    raw: *mut c_void,
    host: Arc<HostServices>,
    stage_id: String,
    stage_seed: u64,
    pipeline_seed: u64,
}

// SAFETY: stages are required by the ABI to be thread-safe (one instance, many workers).
unsafe impl Send for StageInstance {}
unsafe impl Sync for StageInstance {}

impl StageInstance {
    pub fn create(
        ty: &StageType,
        stage_id: &str,
        params_json: &str,
        host: Arc<HostServices>,
        pipeline_seed: u64,
    ) -> Result<StageInstance> {
        let d = ty.descriptor();
        let mut msg = String::new();
        let mut raw: *mut c_void = std::ptr::null_mut();
        let err = ErrorSink {
            ctx: &mut msg as *mut String as *mut c_void,
            write: write_error,
        };
        // SAFETY: valid descriptor; the host context outlives the instance (Arc held).
        let status = unsafe { (d.create)(host.context(), StrRef::new(params_json), &mut raw, err) };
        if let Err(e) = status_result(status, msg) {
            bail!("stage '{stage_id}' ({}): {e}", ty.name);
        }
        if raw.is_null() {
            bail!(
                "stage '{stage_id}' ({}): plugin returned no instance",
                ty.name
            );
        }
        Ok(StageInstance {
            ty: ty.clone(),
            raw,
            host,
            stage_id: stage_id.to_string(),
            stage_seed: seed::derive_seed(pipeline_seed, stage_id, ""),
            pipeline_seed,
        })
    }

    fn call_ctx(&self, worker: usize, workers: usize, seed: u64) -> CallContext {
        CallContext {
            host: self.host.context(),
            stage_id: StrRef::new(&self.stage_id),
            worker_index: worker as u32,
            worker_count: workers as u32,
            seed,
        }
    }

    pub fn produce(
        &self,
        worker: usize,
        workers: usize,
        out: &dyn Outlet,
    ) -> Result<(), CallError> {
        let call = self.call_ctx(worker, workers, self.stage_seed);
        let mut msg = String::new();
        let err = ErrorSink {
            ctx: &mut msg as *mut String as *mut c_void,
            write: write_error,
        };
        // SAFETY: valid instance and callbacks for the call.
        let status = unsafe { (self.ty.descriptor().produce)(self.raw, &call, emit_fn(&out), err) };
        status_result(status, msg)
    }

    /// Calls `process` on one item. With a `deadline`, the call gets its own host context
    /// whose `is_cancelled` also turns true once the deadline has passed (the run-wide context
    /// is left alone: other items of the stage keep their own time).
    pub fn process(
        &self,
        item: &Item,
        worker: usize,
        workers: usize,
        out: &dyn Outlet,
        deadline: Option<Instant>,
    ) -> Result<(), CallError> {
        let seed = seed::derive_seed(self.pipeline_seed, &self.stage_id, item.key());
        let mut call = self.call_ctx(worker, workers, seed);
        let flags;
        let timed_ctx;
        if let Some(deadline) = deadline {
            flags = CallFlags {
                stop: self.host.stop(),
                deadline,
            };
            let shared = &self.host.ctx;
            timed_ctx = HostContext {
                abi_version: shared.abi_version,
                data: &flags as *const CallFlags<'_> as *mut c_void,
                log: shared.log,
                is_cancelled: call_is_cancelled,
                cuda_device: shared.cuda_device,
                state_dir: StrRef::new(&self.host.state_dir_text),
                shard_index: shared.shard_index,
                shard_count: shared.shard_count,
            };
            // Valid for the call: `timed_ctx` and `flags` live until this function returns.
            call.host = &timed_ctx;
        }
        let buf = FfiItemBuf::new(item);
        let mut msg = String::new();
        let err = ErrorSink {
            ctx: &mut msg as *mut String as *mut c_void,
            write: write_error,
        };
        // SAFETY: the item buffer is borrowed for the call (the plugin retains what it keeps);
        // `buf` releases our references when dropped.
        let status = unsafe {
            (self.ty.descriptor().process)(self.raw, &call, buf.as_ptr(), emit_fn(&out), err)
        };
        drop(buf);
        status_result(status, msg)
    }

    pub fn finish(&self, out: &dyn Outlet) -> Result<(), CallError> {
        let call = self.call_ctx(0, 1, self.stage_seed);
        let mut msg = String::new();
        let err = ErrorSink {
            ctx: &mut msg as *mut String as *mut c_void,
            write: write_error,
        };
        // SAFETY: valid instance and callbacks for the call.
        let status = unsafe { (self.ty.descriptor().finish)(self.raw, &call, emit_fn(&out), err) };
        status_result(status, msg)
    }
}

impl Drop for StageInstance {
    fn drop(&mut self) {
        // SAFETY: created by this descriptor's `create`, destroyed once. The plugin library stays
        // loaded: `self.ty` holds an Arc to it.
        unsafe { (self.ty.descriptor().destroy)(self.raw) };
    }
}

/// Validates parameters against a stage's JSON Schema; returns one message per problem with the
/// JSON pointer of the offending value.
pub fn check_params(
    schema: &serde_json::Value,
    params: &serde_json::Value,
) -> Vec<(String, String)> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return vec![(String::new(), format!("stage schema is invalid: {e}"))],
    };
    validator
        .iter_errors(params)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

pub fn anyhow_call(e: CallError) -> anyhow::Error {
    anyhow!("{e}")
}
