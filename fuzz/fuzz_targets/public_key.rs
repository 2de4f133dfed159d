//! `ssh-keys:add`'s stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = berth::commands::keys::parse_public_key(&String::from_utf8_lossy(data));
});
