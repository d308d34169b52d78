//! The C ABI between the Mindscan host and stage plugins.
//!
//! Everything here is `#[repr(C)]` and versioned by [`ABI_VERSION`]. A plugin library exports one
//! symbol, [`ENTRY_SYMBOL`], returning a `*const PluginDescriptor` whose first field is the ABI
//! version; the host reads that field before anything else and refuses other versions.
//!
//! Ownership rules (the same for the host and for plugins):
//! - Strings ([`StrRef`]) and shape/stride arrays are borrowed for the duration of the call that
//!   passes them; the receiver copies what it keeps.
//! - An item passed *into* `process` is borrowed for the call. To keep one of its tensors, call
//!   the tensor's `retain(owner)` and later `release(owner)` exactly once.
//! - An item passed *out* through [`EmitFn`] transfers one reference of each tensor's owner to the
//!   receiver, which calls `release(owner)` exactly once when done, whatever status it returns.
//! - Errors are reported through [`ErrorSink`], never by unwinding: every entry point catches
//!   panics and returns [`Status::Panic`].
//! - No global state crosses the boundary: logging and cancellation reach a plugin through the
//!   [`HostContext`] passed to every call.

use std::ffi::c_void;

/// Bumped on every incompatible change of any type in this module.
pub const ABI_VERSION: u32 = 4;

/// Name of the symbol a plugin library exports (`extern "C" fn() -> *const PluginDescriptor`).
pub const ENTRY_SYMBOL: &str = "mindscan_plugin_entry";

/// Signature of the exported entry symbol.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// A borrowed UTF-8 string (pointer + length, not NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StrRef {
    pub ptr: *const u8,
    pub len: usize,
}

impl StrRef {
    pub const EMPTY: StrRef = StrRef {
        ptr: std::ptr::null(),
        len: 0,
    };

    pub fn new(s: &str) -> StrRef {
        StrRef {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` valid UTF-8 bytes that outlive `'a`.
    pub unsafe fn as_str<'a>(self) -> &'a str {
        if self.ptr.is_null() || self.len == 0 {
            return "";
        }
        // SAFETY: guaranteed by the caller; invalid UTF-8 is replaced by checking below.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).unwrap_or("<invalid utf-8>")
    }
}

/// Result of every plugin entry point and callback.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// The call failed; a message was written to the [`ErrorSink`].
    Error = 1,
    /// The call panicked; the panic message was written to the [`ErrorSink`].
    Panic = 2,
    /// The run is stopping (Ctrl-C or a downstream stage is gone): stop producing.
    Cancelled = 3,
}

/// What a stage does in the graph.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Source = 0,
    Transform = 1,
    Sink = 2,
}

impl Role {
    pub fn from_u32(v: u32) -> Option<Role> {
        match v {
            0 => Some(Role::Source),
            1 => Some(Role::Transform),
            2 => Some(Role::Sink),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// Receives an error message from the callee (the message is borrowed for the call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ErrorSink {
    pub ctx: *mut c_void,
    pub write: unsafe extern "C" fn(ctx: *mut c_void, message: StrRef),
}

/// How the processing of an item emitted by a source ended, over every branch of the graph.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every stage that received the item, or an item derived from it, returned without error.
    Done = 0,
    /// A stage with `on_error: skip` or `dead_letter` reported an error for the item or for
    /// an item derived from it.
    Failed = 1,
    /// The run stopped (a `fail` error, for this item or another) before the item was fully
    /// processed: a source may process it again on its next run.
    Abandoned = 2,
}

impl Outcome {
    pub fn from_u32(v: u32) -> Outcome {
        match v {
            0 => Outcome::Done,
            1 => Outcome::Failed,
            _ => Outcome::Abandoned,
        }
    }
}

/// Called by [`EmitFn::take_completed`] once per completed item: its key, an [`Outcome`], and
/// for `Failed` the first error reported for it (empty otherwise). The error was added in ABI 4.
pub type CompletedVisitor =
    unsafe extern "C" fn(visitor: *mut c_void, key: StrRef, outcome: u32, error: StrRef);

/// Receives what a stage produces: items, and per-item errors (a file that could not be read by
/// a source, a slice that failed) that the host handles with the stage's `on_error` policy.
/// `emit` and `item_error` return [`Status::Cancelled`] when the stage should stop.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EmitFn {
    pub ctx: *mut c_void,
    pub emit: unsafe extern "C" fn(ctx: *mut c_void, item: *const FfiItem) -> Status,
    pub item_error: unsafe extern "C" fn(
        ctx: *mut c_void,
        item_key: StrRef,
        source: StrRef,
        message: StrRef,
    ) -> Status,
    /// Sources: blocks until the stage may put one more item in flight (the stage's
    /// `max_in_flight`; an emitted item counts until every handle of its tensors is released, or
    /// until it is complete if sooner), so a source can wait *before* reading its next input. `emit` waits the
    /// same way. Returns [`Status::Cancelled`] when the run is stopping. Others: returns at once.
    pub wait_ready: unsafe extern "C" fn(ctx: *mut c_void) -> Status,
    /// Sources: calls `visit` for every item emitted by this stage (any worker) whose processing
    /// has ended in every branch since the previous call, with its key and an [`Outcome`].
    /// Completions are recorded from the first call on, so a source that never asks costs
    /// nothing. "Ended" means every stage returned from `process` for the item and all items
    /// derived from it: sinks that write in `process` have written by then.
    pub take_completed: unsafe extern "C" fn(
        ctx: *mut c_void,
        visitor: *mut c_void,
        visit: CompletedVisitor,
    ) -> Status,
}

/// Log levels for [`HostContext::log`].
pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// Services the host offers a plugin. Valid for the whole life of a stage instance.
#[repr(C)]
pub struct HostContext {
    pub abi_version: u32,
    pub data: *mut c_void,
    pub log: unsafe extern "C" fn(data: *mut c_void, level: u32, target: StrRef, message: StrRef),
    pub is_cancelled: unsafe extern "C" fn(data: *mut c_void) -> bool,
    /// CUDA device ordinal chosen by the host, or -1 when the run uses the CPU.
    pub cuda_device: i32,
    /// Folder for durable state (journals); a stage keeps its own in `<state_dir>/<stage id>`.
    pub state_dir: StrRef,
    /// This process's shard of the inputs (`mindscan run --shard INDEX/COUNT`; 0 of 1 when
    /// the run is not split): sources keep the inputs `shard::Shard::keeps`, sinks name their
    /// once-per-run files with `Shard::part_name`. Added in ABI 3.
    pub shard_index: u32,
    pub shard_count: u32,
}

/// Per-call information.
#[repr(C)]
pub struct CallContext {
    /// Valid for the call only: a `process` call under a stage `timeout` gets its own, whose
    /// `is_cancelled` also turns true when the item's time is up.
    pub host: *const HostContext,
    /// The stage's id in the pipeline (not its type name).
    pub stage_id: StrRef,
    pub worker_index: u32,
    pub worker_count: u32,
    /// For `process`: the item's seed, derived from the pipeline seed, the stage id and the item
    /// key. For `produce`/`finish`: the stage's seed.
    pub seed: u64,
}

/// Device of a tensor's data, as in DLPack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiDevice {
    /// 1 = CPU, 2 = CUDA (DLPack's `kDLCPU`, `kDLCUDA`).
    pub device_type: i32,
    pub device_id: i32,
}

/// Element type, as in DLPack: code 0 = int, 1 = uint, 2 = float, 5 = complex, 6 = bool.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiDType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// A strided n-dimensional array, laid out like DLPack's `DLTensor` plus an owner.
#[repr(C)]
pub struct FfiTensor {
    /// Start of the allocation (host or device pointer); the first element is at
    /// `data + byte_offset`.
    pub data: *mut c_void,
    pub device: FfiDevice,
    pub ndim: i32,
    pub dtype: FfiDType,
    pub shape: *const i64,
    /// Strides in elements (never null in this ABI).
    pub strides: *const i64,
    pub byte_offset: u64,
    /// Total bytes reachable from `data` (bounds for the receiver's checks).
    pub byte_len: u64,
    pub owner: *mut c_void,
    pub retain: unsafe extern "C" fn(owner: *mut c_void),
    pub release: unsafe extern "C" fn(owner: *mut c_void),
}

#[repr(C)]
pub struct FfiNamedTensor {
    pub name: StrRef,
    pub tensor: FfiTensor,
}

/// One unit of work flowing between stages.
#[repr(C)]
pub struct FfiItem {
    /// Item kind, e.g. `volume` or `image`.
    pub kind: StrRef,
    /// Metadata as a JSON object (affine, spacing, source path, series, frame, seed, ...).
    pub meta_json: StrRef,
    pub tensors: *const FfiNamedTensor,
    pub n_tensors: usize,
}

pub type CreateFn = unsafe extern "C" fn(
    host: *const HostContext,
    params_json: StrRef,
    out_stage: *mut *mut c_void,
    err: ErrorSink,
) -> Status;
pub type ProduceFn = unsafe extern "C" fn(
    stage: *mut c_void,
    call: *const CallContext,
    emit: EmitFn,
    err: ErrorSink,
) -> Status;
pub type ProcessFn = unsafe extern "C" fn(
    stage: *mut c_void,
    call: *const CallContext,
    item: *const FfiItem,
    emit: EmitFn,
    err: ErrorSink,
) -> Status;
pub type FinishFn = ProduceFn;
pub type DestroyFn = unsafe extern "C" fn(stage: *mut c_void);

/// One stage type offered by a plugin.
#[repr(C)]
pub struct StageDescriptor {
    /// Dotted name used in pipelines, e.g. `nifti.read`.
    pub name: StrRef,
    /// A [`Role`] as u32.
    pub role: u32,
    /// Comma-separated item kinds accepted (empty for sources).
    pub inputs: StrRef,
    /// Comma-separated item kinds produced (empty for sinks); `same` means "the input's kind".
    pub outputs: StrRef,
    /// JSON Schema of the `params` object.
    pub params_schema: StrRef,
    pub description: StrRef,
    /// Creates one instance shared by all the stage's workers (it must be thread-safe).
    pub create: CreateFn,
    /// Sources: produce items until done or cancelled. Called once per worker.
    pub produce: ProduceFn,
    /// Transforms and sinks: handle one item.
    pub process: ProcessFn,
    /// Called once after every worker is done; may emit (flush) items.
    pub finish: FinishFn,
    pub destroy: DestroyFn,
}

/// What the entry symbol returns. `abi_version` must stay the first field forever.
#[repr(C)]
pub struct PluginDescriptor {
    pub abi_version: u32,
    pub name: StrRef,
    pub version: StrRef,
    pub stages: *const StageDescriptor,
    pub n_stages: usize,
}
