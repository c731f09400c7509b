//! libFuzzer entry of the `peer_response` target (`nacre_fuzz::peer_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::peer_response(data));
