//! Replays every checked-in seed (`corpus/<target>/`) and every input that once failed
//! (`regressions/<target>/`) through the same check the fuzz target runs, in the ordinary test
//! suite, without libFuzzer.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = 0;
    for folder in ["corpus", "regressions"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                inputs += 1;
            }
        }
    }
    assert!(inputs >= 5, "{target} has only {inputs} seeds");
}

#[test]
fn spec_inputs_pass() {
    replay("spec", sluice_fuzz::spec);
}

#[test]
fn date_format_inputs_pass() {
    replay("date_format", sluice_fuzz::date_format);
}

#[test]
fn payload_inputs_pass() {
    replay("payload", sluice_fuzz::payload);
}
