//! The TOML state files, as a damaged or hand-edited file may read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = toml::from_str::<berth::store::AppConfig>(&text);
    let _ = toml::from_str::<berth::store::GlobalConfig>(&text).map(|g| g.allowed_host_ports());
    if let Ok(mut releases) = toml::from_str::<berth::store::Releases>(&text) {
        let _ = releases.active().map(|a| a.types());
        // A history berth accepts stays one it accepts after compaction.
        if releases.check().is_ok() {
            let _ = releases.compact(3);
            assert!(releases.check().is_ok(), "compaction made an implausible history");
            assert!(releases.releases.len() <= 100);
        }
    }
    let _ = toml::from_str::<berth::store::AuthorizedKeys>(&text);
    let _ = toml::from_str::<berth::store::TlsState>(&text);
});
