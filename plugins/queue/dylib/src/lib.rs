mindscan_sdk::export_plugin!(mindscan_plugin_queue::plugin_descriptor);
