//! `watch.folder` as a loadable plugin library.

mindscan_sdk::export_plugin!(mindscan_plugin_watch::plugin_descriptor);
