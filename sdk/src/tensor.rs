//! Tensors: typed, strided arrays that cross the plugin boundary without copying.
//!
//! A [`Tensor`] is a cheap handle (`Clone` shares the buffer). Its buffer is either a Vec created
//! in this library, or a foreign buffer received through the ABI whose owner is released when the
//! last handle is dropped.

use std::any::Any;
use std::ffi::c_void;
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::abi::{FfiDType, FfiDevice, FfiTensor};

/// Element types. Complex values are pairs of floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    C64,
    C128,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::U64 => "uint64",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        let all = [
            DType::U8,
            DType::I8,
            DType::U16,
            DType::I16,
            DType::U32,
            DType::I32,
            DType::U64,
            DType::I64,
            DType::F32,
            DType::F64,
            DType::C64,
            DType::C128,
        ];
        all.into_iter().find(|d| d.name() == name)
    }

    pub fn to_ffi(self) -> FfiDType {
        let (code, bits) = match self {
            DType::I8 => (0, 8),
            DType::I16 => (0, 16),
            DType::I32 => (0, 32),
            DType::I64 => (0, 64),
            DType::U8 => (1, 8),
            DType::U16 => (1, 16),
            DType::U32 => (1, 32),
            DType::U64 => (1, 64),
            DType::F32 => (2, 32),
            DType::F64 => (2, 64),
            DType::C64 => (5, 64),
            DType::C128 => (5, 128),
        };
        FfiDType {
            code,
            bits,
            lanes: 1,
        }
    }

    pub fn from_ffi(d: FfiDType) -> Option<DType> {
        if d.lanes != 1 {
            return None;
        }
        Some(match (d.code, d.bits) {
            (0, 8) => DType::I8,
            (0, 16) => DType::I16,
            (0, 32) => DType::I32,
            (0, 64) => DType::I64,
            (1, 8) => DType::U8,
            (1, 16) => DType::U16,
            (1, 32) => DType::U32,
            (1, 64) => DType::U64,
            (2, 32) => DType::F32,
            (2, 64) => DType::F64,
            (5, 64) => DType::C64,
            (5, 128) => DType::C128,
            _ => return None,
        })
    }
}

/// Rust element types that map to a [`DType`].
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => { $(impl Element for $t { const DTYPE: DType = DType::$d; })* };
}
element!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
         i64 => I64, f32 => F32, f64 => F64, [f32; 2] => C64, [f64; 2] => C128);

/// Where the data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
}

impl Device {
    fn to_ffi(self) -> FfiDevice {
        match self {
            Device::Cpu => FfiDevice {
                device_type: 1,
                device_id: 0,
            },
            Device::Cuda(id) => FfiDevice {
                device_type: 2,
                device_id: id,
            },
        }
    }

    fn from_ffi(d: FfiDevice) -> Option<Device> {
        match d.device_type {
            1 => Some(Device::Cpu),
            2 => Some(Device::Cuda(d.device_id)),
            _ => None,
        }
    }
}

/// Backing memory of a tensor.
struct Storage {
    ptr: *mut u8,
    len: usize,
    holder: Holder,
    /// Dropped right after the buffer is released (see [`Tensor::attach_guard`]).
    guard: Option<Arc<dyn Any + Send + Sync>>,
}

enum Holder {
    /// A Vec allocated by this library, kept alive (type-erased) until dropped.
    Local(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
    /// A buffer owned by another library; `release(owner)` runs once on drop.
    Foreign {
        owner: *mut c_void,
        release: unsafe extern "C" fn(*mut c_void),
    },
}

// SAFETY: the buffer is only read through shared references, local Vecs are Send + Sync, and the
// ABI requires foreign owners to be releasable from any thread.
unsafe impl Send for Storage {}
unsafe impl Sync for Storage {}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Holder::Foreign { owner, release } = self.holder {
            // SAFETY: we hold exactly one reference of `owner` (ABI ownership rule).
            unsafe { release(owner) };
        }
    }
}

/// A Vec handed to `recycle` when the tensor's storage is released.
struct Recycled<T: Element> {
    data: Vec<T>,
    recycle: Option<Box<dyn FnOnce(Vec<T>) + Send + Sync>>,
}

impl<T: Element> Drop for Recycled<T> {
    fn drop(&mut self) {
        if let Some(recycle) = self.recycle.take() {
            let data = std::mem::take(&mut self.data);
            // A panicking recycler must not abort a release that may run inside a plugin call.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| recycle(data)));
        }
    }
}

/// A typed n-dimensional array with element strides.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    dtype: DType,
    device: Device,
    shape: Vec<usize>,
    strides: Vec<isize>,
    /// Offset of element 0 from the start of the storage, in bytes.
    byte_offset: usize,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("device", &self.device)
            .field("shape", &self.shape)
            .field("strides", &self.strides)
            .finish()
    }
}

/// Strides (in elements) of a C-order (last axis fastest) array.
pub fn c_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= n.max(1) as isize;
    }
    strides
}

/// Strides (in elements) of a Fortran-order (first axis fastest) array, the NIfTI voxel order.
pub fn f_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (s, &n) in strides.iter_mut().zip(shape) {
        *s = acc;
        acc *= n.max(1) as isize;
    }
    strides
}

/// Strides of a volume with a trailing channel axis stored channel fastest, then in NIfTI
/// voxel order (how RGB volumes travel): shape `[ni, nj, nk, .., c]`, strides
/// `[c, c·ni, .., 1]`.
pub fn channels_last_strides(dims: &[usize], channels: usize) -> Vec<isize> {
    let mut strides: Vec<isize> = f_strides(dims)
        .iter()
        .map(|s| s * channels.max(1) as isize)
        .collect();
    strides.push(1);
    strides
}

/// Panics unless `shape` and `strides` have the same rank and reach only `len` elements.
fn assert_fits(shape: &[usize], strides: &[isize], len: usize) {
    assert_eq!(
        shape.len(),
        strides.len(),
        "shape and strides differ in rank"
    );
    let needed = extent(shape, strides);
    assert!(
        needed <= len,
        "tensor of shape {shape:?} needs {needed} elements, got {len}"
    );
}

impl Tensor {
    /// Wraps a Vec with explicit strides. Panics if the strides reach outside the Vec.
    pub fn from_vec_strided<T: Element>(data: Vec<T>, shape: &[usize], strides: &[isize]) -> Self {
        assert_fits(shape, strides, data.len());
        let mut data = data;
        let ptr = data.as_mut_ptr() as *mut u8;
        let len = data.len() * std::mem::size_of::<T>();
        Self::local(ptr, len, Box::new(data), shape, strides, T::DTYPE)
    }

    /// Like [`Tensor::volume`], but once every handle (here and across the ABI) is released,
    /// `recycle` gets the Vec back instead of it being freed: a source can reuse the buffer for
    /// its next item and skip the page faults of fresh memory.
    pub fn volume_recycled<T: Element>(
        data: Vec<T>,
        shape: &[usize],
        recycle: impl FnOnce(Vec<T>) + Send + Sync + 'static,
    ) -> Self {
        let strides = f_strides(shape);
        assert_fits(shape, &strides, data.len());
        let mut recycled = Recycled {
            data,
            recycle: Some(Box::new(recycle)),
        };
        let ptr = recycled.data.as_mut_ptr() as *mut u8;
        let len = recycled.data.len() * std::mem::size_of::<T>();
        Self::local(ptr, len, Box::new(recycled), shape, &strides, T::DTYPE)
    }

    /// A tensor over a buffer this library owns through `holder` (which keeps `ptr` valid).
    fn local(
        ptr: *mut u8,
        len: usize,
        holder: Box<dyn Any + Send + Sync>,
        shape: &[usize],
        strides: &[isize],
        dtype: DType,
    ) -> Self {
        Tensor {
            storage: Arc::new(Storage {
                ptr,
                len,
                holder: Holder::Local(holder),
                guard: None,
            }),
            dtype,
            device: Device::Cpu,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            byte_offset: 0,
        }
    }

    /// A C-order (row-major) tensor, e.g. a 2D image `[rows, cols]`.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Self {
        Self::from_vec_strided(data, shape, &c_strides(shape))
    }

    /// A volume in NIfTI order: shape `[ni, nj, nk, (nt)]`, `i` fastest.
    pub fn volume<T: Element>(data: Vec<T>, shape: &[usize]) -> Self {
        Self::from_vec_strided(data, shape, &f_strides(shape))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_c_contiguous(&self) -> bool {
        self.strides == c_strides(&self.shape)
    }
    pub fn is_f_contiguous(&self) -> bool {
        self.strides == f_strides(&self.shape)
    }

    /// The elements of a dense (C- or F-contiguous) CPU tensor, in memory order.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if T::DTYPE != self.dtype {
            bail!(
                "tensor holds {}, asked for {}",
                self.dtype.name(),
                T::DTYPE.name()
            );
        }
        let bytes = self.dense_bytes()?;
        bytemuck::try_cast_slice(bytes).map_err(|e| anyhow::anyhow!("misaligned tensor: {e}"))
    }

    /// Whether the last axis is a channel axis laid out as [`channels_last_strides`].
    pub fn is_channels_last(&self) -> bool {
        match self.shape.split_last() {
            Some((&c, dims)) if !dims.is_empty() => self.strides == channels_last_strides(dims, c),
            _ => false,
        }
    }

    /// The raw bytes of a channels-last CPU tensor ([`Tensor::is_channels_last`]), in memory
    /// order: voxel by voxel in NIfTI order, each voxel's channels together.
    pub fn channels_last_bytes(&self) -> Result<&[u8]> {
        if !self.is_channels_last() {
            bail!(
                "tensor with shape {:?} and strides {:?} is not channels-last",
                self.shape,
                self.strides
            );
        }
        self.packed_bytes()
    }

    /// The raw bytes of a dense CPU tensor, in memory order.
    pub fn dense_bytes(&self) -> Result<&[u8]> {
        if !(self.is_c_contiguous() || self.is_f_contiguous()) {
            bail!("tensor with strides {:?} is not dense", self.strides);
        }
        self.packed_bytes()
    }

    /// The bytes of a tensor whose layout the caller has checked to have no gaps.
    fn packed_bytes(&self) -> Result<&[u8]> {
        if self.device != Device::Cpu {
            bail!("tensor is on {:?}, not the CPU", self.device);
        }
        let n = self.len() * self.dtype.size();
        let end = self.byte_offset + n;
        if end > self.storage.len {
            bail!("tensor reaches past its buffer");
        }
        // SAFETY: bounds checked above; the storage is alive while `self` is.
        Ok(unsafe { std::slice::from_raw_parts(self.storage.ptr.add(self.byte_offset), n) })
    }

    /// Keeps `guard` alive exactly as long as this tensor's buffer: it drops when the last
    /// handle anywhere is gone, including handles in other plugins that received the tensor
    /// through the ABI (they hold a reference to this storage). The host uses it to learn when
    /// a source's voxels have been released. Only a tensor whose handle is the sole one (just
    /// received) can take a guard; returns `false` otherwise.
    pub fn attach_guard(&mut self, guard: Arc<dyn Any + Send + Sync>) -> bool {
        match Arc::get_mut(&mut self.storage) {
            Some(st) if st.guard.is_none() => {
                st.guard = Some(guard);
                true
            }
            _ => false,
        }
    }

    /// Takes the Vec back without copying when this handle is the only one and the buffer was
    /// created here; otherwise copies.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>> {
        let n = self.as_slice::<T>()?.len();
        if self.byte_offset != 0 {
            return Ok(self.as_slice::<T>()?.to_vec());
        }
        let Tensor { storage, .. } = self;
        match Arc::try_unwrap(storage) {
            Ok(mut storage) => {
                let holder = std::mem::replace(&mut storage.holder, Holder::Local(Box::new(())));
                match holder {
                    Holder::Local(b) => {
                        // A recycled buffer leaves with its owner: nothing goes back.
                        let v = match b.downcast::<Recycled<T>>() {
                            Ok(mut r) => {
                                r.recycle = None;
                                std::mem::take(&mut r.data)
                            }
                            Err(b) => match b.downcast::<Vec<T>>() {
                                Ok(v) => *v,
                                Err(_) => bail!("tensor buffer type does not match its dtype"),
                            },
                        };
                        if v.len() == n {
                            Ok(v)
                        } else {
                            Ok(v[..n].to_vec())
                        }
                    }
                    foreign => {
                        storage.holder = foreign;
                        // SAFETY: the storage is alive and holds at least n elements (checked above).
                        let s = unsafe { std::slice::from_raw_parts(storage.ptr as *const T, n) };
                        Ok(s.to_vec())
                    }
                }
            }
            Err(shared) => {
                // SAFETY: as above; another handle keeps the buffer alive.
                let s = unsafe { std::slice::from_raw_parts(shared.ptr as *const T, n) };
                Ok(s.to_vec())
            }
        }
    }

    /// Converts any real dtype to f32, element by element in memory order.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let mut v = Vec::new();
        self.to_f32_into(&mut v)?;
        Ok(v)
    }

    /// Like [`Tensor::to_f32_vec`] into a caller's buffer, so a worker can reuse one allocation
    /// for every volume instead of faulting in fresh pages each time.
    pub fn to_f32_into(&self, out: &mut Vec<f32>) -> Result<()> {
        fn conv<T: Element + Copy>(
            t: &Tensor,
            out: &mut Vec<f32>,
            f: impl Fn(T) -> f32,
        ) -> Result<()> {
            out.clear();
            out.extend(t.as_slice::<T>()?.iter().map(|&v| f(v)));
            Ok(())
        }
        match self.dtype {
            DType::U8 => conv::<u8>(self, out, |v| v as f32),
            DType::I8 => conv::<i8>(self, out, |v| v as f32),
            DType::U16 => conv::<u16>(self, out, |v| v as f32),
            DType::I16 => conv::<i16>(self, out, |v| v as f32),
            DType::U32 => conv::<u32>(self, out, |v| v as f32),
            DType::I32 => conv::<i32>(self, out, |v| v as f32),
            DType::U64 => conv::<u64>(self, out, |v| v as f32),
            DType::I64 => conv::<i64>(self, out, |v| v as f32),
            DType::F32 => conv::<f32>(self, out, |v| v),
            DType::F64 => conv::<f64>(self, out, |v| v as f32),
            DType::C64 | DType::C128 => {
                bail!("complex tensors have no real value; take the magnitude first")
            }
        }
    }

    /// Describes this tensor for the ABI. The returned owner holds one new reference to the
    /// buffer, to be released with the returned `release` (from this library).
    pub fn to_ffi(&self, shape_buf: &mut Vec<i64>, stride_buf: &mut Vec<i64>) -> FfiTensor {
        shape_buf.clear();
        shape_buf.extend(self.shape.iter().map(|&n| n as i64));
        stride_buf.clear();
        stride_buf.extend(self.strides.iter().map(|&s| s as i64));
        let owner = Arc::into_raw(self.storage.clone()) as *mut c_void;
        FfiTensor {
            data: self.storage.ptr as *mut c_void,
            device: self.device.to_ffi(),
            ndim: self.shape.len() as i32,
            dtype: self.dtype.to_ffi(),
            shape: shape_buf.as_ptr(),
            strides: stride_buf.as_ptr(),
            byte_offset: self.byte_offset as u64,
            byte_len: self.storage.len as u64,
            owner,
            retain: retain_storage,
            release: release_storage,
        }
    }

    /// Wraps a tensor received through the ABI. With `take_ownership` the caller hands over one
    /// reference of the owner (emitted items); otherwise it is retained here (borrowed inputs).
    ///
    /// # Safety
    /// `t` must be a valid `FfiTensor` per the ABI rules.
    pub unsafe fn from_ffi(t: &FfiTensor, take_ownership: bool) -> Result<Tensor> {
        let release_on_error = |t: &FfiTensor| {
            if take_ownership {
                // SAFETY: we were handed one reference and will not use it.
                unsafe { (t.release)(t.owner) };
            }
        };
        let (Some(dtype), Some(device)) = (DType::from_ffi(t.dtype), Device::from_ffi(t.device))
        else {
            release_on_error(t);
            bail!(
                "unsupported tensor dtype {:?} or device {:?}",
                t.dtype,
                t.device
            );
        };
        if t.ndim < 0 || t.shape.is_null() || t.strides.is_null() {
            release_on_error(t);
            bail!("malformed tensor (ndim {}, null shape or strides)", t.ndim);
        }
        let n = t.ndim as usize;
        // SAFETY: the ABI guarantees `ndim` entries behind both pointers for this call.
        let shape_raw = unsafe { std::slice::from_raw_parts(t.shape, n) };
        let strides_raw = unsafe { std::slice::from_raw_parts(t.strides, n) };
        if shape_raw.iter().any(|&s| s < 0) {
            release_on_error(t);
            bail!("negative tensor shape {shape_raw:?}");
        }
        let shape: Vec<usize> = shape_raw.iter().map(|&s| s as usize).collect();
        let strides: Vec<isize> = strides_raw.iter().map(|&s| s as isize).collect();
        if device == Device::Cpu {
            let needed = t.byte_offset as usize + extent(&shape, &strides) * dtype.size();
            if needed > t.byte_len as usize || strides.iter().any(|&s| s < 0) {
                release_on_error(t);
                bail!(
                    "tensor of shape {shape:?} reaches past its {} byte buffer",
                    t.byte_len
                );
            }
        }
        if !take_ownership {
            // SAFETY: valid owner per the ABI; balanced by `release` in Storage::drop.
            unsafe { (t.retain)(t.owner) };
        }
        Ok(Tensor {
            storage: Arc::new(Storage {
                ptr: t.data as *mut u8,
                len: t.byte_len as usize,
                holder: Holder::Foreign {
                    owner: t.owner,
                    release: t.release,
                },
                guard: None,
            }),
            dtype,
            device,
            shape,
            strides,
            byte_offset: t.byte_offset as usize,
        })
    }
}

/// Number of elements a (non-negative) strided layout spans.
fn extent(shape: &[usize], strides: &[isize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(&n, &s)| (n - 1) * s.unsigned_abs())
        .sum::<usize>()
}

unsafe extern "C" fn retain_storage(owner: *mut c_void) {
    // SAFETY: `owner` came from Arc::into_raw in `to_ffi`.
    unsafe { Arc::increment_strong_count(owner as *const Storage) };
}

unsafe extern "C" fn release_storage(owner: *mut c_void) {
    // SAFETY: `owner` came from Arc::into_raw in `to_ffi`; one reference is given back.
    unsafe { Arc::decrement_strong_count(owner as *const Storage) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_layout_is_recognised_and_read_in_memory_order() {
        let data: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8).collect();
        let t =
            Tensor::from_vec_strided(data.clone(), &[2, 3, 3], &channels_last_strides(&[2, 3], 3));
        assert!(t.is_channels_last());
        assert!(t.dense_bytes().is_err(), "neither C nor F order");
        assert_eq!(t.channels_last_bytes().unwrap(), &data[..]);
        let plain = Tensor::volume(data, &[2, 3, 3]);
        assert!(!plain.is_channels_last());
        assert!(plain.channels_last_bytes().is_err());
    }

    #[test]
    fn ffi_round_trip_shares_the_buffer_and_releases_it() {
        let t = Tensor::volume((0..24u16).collect(), &[2, 3, 4]);
        let (mut s, mut st) = (Vec::new(), Vec::new());
        let ffi = t.to_ffi(&mut s, &mut st);
        let back = unsafe { Tensor::from_ffi(&ffi, true) }.unwrap();
        assert_eq!(back.shape(), &[2, 3, 4]);
        assert_eq!(back.strides(), &[1, 2, 6]);
        assert_eq!(back.as_slice::<u16>().unwrap()[23], 23);
        assert_eq!(
            back.as_slice::<u16>().unwrap().as_ptr(),
            t.as_slice::<u16>().unwrap().as_ptr(),
            "no copy"
        );
        assert_eq!(Arc::strong_count(&t.storage), 2);
        drop(back);
        assert_eq!(Arc::strong_count(&t.storage), 1);
    }

    #[test]
    fn from_ffi_rejects_out_of_bounds_strides() {
        let t = Tensor::from_vec(vec![0u8; 4], &[2, 2]);
        let (mut s, mut st) = (Vec::new(), Vec::new());
        let mut ffi = t.to_ffi(&mut s, &mut st);
        st[0] = 100;
        ffi.strides = st.as_ptr();
        assert!(unsafe { Tensor::from_ffi(&ffi, true) }.is_err());
        assert_eq!(Arc::strong_count(&t.storage), 1, "released on error");
    }

    #[test]
    fn into_vec_reuses_unique_buffer() {
        let v: Vec<f32> = vec![1.0, 2.0, 3.0];
        let p = v.as_ptr();
        let t = Tensor::from_vec(v, &[3]);
        let back = t.into_vec::<f32>().unwrap();
        assert_eq!(back.as_ptr(), p);
        assert!(Tensor::from_vec(vec![1u8], &[1]).into_vec::<f32>().is_err());
    }

    #[test]
    fn a_recycled_buffer_comes_back_once_every_handle_is_released() {
        use std::sync::Mutex;
        let back: Arc<Mutex<Vec<Vec<i16>>>> = Arc::default();
        let v: Vec<i16> = (0..24).collect();
        let p = v.as_ptr();
        let sink = back.clone();
        let t = Tensor::volume_recycled(v, &[2, 3, 4], move |v| sink.lock().unwrap().push(v));
        assert_eq!(t.strides(), &[1, 2, 6]);
        assert_eq!(t.as_slice::<i16>().unwrap()[23], 23);
        // A handle that crossed the ABI keeps the buffer from coming back.
        let (mut s, mut st) = (Vec::new(), Vec::new());
        let foreign = unsafe { Tensor::from_ffi(&t.to_ffi(&mut s, &mut st), true) }.unwrap();
        let copy = t.clone();
        drop(t);
        drop(copy);
        assert!(
            back.lock().unwrap().is_empty(),
            "still in use across the ABI"
        );
        drop(foreign);
        let got = back.lock().unwrap().pop().expect("buffer recycled");
        assert_eq!((got.as_ptr(), got.len()), (p, 24), "the same buffer, whole");

        // into_vec takes the buffer out: nothing is recycled.
        let sink = back.clone();
        let t = Tensor::volume_recycled(vec![7u8; 8], &[2, 2, 2], move |v: Vec<u8>| {
            sink.lock()
                .unwrap()
                .push(v.iter().map(|&b| b as i16).collect())
        });
        assert_eq!(t.into_vec::<u8>().unwrap(), vec![7u8; 8]);
        assert!(back.lock().unwrap().is_empty());
    }
}
