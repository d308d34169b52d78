mindscan_sdk::export_plugin!(mindscan_plugin_diffusion::plugin_descriptor);
