//! Fuzz target: `sluice_fuzz::spec` on arbitrary bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::spec(data));
