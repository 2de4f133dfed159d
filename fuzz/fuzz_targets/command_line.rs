//! The SSH command line: split by shell-word rules, then parsed as a berth command.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Ok(words) = berth::server::ssh::split_command(line) {
        let _ = berth::commands::parse(&words);
    }
});
