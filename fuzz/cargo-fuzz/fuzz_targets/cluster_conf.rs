//! libFuzzer entry of the `cluster_conf` target (`nacre_fuzz::cluster_conf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nacre_fuzz::cluster_conf(data));
