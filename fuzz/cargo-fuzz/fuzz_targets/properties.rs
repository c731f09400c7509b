//! libFuzzer entry of the `properties` target (`nacre_fuzz::properties`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::properties(data));
