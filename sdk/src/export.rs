//! Glue from the safe [`Stage`] API to the C ABI: `extern "C"` trampolines that catch panics,
//! and the descriptor the [`crate::plugin!`] and [`crate::export_plugin!`] macros build.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::abi::{
    ABI_VERSION, CallContext, EmitFn, ErrorSink, FfiItem, HostContext, PluginDescriptor,
    StageDescriptor, Status, StrRef,
};
use crate::item::item_from_ffi;
use crate::stage::{Cancelled, Context, Emitter, Host, Stage};

/// A stage instance plus the host services it was created with.
struct Instance<S> {
    stage: S,
    _host: Host,
}

fn report(err: ErrorSink, msg: &str) {
    // SAFETY: valid callback per the ABI; the message is borrowed for the call.
    unsafe { (err.write)(err.ctx, StrRef::new(msg)) }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs `f`, turning errors and panics into a [`Status`] plus a message.
fn guard(err: ErrorSink, f: impl FnOnce() -> anyhow::Result<()>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::Ok,
        Ok(Err(e)) if e.is::<Cancelled>() => Status::Cancelled,
        Ok(Err(e)) => {
            report(err, &format!("{e:#}"));
            Status::Error
        }
        Err(p) => {
            report(err, &format!("panicked: {}", panic_message(&*p)));
            Status::Panic
        }
    }
}

unsafe extern "C" fn create<S: Stage>(
    host: *const HostContext,
    params_json: StrRef,
    out_stage: *mut *mut c_void,
    err: ErrorSink,
) -> Status {
    guard(err, || {
        // SAFETY: borrowed for the call.
        let json = unsafe { params_json.as_str() };
        let json = if json.trim().is_empty() { "{}" } else { json };
        let params: S::Params = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("invalid params for {}: {e}", S::NAME))?;
        // SAFETY: the host keeps its context alive for the life of the stage.
        let stage = S::new(params, &unsafe { Host::from_raw(host) })?;
        let inst = Box::new(Instance {
            stage,
            // SAFETY: as above.
            _host: unsafe { Host::from_raw(host) },
        });
        // SAFETY: `out_stage` is a valid out-pointer per the ABI.
        unsafe { *out_stage = Box::into_raw(inst) as *mut c_void };
        Ok(())
    })
}

unsafe extern "C" fn produce<S: Stage>(
    stage: *mut c_void,
    call: *const CallContext,
    emit: EmitFn,
    err: ErrorSink,
) -> Status {
    guard(err, || {
        // SAFETY: `stage` came from `create::<S>`; `call` is valid for the call.
        let inst = unsafe { &*(stage as *const Instance<S>) };
        let ctx = unsafe { Context::from_raw(&*call) };
        inst.stage.produce(&ctx, &mut Emitter::from_raw(emit))
    })
}

unsafe extern "C" fn process<S: Stage>(
    stage: *mut c_void,
    call: *const CallContext,
    item: *const FfiItem,
    emit: EmitFn,
    err: ErrorSink,
) -> Status {
    guard(err, || {
        // SAFETY: as in `produce`; the item is borrowed for the call, so tensors are retained.
        let inst = unsafe { &*(stage as *const Instance<S>) };
        let ctx = unsafe { Context::from_raw(&*call) };
        let item = unsafe { item_from_ffi(item, false) }?;
        inst.stage.process(&ctx, item, &mut Emitter::from_raw(emit))
    })
}

unsafe extern "C" fn finish<S: Stage>(
    stage: *mut c_void,
    call: *const CallContext,
    emit: EmitFn,
    err: ErrorSink,
) -> Status {
    guard(err, || {
        // SAFETY: as in `produce`.
        let inst = unsafe { &*(stage as *const Instance<S>) };
        let ctx = unsafe { Context::from_raw(&*call) };
        inst.stage.finish(&ctx, &mut Emitter::from_raw(emit))
    })
}

unsafe extern "C" fn destroy<S: Stage>(stage: *mut c_void) {
    if stage.is_null() {
        return;
    }
    // A panicking Drop must not unwind into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `stage` came from Box::into_raw in `create::<S>` and is destroyed once.
        drop(unsafe { Box::from_raw(stage as *mut Instance<S>) });
    }));
}

/// Static description of one stage type, produced by [`stage_spec`].
pub struct StageSpec {
    name: &'static str,
    role: u32,
    inputs: String,
    outputs: String,
    schema: String,
    description: &'static str,
    create: crate::abi::CreateFn,
    produce: crate::abi::ProduceFn,
    process: crate::abi::ProcessFn,
    finish: crate::abi::FinishFn,
    destroy: crate::abi::DestroyFn,
}

/// Describes stage type `S` for a plugin descriptor.
pub fn stage_spec<S: Stage>() -> StageSpec {
    let schema = schemars::schema_for!(S::Params);
    StageSpec {
        name: S::NAME,
        role: S::ROLE as u32,
        inputs: S::INPUTS.join(","),
        outputs: S::OUTPUTS.join(","),
        schema: serde_json::to_string(&schema).unwrap_or_else(|_| "{}".into()),
        description: S::DESCRIPTION,
        create: create::<S>,
        produce: produce::<S>,
        process: process::<S>,
        finish: finish::<S>,
        destroy: destroy::<S>,
    }
}

/// A plugin descriptor and the strings it points into, built once and kept for the process life.
pub struct PluginHolder {
    _name: &'static str,
    _version: &'static str,
    _specs: Vec<StageSpec>,
    _stages: Vec<StageDescriptor>,
    descriptor: PluginDescriptor,
}

// SAFETY: immutable after construction; the raw pointers point into the holder itself.
unsafe impl Send for PluginHolder {}
unsafe impl Sync for PluginHolder {}

impl PluginHolder {
    pub fn new(name: &'static str, version: &'static str, specs: Vec<StageSpec>) -> Self {
        let stages: Vec<StageDescriptor> = specs
            .iter()
            .map(|s| StageDescriptor {
                name: StrRef::new(s.name),
                role: s.role,
                inputs: StrRef::new(&s.inputs),
                outputs: StrRef::new(&s.outputs),
                params_schema: StrRef::new(&s.schema),
                description: StrRef::new(s.description),
                create: s.create,
                produce: s.produce,
                process: s.process,
                finish: s.finish,
                destroy: s.destroy,
            })
            .collect();
        let descriptor = PluginDescriptor {
            abi_version: ABI_VERSION,
            name: StrRef::new(name),
            version: StrRef::new(version),
            stages: stages.as_ptr(),
            n_stages: stages.len(),
        };
        PluginHolder {
            _name: name,
            _version: version,
            _specs: specs,
            _stages: stages,
            descriptor,
        }
    }

    pub fn descriptor(&self) -> *const PluginDescriptor {
        &self.descriptor
    }
}

/// Storage for a plugin's descriptor (used by the macros).
pub type PluginCell = OnceLock<PluginHolder>;

/// Declares `pub fn plugin_descriptor() -> *const PluginDescriptor` for a set of stages, without
/// exporting a symbol. First-party plugins use this so the engine can link several of them; their
/// `cdylib` wrappers call [`export_plugin!`] with the function.
///
/// ```ignore
/// mindscan_sdk::plugin!(name: "nifti", stages: [NiftiRead, NiftiWrite]);
/// ```
#[macro_export]
macro_rules! plugin {
    (name: $name:expr, stages: [$($stage:ty),* $(,)?] $(,)?) => {
        /// The plugin's ABI descriptor (built on first use, then kept for the process life).
        pub fn plugin_descriptor() -> *const $crate::abi::PluginDescriptor {
            static CELL: $crate::export::PluginCell = $crate::export::PluginCell::new();
            CELL.get_or_init(|| {
                $crate::export::PluginHolder::new(
                    $name,
                    env!("CARGO_PKG_VERSION"),
                    vec![$($crate::export::stage_spec::<$stage>()),*],
                )
            })
            .descriptor()
        }
    };
}

/// Exports the entry symbol of a plugin library (`crate-type = ["cdylib"]`).
///
/// Either from a descriptor function: `mindscan_sdk::export_plugin!(my_crate::plugin_descriptor);`
/// or directly from stages: `mindscan_sdk::export_plugin!(name: "threshold", stages: [Threshold]);`
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, stages: [$($stage:ty),* $(,)?] $(,)?) => {
        $crate::plugin!(name: $name, stages: [$($stage),*]);
        $crate::export_plugin!(plugin_descriptor);
    };
    ($descriptor:path) => {
        /// Entry symbol looked up by the Mindscan host.
        #[unsafe(no_mangle)]
        pub extern "C" fn mindscan_plugin_entry() -> *const $crate::abi::PluginDescriptor {
            $descriptor()
        }
    };
}
