//! libFuzzer entry of the `http_params` target (`nacre_fuzz::http_params`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::http_params(data));
