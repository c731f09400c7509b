//! libFuzzer entry of the `listening_configs` target (`nacre_fuzz::listening_configs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::listening_configs(data));
