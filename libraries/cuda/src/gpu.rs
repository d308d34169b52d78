//! One opened device: its primary context, compiled kernels and buffer pool.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, anyhow};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use crate::compile::{compile_cubin, fnv1a64};
use crate::pool::Pool;
use crate::probe::{DeviceInfo, guarded, probe};

/// A CUDA device opened through its **primary** context (`cuDevicePrimaryCtxRetain`, which is
/// what cudarc's `CudaContext::new` does), the context the runtime API and every other plugin
/// in the process share: a device pointer one stage emits is valid in the next, even when the
/// two are separate dylibs with their own copy of this crate.
///
/// Thread-safe; get it from [`crate::resolve`], compile in `Stage::new` with
/// [`Gpu::function`], and give each worker its own [`Gpu::stream`].
pub struct Gpu {
    ctx: Arc<CudaContext>,
    info: DeviceInfo,
    kernels: Mutex<HashMap<KernelKey, Kernel>>,
    compiled: AtomicUsize,
    pool: Pool,
}

/// (FNV-1a of the source, compute capability): the same text compiles once per device kind.
type KernelKey = (u64, (u32, u32));

struct Kernel {
    /// Compared on every hit, so a hash collision recompiles instead of running the wrong code.
    source: Box<str>,
    module: Arc<CudaModule>,
    functions: HashMap<String, CudaFunction>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("info", &self.info).finish()
    }
}

impl Gpu {
    /// Retains the device's primary context. Use [`crate::resolve`], which checks the
    /// libraries first and hands out one `Gpu` per device.
    pub(crate) fn open(info: DeviceInfo) -> Result<Self> {
        let ordinal = info.ordinal;
        let ctx = guarded(|| CudaContext::new(ordinal))
            .map_err(|e| anyhow!(e))?
            .with_context(|| format!("cuda:{ordinal}: cannot retain the primary context"))?;
        // A few volumes of scratch without crowding out models: 1/8 of the device, at most 4 GiB.
        let limit = (info.total_memory / 8).min(4 << 30) as usize;
        Ok(Gpu {
            ctx,
            info,
            kernels: Mutex::new(HashMap::new()),
            compiled: AtomicUsize::new(0),
            pool: Pool::new(limit),
        })
    }

    /// Ordinal, name, compute capability, memory.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The cudarc context, for anything this crate does not wrap (`synchronize`,
    /// `mem_get_info`, cuFFT plans).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A new stream: one per worker, so workers' copies and kernels overlap instead of queueing
    /// on the default stream. Buffers used on several streams are synchronised by cudarc.
    pub fn stream(&self) -> Result<Arc<CudaStream>> {
        self.ctx
            .new_stream()
            .with_context(|| format!("cuda:{}: cannot create a stream", self.info.ordinal))
    }

    /// The kernel `entry` of `source`, compiled to this device's CUBIN on first use and kept:
    /// later calls (every worker, every stage with the same source) are a map lookup. `name` is
    /// the file name used in compiler and loader errors.
    pub fn function(&self, name: &str, source: &str, entry: &str) -> Result<CudaFunction> {
        let key = (fnv1a64(source.as_bytes()), self.info.compute_capability);
        // Held while compiling, so two workers starting together compile once.
        let mut kernels = self.kernels.lock().unwrap_or_else(PoisonError::into_inner);
        let kernel = match kernels.entry(key) {
            Entry::Occupied(hit) if *hit.get().source == *source => hit.into_mut(),
            Entry::Occupied(_) => return self.load(name, source)?.function(name, entry),
            Entry::Vacant(slot) => slot.insert(self.load(name, source)?),
        };
        kernel.function(name, entry)
    }

    /// How many sources this device has compiled (the cache's misses), for tests and logs.
    pub fn kernels_compiled(&self) -> usize {
        self.compiled.load(Ordering::Relaxed)
    }

    /// A zeroed buffer of `len` elements, from the pool when one of this type and length was
    /// given back. The memset and any later work are queued on `stream`.
    pub fn take<T>(&self, stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>>
    where
        T: DeviceRepr + ValidAsZeroBits + Send + 'static,
    {
        self.pool
            .take(stream, len)
            .with_context(|| format!("cuda:{}", self.info.ordinal))
    }

    /// Returns a buffer for reuse (freed instead when the pool is at its cap). Dropping a
    /// `CudaSlice` frees it as usual; giving it back is only an optimisation.
    pub fn give<T: Send + 'static>(&self, slice: CudaSlice<T>) {
        self.pool.give(slice)
    }

    /// Bytes the pool holds now.
    pub fn pooled_bytes(&self) -> usize {
        self.pool.held()
    }

    /// Caps the pool (default: 1/8 of device memory, at most 4 GiB); 0 disables it.
    pub fn set_pool_limit(&self, bytes: usize) {
        self.pool.set_limit(bytes)
    }

    fn load(&self, name: &str, source: &str) -> Result<Kernel> {
        let cubin = compile_cubin(name, source, self.info.compute_capability)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let p = probe();
        let version = |v: Option<(u32, u32)>| v.map_or("?".into(), |(a, b)| format!("{a}.{b}"));
        let module = self
            .ctx
            .load_module(Ptx::from_binary(cubin))
            .with_context(|| {
                format!(
                    "{name}: cannot load its CUBIN on {} (driver CUDA {}, NVRTC {})",
                    self.info,
                    version(p.driver_version),
                    version(p.nvrtc_version)
                )
            })?;
        Ok(Kernel {
            source: source.into(),
            module,
            functions: HashMap::new(),
        })
    }
}

impl Kernel {
    fn function(&mut self, name: &str, entry: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.get(entry) {
            return Ok(f.clone());
        }
        if entry.contains('\0') {
            return Err(anyhow!("{name}: kernel name {entry:?} contains a NUL byte"));
        }
        let f = self.module.load_function(entry).with_context(|| {
            format!("{name}: no kernel `{entry}` (is it declared extern \"C\" __global__?)")
        })?;
        self.functions.insert(entry.to_string(), f.clone());
        Ok(f)
    }
}
