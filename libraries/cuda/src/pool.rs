//! Freed device buffers kept for the next item of the same size.
//!
//! Volumes of a series have one size, so after the first item every stage's scratch and output
//! buffers come back from here instead of `cuMemAlloc`. Kept simple: exact (type, length)
//! matches, a byte cap, nothing evicted (a buffer over the cap is freed at once).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};

pub(crate) struct Pool {
    inner: Mutex<Inner>,
}

struct Inner {
    free: HashMap<(TypeId, usize), Vec<Box<dyn Any + Send>>>,
    held: usize,
    limit: usize,
}

impl Pool {
    pub(crate) fn new(limit: usize) -> Self {
        Pool {
            inner: Mutex::new(Inner {
                free: HashMap::new(),
                held: 0,
                limit,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A zeroed buffer of `len` elements, reused when one was given back. Zeroed so a reused
    /// buffer never carries an earlier item's voxels into a result; the memset is queued on
    /// `stream`, which first waits for the buffer's last use (cudarc's event tracking).
    pub(crate) fn take<T>(&self, stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>>
    where
        T: DeviceRepr + ValidAsZeroBits + Send + 'static,
    {
        let reused = {
            let mut inner = self.lock();
            let slot = inner.free.get_mut(&(TypeId::of::<T>(), len));
            let found = slot.and_then(Vec::pop);
            if found.is_some() {
                inner.held -= len * size_of::<T>();
            }
            found
        };
        match reused.map(|b| b.downcast::<CudaSlice<T>>()) {
            Some(Ok(mut slice)) => {
                stream
                    .memset_zeros(&mut *slice)
                    .context("cannot clear a pooled device buffer")?;
                Ok(*slice)
            }
            _ => stream.alloc_zeros(len).with_context(|| {
                format!(
                    "cannot allocate {len} x {} bytes on the device",
                    size_of::<T>()
                )
            }),
        }
    }

    /// Keeps `slice` for reuse, or frees it when that would pass the cap.
    pub(crate) fn give<T: Send + 'static>(&self, slice: CudaSlice<T>) {
        let bytes = slice.num_bytes();
        let mut inner = self.lock();
        if bytes == 0 || inner.held + bytes > inner.limit {
            drop(inner);
            drop(slice);
            return;
        }
        inner.held += bytes;
        inner
            .free
            .entry((TypeId::of::<T>(), slice.len()))
            .or_default()
            .push(Box::new(slice));
    }

    pub(crate) fn held(&self) -> usize {
        self.lock().held
    }

    /// Sets the cap, freeing everything held when it shrinks below what is held.
    pub(crate) fn set_limit(&self, limit: usize) {
        let dropped = {
            let mut inner = self.lock();
            inner.limit = limit;
            if inner.held > limit {
                inner.held = 0;
                std::mem::take(&mut inner.free)
            } else {
                HashMap::new()
            }
        };
        drop(dropped);
    }
}
