//! A shared library that exports something, but not `mindscan_plugin_entry`.

/// Not the entry symbol.
#[unsafe(no_mangle)]
pub extern "C" fn mindscan_plugin_version() -> u32 {
    42
}
