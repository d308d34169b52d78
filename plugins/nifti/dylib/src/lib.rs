mindscan_sdk::export_plugin!(mindscan_plugin_nifti::plugin_descriptor);
