//! Fuzz target: `sluice_fuzz::payload` on arbitrary bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::payload(data));
