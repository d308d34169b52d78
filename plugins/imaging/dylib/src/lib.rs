mindscan_sdk::export_plugin!(mindscan_plugin_imaging::plugin_descriptor);
