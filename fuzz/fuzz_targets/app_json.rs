//! app.json: healthchecks, cron jobs and deploy scripts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(app_json) = berth::app_json::parse(&text) {
        for c in app_json.checks {
            assert!(c.path.starts_with('/'));
            assert!(c.initial_delay <= berth::app_json::MAX_INITIAL_DELAY);
        }
        assert!(app_json.cron.len() <= berth::app_json::MAX_JOBS);
    }
});
