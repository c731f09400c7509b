//! libFuzzer entry of the `journal` target (`nacre_fuzz::journal`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::journal(data));
