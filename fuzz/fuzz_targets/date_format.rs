//! Fuzz target: `sluice_fuzz::date_format` on arbitrary bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::date_format(data));
