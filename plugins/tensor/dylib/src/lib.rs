mindscan_sdk::export_plugin!(mindscan_plugin_tensor::plugin_descriptor);
