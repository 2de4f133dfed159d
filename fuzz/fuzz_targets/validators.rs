//! Every validator of user input. What a validator accepts must be safe to render: domains
//! keep to [a-z0-9.-*], port maps and mounts round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use berth::validate;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = validate::domain(&text) {
        assert!(d.len() <= 253 && d.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-*".contains(c)), "{d:?}");
    }
    if let Ok(map) = validate::port_map(&text) {
        assert_eq!(validate::port_map(&map.to_string()).ok(), Some(map));
    }
    let _ = validate::mount(&text);
    let _ = validate::memory(&text);
    let _ = validate::cpus(&text);
    let _ = validate::env_pair(&text);
    if let Ok(name) = validate::app_name(&text) {
        // A path component of its own: no separator, no parent, not hidden.
        assert!(!name.contains('/') && !name.contains("..") && !name.starts_with('.'));
    }
    if let Ok(name) = validate::new_app_name(&text) {
        // What Docker's image names and DNS labels take.
        assert!(name.ends_with(|c: char| c.is_ascii_alphanumeric()) && !name.contains(".-") && !name.contains("-."));
    }
    let _ = validate::key_name(&text);
    let _ = validate::email(&text);
    let _ = validate::acme_server(&text);
    let _ = validate::quoted(&text);
    if let Ok(bp) = berth::buildpack::RemoteBuildpack::parse(&text) {
        assert!(bp.url.starts_with("https://") && !bp.url.contains('@'));
    }
    let refs = berth::dockerfile::image_refs(&text);
    let _ = berth::dockerfile::foreign_image("app", &refs);
});
