//! `dicom.read` as a loadable plugin library.

mindscan_sdk::export_plugin!(mindscan_plugin_dicom::plugin_descriptor);
