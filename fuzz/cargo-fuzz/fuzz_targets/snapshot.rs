//! libFuzzer entry of the `snapshot` target (`nacre_fuzz::snapshot`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::snapshot(data));
