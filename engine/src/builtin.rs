//! First-party plugins linked into the binary. They go through the same C ABI as libraries
//! loaded from disk; only the lookup of the descriptor differs.

use mindscan_sdk::abi::PluginDescriptor;

pub fn descriptors() -> Vec<*const PluginDescriptor> {
    vec![
        mindscan_plugin_nifti::plugin_descriptor(),
        mindscan_plugin_imaging::plugin_descriptor(),
        mindscan_plugin_dicom::plugin_descriptor(),
        mindscan_plugin_watch::plugin_descriptor(),
        mindscan_plugin_augment::plugin_descriptor(),
        mindscan_plugin_tensor::plugin_descriptor(),
        mindscan_plugin_diffusion::plugin_descriptor(),
        mindscan_plugin_volume::plugin_descriptor(),
        mindscan_plugin_queue::plugin_descriptor(),
    ]
}

/// The JPEG encoder the imaging plugin was built with (`--version` names it; benchmarks
/// record it).
pub const JPEG_ENCODER: &str = mindscan_plugin_imaging::core::encode::JPEG_ENCODER;
