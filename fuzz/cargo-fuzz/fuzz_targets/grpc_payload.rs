//! libFuzzer entry of the `grpc_payload` target (`nacre_fuzz::grpc_payload`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::grpc_payload(data));
