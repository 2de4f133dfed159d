//! app.json: healthchecks and deploy scripts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(checks) = berth::checks::parse_app_json(&text) {
        for c in checks {
            assert!(c.path.starts_with('/'));
            assert!(c.initial_delay <= berth::checks::MAX_INITIAL_DELAY);
        }
    }
    let _ = berth::process::parse_scripts(&text);
});
