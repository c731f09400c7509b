//! libFuzzer entry of the `peer_request` target (`nacre_fuzz::peer_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::peer_request(data));
