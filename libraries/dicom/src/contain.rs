//! Containment for third-party decoders: dicom-rs's RLE and JPEG decoders index out of bounds
//! (panic) when Rows, Columns or SamplesPerPixel disagree with the compressed stream. A hostile
//! file must give an error that names it, not a panic that takes the stage down and prints a
//! backtrace hint with no file in it.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs contained code: its panics are reported as errors, so the
    /// default hook's message would only be noise.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Runs `f`; a panic inside it becomes `Err` with the panic's message.
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::contain;

    #[test]
    fn a_panic_becomes_its_message() {
        let v: Vec<u8> = Vec::new();
        let index = v.len() + 3;
        let err = contain(|| v[index]).unwrap_err();
        assert!(err.contains("index out of bounds"), "{err}");
        assert_eq!(contain(|| 7).unwrap(), 7);
    }
}
