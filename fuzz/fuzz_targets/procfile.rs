//! Procfiles, the buildpack driver's process lists, and `ps:scale` arguments.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(types) = berth::process::parse_procfile(&text) {
        assert!(types.len() <= berth::process::MAX_PROCESS_TYPES);
        for name in types.keys() {
            assert!(berth::validate::process_type(name).is_ok(), "{name:?}");
        }
    }
    let _ = berth::process::parse_process_list(&text);
    let args: Vec<String> = text.split_whitespace().map(String::from).collect();
    if let Ok(scale) = berth::process::parse_scale(&args) {
        assert!(scale.iter().all(|(_, n)| *n <= 100));
    }
});
