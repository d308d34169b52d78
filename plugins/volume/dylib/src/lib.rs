mindscan_sdk::export_plugin!(mindscan_plugin_volume::plugin_descriptor);
