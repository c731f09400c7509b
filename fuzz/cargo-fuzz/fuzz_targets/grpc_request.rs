//! libFuzzer entry of the `grpc_request` target (`nacre_fuzz::grpc_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::grpc_request(data));
