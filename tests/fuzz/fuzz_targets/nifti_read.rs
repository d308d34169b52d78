#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mindscan_fuzz_targets::nifti_read(data));
