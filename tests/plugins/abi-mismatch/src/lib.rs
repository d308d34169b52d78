//! A plugin library built for another (future) ABI: its descriptor says ABI version 999.
//! Written by hand, without the SDK macros, to mimic a foreign build.

use std::ffi::c_void;

/// Same leading layout as `mindscan_sdk::abi::PluginDescriptor`, with another version.
#[repr(C)]
pub struct ForeignDescriptor {
    pub abi_version: u32,
    pub name_ptr: *const u8,
    pub name_len: usize,
    pub version_ptr: *const u8,
    pub version_len: usize,
    pub stages: *const c_void,
    pub n_stages: usize,
}

struct Static(ForeignDescriptor);

// SAFETY: immutable static data.
unsafe impl Sync for Static {}

const NAME: &str = "abi-mismatch";
const VERSION: &str = "9.9.9";

static DESCRIPTOR: Static = Static(ForeignDescriptor {
    abi_version: 999,
    name_ptr: NAME.as_ptr(),
    name_len: NAME.len(),
    version_ptr: VERSION.as_ptr(),
    version_len: VERSION.len(),
    stages: std::ptr::null(),
    n_stages: 0,
});

/// The entry symbol the host looks up.
#[unsafe(no_mangle)]
pub extern "C" fn mindscan_plugin_entry() -> *const ForeignDescriptor {
    &DESCRIPTOR.0
}
