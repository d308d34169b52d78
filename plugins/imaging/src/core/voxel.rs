//! Voxel types: slices are cut in the volume's own dtype (a uint8 volume gives uint8 images, no
//! float copy of the volume), and only turned into display values when they are mapped to pixels.

use super::window::Window;

/// A real voxel type and its value as f32 (the precision every window computation uses).
pub trait Voxel: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;

    /// The slice itself when the type is f32 (lets f32 skip a conversion pass).
    fn as_f32(_s: &[Self]) -> Option<&[f32]> {
        None
    }
}

macro_rules! voxel {
    ($($t:ty),*) => { $(impl Voxel for $t {
        #[inline(always)]
        fn to_f32(self) -> f32 { self as f32 }
    })* };
}
voxel!(u8, i8, u16, i16, u32, i32, u64, i64, f64);

impl Voxel for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
}

/// A borrowed image or volume in any real dtype.
#[derive(Clone, Copy, Debug)]
pub enum Voxels<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    U32(&'a [u32]),
    I32(&'a [i32]),
    U64(&'a [u64]),
    I64(&'a [i64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Runs `$body` with `$s` bound to the typed slice inside `$v`.
macro_rules! with_voxels {
    ($v:expr, $s:ident => $body:expr) => {
        match $v {
            Voxels::U8($s) => $body,
            Voxels::I8($s) => $body,
            Voxels::U16($s) => $body,
            Voxels::I16($s) => $body,
            Voxels::U32($s) => $body,
            Voxels::I32($s) => $body,
            Voxels::U64($s) => $body,
            Voxels::I64($s) => $body,
            Voxels::F32($s) => $body,
            Voxels::F64($s) => $body,
        }
    };
}

impl Voxels<'_> {
    pub fn len(&self) -> usize {
        with_voxels!(*self, s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Min–max window of the finite values (see [`super::window::min_max`]).
    pub fn min_max(&self) -> Option<Window> {
        with_voxels!(*self, s => super::window::min_max(s))
    }

    /// See [`Window::map_u8_into`].
    pub fn map_u8_into(&self, window: &Window, dst: &mut [u8]) {
        with_voxels!(*self, s => window.map_u8_into(s, dst))
    }

    /// See [`Window::map_u16_into`].
    pub fn map_u16_into(&self, window: &Window, dst: &mut [u16]) {
        with_voxels!(*self, s => window.map_u16_into(s, dst))
    }

    pub fn map_u8(&self, window: &Window) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        self.map_u8_into(window, &mut out);
        out
    }

    pub fn map_u16(&self, window: &Window) -> Vec<u16> {
        let mut out = vec![0u16; self.len()];
        self.map_u16_into(window, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_pixels_map_like_their_float_values() {
        let ints: Vec<i16> = (-300..300).map(|v| v * 7).collect();
        let floats: Vec<f32> = ints.iter().map(|&v| v as f32).collect();
        let w = Window {
            lo: -1000.5,
            hi: 1234.0,
        };
        let px = Voxels::I16(&ints);
        assert_eq!(px.map_u8(&w), w.map_u8(&floats));
        assert_eq!(px.map_u16(&w), w.map_u16(&floats));
        assert_eq!(
            px.min_max(),
            Some(Window {
                lo: -2100.0,
                hi: 2093.0
            })
        );
        let bytes = [3u8, 250, 7];
        assert_eq!(
            Voxels::U8(&bytes).min_max(),
            Some(Window { lo: 3.0, hi: 250.0 })
        );
    }
}
