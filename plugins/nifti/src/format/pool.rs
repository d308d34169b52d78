//! Voxel buffers of released volumes, kept for the next file of the same type and size.
//!
//! A fresh volume-sized buffer is mapped by the allocator and costs a page fault per 4 KiB on
//! first touch (a 3 MB T1 volume: 768 faults, about 2 ms of kernel time). `nifti.read` builds
//! its tensors with [`VoxelPool::give_back`] on [`POOL`] as their recycler, and the reader's
//! allocations [`VoxelPool::take`] from it. At most [`KEEP`] idle buffers are kept, so memory stays bounded by the volumes in
//! flight plus that many.

use std::any::Any;
use std::sync::Mutex;

use bytemuck::Pod;

/// Idle buffers kept at most (one per reader in flight is enough to skip every fault).
pub const KEEP: usize = 2;

/// Idle buffers of any element type.
pub struct VoxelPool {
    idle: Mutex<Vec<Box<dyn Any + Send>>>,
}

/// The pool `nifti.read` and the reader share.
pub static POOL: VoxelPool = VoxelPool::new();

impl VoxelPool {
    pub const fn new() -> Self {
        VoxelPool {
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Any + Send>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle `Vec<T>` resized to `len`, when one with room for `len` (and no more than twice
    /// that) is kept. Its contents are stale values of an earlier volume: the caller
    /// overwrites them.
    pub fn take<T: Pod + Send>(&self, len: usize) -> Option<Vec<T>> {
        let mut idle = self.idle();
        let fits = |b: &Box<dyn Any + Send>| {
            b.downcast_ref::<Vec<T>>()
                .is_some_and(|v| v.capacity() >= len && v.capacity() / 2 <= len)
        };
        let i = idle.iter().position(fits)?;
        let mut v = *idle.swap_remove(i).downcast::<Vec<T>>().ok()?;
        drop(idle);
        // Within capacity: only elements past the old length are written.
        v.resize(len, T::zeroed());
        Some(v)
    }

    /// Keeps `v` for a later [`VoxelPool::take`]; the oldest idle buffer is freed when [`KEEP`]
    /// are kept.
    pub fn give_back<T: Pod + Send>(&self, v: Vec<T>) {
        if v.capacity() == 0 {
            return;
        }
        let mut idle = self.idle();
        let evicted = (idle.len() >= KEEP).then(|| idle.remove(0));
        idle.push(Box::new(v));
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
        assert!(pool.take::<i16>(400).is_none(), "more than twice too large");
        let got = pool.take::<i16>(900).expect("reused");
        assert_eq!((got.as_ptr(), got.len()), (p, 900));
        assert!(pool.take::<i16>(900).is_none(), "taken once");
        for n in 1..=KEEP + 1 {
            pool.give_back(vec![0u8; n * 10]);
        }
        assert!(pool.take::<u8>(8).is_none(), "the oldest (10) was freed");
        assert_eq!(pool.take::<u8>(30).map(|v| v.len()), Some(30));
    }
}
