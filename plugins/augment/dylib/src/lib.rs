mindscan_sdk::export_plugin!(mindscan_plugin_augment::plugin_descriptor);
