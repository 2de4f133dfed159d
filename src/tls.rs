//! Certificates, as berth checks and makes them. Pure: no files, no network.
//!
//! A certificate reaches berth three ways (Let's Encrypt, `certs:add`, `certs:generate`);
//! each ends as a [`Bundle`]: the PEM chain (leaf first) and its private key, checked here
//! to parse, to be in date and to belong together before anything is written.

use std::io::Read;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The most `certs:add` reads from stdin: a chain and a key are a few KiB.
pub const MAX_TAR: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TlsError {
    #[error("{0}")]
    Bad(String),
}

fn bad(msg: impl Into<String>) -> TlsError {
    TlsError::Bad(msg.into())
}

/// What a user wants to know of a certificate (the leaf of a chain).
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names of the subjectAltName extension (the CN when there is none).
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// Hex, no separators.
    pub serial: String,
    pub self_signed: bool,
}

impl CertInfo {
    /// Whether the certificate is valid for `domain` (exact name, or a `*.` wildcard one
    /// label deep).
    pub fn covers(&self, domain: &str) -> bool {
        self.names.iter().any(|name| covers(name, domain))
    }

    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// `name` (from a certificate) matches `domain` as TLS clients match it.
pub fn covers(name: &str, domain: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(parent) => domain.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == domain,
    }
}

/// A certificate chain and its key, checked to belong together.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub chain_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
}

impl Bundle {
    /// Checks a chain and key: both parse, belong together, and the leaf is in date now.
    pub fn new(chain_pem: &str, key_pem: &str, now: i64) -> Result<Bundle, TlsError> {
        let bundle = Bundle::parse(chain_pem, key_pem)?;
        let info = &bundle.info;
        if info.not_after <= now {
            return Err(bad(format!("the certificate expired on {} UTC", utc(info.not_after))));
        }
        if info.not_before > now + 300 {
            return Err(bad(format!("the certificate is not valid before {} UTC", utc(info.not_before))));
        }
        Ok(bundle)
    }

    /// Checks that a chain and key parse and (for PKCS#8 keys, which berth can read) that
    /// the key is the leaf's. nginx checks other key formats when it loads them.
    fn parse(chain_pem: &str, key_pem: &str) -> Result<Bundle, TlsError> {
        let chain = pem_blocks(chain_pem.as_bytes(), "certificate")?;
        let leaf = chain.iter().find(|p| p.label == "CERTIFICATE").ok_or_else(|| bad("the certificate file holds no PEM certificate"))?;
        let info = cert_info(leaf)?;
        let keys = pem_blocks(key_pem.as_bytes(), "key")?;
        let key = match keys.as_slice() {
            [key] if key.label.contains("ENCRYPTED") => return Err(bad("the private key is encrypted: give berth the key without a passphrase")),
            [key] if key.label.ends_with("PRIVATE KEY") => key,
            _ => return Err(bad("the key file must hold exactly one PEM private key")),
        };
        if key.label == "PRIVATE KEY" {
            let pair = rcgen::KeyPair::try_from(key.contents.as_slice()).map_err(|_| bad("the private key cannot be read (PKCS#8 PEM expected)"))?;
            let x509 = leaf.parse_x509().map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
            if x509.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
                return Err(bad("the private key does not match the certificate"));
            }
        }
        Ok(Bundle { chain_pem: normalize(chain_pem), key_pem: normalize(key_pem), info })
    }

    /// What nginx reads: the chain, then the key, in one file (written atomically, so a
    /// reload can never see a certificate with the wrong key).
    pub fn nginx_pem(&self) -> String {
        format!("{}{}", self.chain_pem, self.key_pem)
    }

    /// Reads back a file written by [`Bundle::nginx_pem`] (expired or not: it is what is
    /// installed).
    pub fn from_nginx_pem(text: &str) -> Result<Bundle, TlsError> {
        let key_at = text
            .match_indices("-----BEGIN ")
            .map(|(i, _)| i)
            .find(|&i| text[i..].lines().next().is_some_and(|l| l.contains("PRIVATE KEY")))
            .ok_or_else(|| bad("no private key in the bundle"))?;
        Bundle::parse(&text[..key_at], &text[key_at..])
    }
}

fn normalize(pem: &str) -> String {
    let trimmed = pem.trim();
    format!("{trimmed}\n")
}

fn pem_blocks(bytes: &[u8], what: &str) -> Result<Vec<Pem>, TlsError> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        blocks.push(block.map_err(|_| bad(format!("the {what} file is not valid PEM")))?);
    }
    if blocks.is_empty() {
        return Err(bad(format!("the {what} file is not PEM (-----BEGIN …)")));
    }
    Ok(blocks)
}

fn cert_info(pem: &Pem) -> Result<CertInfo, TlsError> {
    let x509 = pem.parse_x509().map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
    let mut names: Vec<String> = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(x509.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    let serial = x509.raw_serial().iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        names,
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
        serial,
        self_signed: x509.subject() == x509.issuer(),
    })
}

/// A new ECDSA P-256 key and a CSR for `domains` (the first is the subject).
pub fn key_and_csr(domains: &[String]) -> Result<(String, Vec<u8>), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| bad(format!("cannot generate a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| bad(format!("cannot make a CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| bad(format!("cannot make a CSR: {e}")))?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// A self-signed certificate for `domains`, valid from now for `days`.
pub fn self_signed(domains: &[String], days: i64, now: i64) -> Result<Bundle, TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| bad(format!("cannot generate a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| bad(format!("cannot make a certificate: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, domains.first().cloned().unwrap_or_default());
    dn.push(rcgen::DnType::OrganizationName, "berth self-signed");
    params.distinguished_name = dn;
    let start = time_at(now - 60)?;
    params.not_before = start;
    params.not_after = time_at(now + days * 86_400)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>().map(|b| b & 0x7f)));
    let cert = params.self_signed(&key).map_err(|e| bad(format!("cannot make a certificate: {e}")))?;
    Bundle::new(&cert.pem(), &key.serialize_pem(), now)
}

fn time_at(unix: i64) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| bad(format!("bad time: {e}")))
}

/// The certificate and key of a `certs:add` tar, as dokku takes it: `server.crt` (the chain)
/// and `server.key`, at any depth. Anything else in the tar is ignored; nothing is written.
pub fn read_cert_tar(bytes: &[u8]) -> Result<(String, String), TlsError> {
    if bytes.len() > MAX_TAR {
        return Err(bad(format!("the tar is too large (over {} KiB): send server.crt and server.key only", MAX_TAR / 1024)));
    }
    if bytes.len() < 512 || !looks_like_tar(bytes) {
        return Err(bad("stdin is not a tar: send one with server.crt and server.key (tar c server.crt server.key | ssh … certs:add APP)"));
    }
    let mut archive = tar::Archive::new(bytes);
    let mut crt = None;
    let mut key = None;
    let entries = archive.entries().map_err(|_| bad("stdin is not a tar"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the tar is damaged: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|_| bad("the tar has a bad file name"))?.into_owned();
        let slot = match path.file_name().and_then(|n| n.to_str()) {
            Some("server.crt") => &mut crt,
            Some("server.key") => &mut key,
            _ => continue,
        };
        let mut text = String::new();
        // The tar is already bounded by MAX_TAR, so one entry is too.
        entry.by_ref().take(MAX_TAR as u64).read_to_string(&mut text).map_err(|_| bad(format!("{} is not text", path.display())))?;
        *slot = Some(text);
    }
    match (crt, key) {
        (Some(c), Some(k)) => Ok((c, k)),
        (None, Some(_)) => Err(bad("the tar has no server.crt (the certificate chain, PEM)")),
        (Some(_), None) => Err(bad("the tar has no server.key (the private key, PEM)")),
        (None, None) => Err(bad("the tar has neither server.crt nor server.key")),
    }
}

/// A ustar/GNU header: the magic at 257 and a valid header checksum.
pub(crate) fn looks_like_tar(bytes: &[u8]) -> bool {
    let header = &bytes[..512];
    if &header[257..262] != b"ustar" {
        return false;
    }
    let stored = std::str::from_utf8(&header[148..156]).ok().map(|s| s.trim_matches(|c: char| c == '\0' || c == ' ')).and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = header.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    stored == Some(sum)
}

/// `YYYY-MM-DD HH:MM` UTC.
pub fn utc(unix: i64) -> String {
    crate::output::utc(unix.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        crate::unix_now() as i64
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("Example.com", "example.com"));
    }

    #[test]
    fn self_signed_round_trips_through_the_nginx_file() {
        let bundle = self_signed(&["a.example.com".into(), "b.example.com".into()], 30, now()).unwrap();
        assert_eq!(bundle.info.names, vec!["a.example.com", "b.example.com"]);
        assert!(bundle.info.self_signed);
        assert!(bundle.info.covers("b.example.com"));
        assert!((29..=30).contains(&bundle.info.days_left(now())));
        let back = Bundle::from_nginx_pem(&bundle.nginx_pem()).unwrap();
        assert_eq!(back.info, bundle.info);
        assert_eq!(back.key_pem, bundle.key_pem);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let one = self_signed(&["a.example.com".into()], 30, now()).unwrap();
        let two = self_signed(&["a.example.com".into()], 30, now()).unwrap();
        assert_eq!(Bundle::new(&one.chain_pem, &two.key_pem, now()).unwrap_err(), bad("the private key does not match the certificate"));
    }

    #[test]
    fn expired_and_garbage_certificates_are_refused() {
        let old = self_signed(&["a.example.com".into()], 1, now() - 10 * 86_400).unwrap();
        let err = Bundle::new(&old.chain_pem, &old.key_pem, now()).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(Bundle::new("hello", &old.key_pem, now()).unwrap_err().to_string().contains("not PEM"));
        assert!(Bundle::new(&old.chain_pem, "", now() - 10 * 86_400).is_err());
    }

    #[test]
    fn a_csr_is_made_for_every_domain() {
        let (key, csr) = key_and_csr(&["a.example.com".into(), "b.example.com".into()]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert!(!csr.is_empty());
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn cert_tars_need_both_files_and_a_bounded_size() {
        let ok = tar_of(&[("dir/server.crt", b"C"), ("dir/server.key", b"K"), ("README", b"x")]);
        assert_eq!(read_cert_tar(&ok).unwrap(), ("C".into(), "K".into()));
        let no_key = tar_of(&[("server.crt", b"C")]);
        assert!(read_cert_tar(&no_key).unwrap_err().to_string().contains("server.key"));
        assert!(read_cert_tar(b"garbage garbage").unwrap_err().to_string().contains("not a tar"));
        assert!(read_cert_tar(&[7u8; 4096]).unwrap_err().to_string().contains("not a tar"));
        let big = vec![0u8; MAX_TAR + 1];
        assert!(read_cert_tar(&big).unwrap_err().to_string().contains("too large"));
    }
}
