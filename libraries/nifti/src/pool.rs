//! Voxel buffers of released volumes, kept for the next file of the same type and size.
//!
//! A fresh volume-sized buffer is mapped by the allocator and costs a page fault per 4 KiB on
//! first touch (a 3 MB T1 volume: 768 faults, about 2 ms of kernel time). `nifti.read` builds
//! its tensors with [`VoxelPool::give_back`] on [`POOL`] as their recycler, and the reader's
//! allocations [`VoxelPool::take`] from it. At most [`KEEP`] idle buffers ([`KEEP_BYTES`] in
//! all) are kept, so memory stays bounded by the volumes in flight plus that much.

use std::any::Any;
use std::sync::Mutex;

use bytemuck::Pod;

/// Idle buffers kept at most (one per reader in flight is enough to skip every fault).
pub const KEEP: usize = 2;

/// Bytes of idle buffers kept at most: a buffer larger than this (a long fMRI series) is freed
/// at once rather than held while other volumes are read.
pub const KEEP_BYTES: usize = 256 << 20;

/// Idle buffers of any element type.
pub struct VoxelPool {
    idle: Mutex<Vec<Idle>>,
}

/// One idle `Vec<T>` (type-erased) and its capacity in bytes.
struct Idle {
    bytes: usize,
    buffer: Box<dyn Any + Send>,
}

fn idle_bytes(idle: &[Idle]) -> usize {
    idle.iter().map(|i| i.bytes).sum()
}

/// The pool `nifti.read` and the reader share.
pub static POOL: VoxelPool = VoxelPool::new();

impl VoxelPool {
    pub const fn new() -> Self {
        VoxelPool {
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle `Vec<T>` resized to `len`, when one with room for `len` (and at most a quarter
    /// more, so a volume never holds much more memory than it needs) is kept. Its contents are
    /// stale values of an earlier volume: the caller overwrites them.
    pub fn take<T: Pod + Send>(&self, len: usize) -> Option<Vec<T>> {
        let mut idle = self.idle();
        let fits = |i: &Idle| {
            i.buffer
                .downcast_ref::<Vec<T>>()
                .is_some_and(|v| v.capacity() >= len && v.capacity() - len <= len / 4)
        };
        let i = idle.iter().position(fits)?;
        let mut v = *idle.swap_remove(i).buffer.downcast::<Vec<T>>().ok()?;
        drop(idle);
        // Within capacity: only elements past the old length are written.
        v.resize(len, T::zeroed());
        Some(v)
    }

    /// Keeps `v` for a later [`VoxelPool::take`], freeing the oldest idle buffers beyond
    /// [`KEEP`] or [`KEEP_BYTES`]; a buffer larger than [`KEEP_BYTES`] is freed at once.
    pub fn give_back<T: Pod + Send>(&self, v: Vec<T>) {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes == 0 || bytes > KEEP_BYTES {
            return;
        }
        let mut idle = self.idle();
        let mut evicted = Vec::new();
        while !idle.is_empty() && (idle.len() >= KEEP || idle_bytes(&idle) + bytes > KEEP_BYTES) {
            evicted.push(idle.remove(0));
        }
        idle.push(Idle {
            bytes,
            buffer: Box::new(v),
        });
        drop(idle);
        drop(evicted);
    }
}

impl Default for VoxelPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_buffers_by_type_and_size() {
        let pool = VoxelPool::new();
        let v: Vec<i16> = vec![5; 1000];
        let p = v.as_ptr();
        pool.give_back(v);
        assert!(pool.take::<u16>(1000).is_none(), "another type");
        assert!(pool.take::<i16>(2001).is_none(), "too small");
        assert!(
            pool.take::<i16>(700).is_none(),
            "more than a quarter too large"
        );
        let got = pool.take::<i16>(900).expect("reused");
        assert_eq!((got.as_ptr(), got.len()), (p, 900));
        assert!(pool.take::<i16>(900).is_none(), "taken once");
        for n in 1..=KEEP + 1 {
            pool.give_back(vec![0u8; n * 10]);
        }
        assert!(pool.take::<u8>(10).is_none(), "the oldest (10) was freed");
        assert_eq!(pool.take::<u8>(30).map(|v| v.len()), Some(30));
        // Larger than the byte cap: not kept.
        pool.give_back(vec![0u8; KEEP_BYTES + 1]);
        assert!(pool.take::<u8>(KEEP_BYTES + 1).is_none());
        assert_eq!(
            pool.take::<u8>(20).map(|v| v.len()),
            Some(20),
            "others stay"
        );
    }
}
