//! `certs:add`'s tar and the certificate bundles berth reads back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((chain, key)) = berth::tls::read_cert_tar(data) {
        let _ = berth::tls::Bundle::new(&chain, &key, 0);
    }
    let _ = berth::tls::Bundle::from_nginx_pem(&String::from_utf8_lossy(data));
});
