//! The TOML state files, as a damaged or hand-edited file may read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = toml::from_str::<berth::store::AppConfig>(&text);
    let _ = toml::from_str::<berth::store::GlobalConfig>(&text).map(|g| g.allowed_host_ports());
    let _ = toml::from_str::<berth::store::Releases>(&text).map(|r| r.active().map(|a| a.types()));
    let _ = toml::from_str::<berth::store::AuthorizedKeys>(&text);
    let _ = toml::from_str::<berth::store::TlsState>(&text);
});
