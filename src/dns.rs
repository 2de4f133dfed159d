//! DNS-01 (RFC 8555 §8.4): the TXT record an ACME server looks up at
//! `_acme-challenge.NAME` before it issues a certificate for `NAME` or `*.NAME`. A provider
//! puts it there and takes it away: RFC 2136 dynamic updates signed with TSIG (what BIND,
//! Knot, PowerDNS and many hosted DNS services accept), or a program of the admin's
//! (`PROGRAM present|cleanup FQDN VALUE`) for any DNS host's API. Before the CA is asked
//! to validate, the record must be visible where the CA will look: at the zone's
//! authoritative servers (the RFC 2136 server itself, or those the zone's NS records name),
//! or at the server `dns-check-server` names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_client::client::{Client, ClientHandle};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{MessageFinalizer, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::udp::UdpClientStream;
use serde::{Deserialize, Serialize};

/// How long one DNS exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The TTL of a challenge record: short, it lives for one validation.
const CHALLENGE_TTL: u32 = 60;
/// How long a provider's program may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0}")]
    Invalid(String),
    #[error("the DNS server {server} {what}")]
    Server { server: String, what: String },
    #[error("{0}")]
    Exec(String),
    #[error("{0}")]
    NotVisible(String),
}

/// `letsencrypt:set --global dns-*`: kept in `<root>/letsencrypt/dns.toml` (0600), for the
/// key's secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSettings {
    /// `rfc2136` or `exec`; None: no DNS-01 (HTTP-01 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc2136_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc2136_key_name: Option<String>,
    /// Base64, as `tsig-keygen` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc2136_key_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc2136_key_algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_path: Option<String>,
    /// Where to see the record arrive, instead of the zone's authoritative servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_server: Option<String>,
}

/// The properties, as `letsencrypt:set --global` names them.
pub const PROPERTIES: &[&str] =
    &["dns-provider", "dns-rfc2136-server", "dns-rfc2136-key-name", "dns-rfc2136-key-secret", "dns-rfc2136-key-algorithm", "dns-exec-path", "dns-check-server"];

impl DnsSettings {
    /// Sets one property (None: unsets it), checking its value alone.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), DnsError> {
        let value = value.map(str::to_string);
        if let Some(v) = &value {
            match key {
                "dns-provider" if !["rfc2136", "exec"].contains(&v.as_str()) => {
                    return Err(DnsError::Invalid(format!("Unknown dns-provider {}: rfc2136 or exec", crate::validate::quoted(v))));
                }
                "dns-rfc2136-server" | "dns-check-server" => {
                    server_addr(v)?;
                }
                "dns-rfc2136-key-name" => {
                    Name::from_ascii(v).map_err(|_| DnsError::Invalid(format!("Invalid {key} {}: a DNS name, as in the server's key statement", crate::validate::quoted(v))))?;
                }
                "dns-rfc2136-key-secret" => {
                    secret(v)?;
                }
                "dns-rfc2136-key-algorithm" => {
                    algorithm(v)?;
                }
                "dns-exec-path" => {
                    let path = std::path::Path::new(v);
                    let runs = std::fs::metadata(path).is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
                    if !path.is_absolute() || !runs {
                        return Err(DnsError::Invalid(format!("Invalid dns-exec-path {}: the absolute path of an executable on this server", crate::validate::quoted(v))));
                    }
                }
                _ => {}
            }
        }
        let slot = match key {
            "dns-provider" => &mut self.provider,
            "dns-rfc2136-server" => &mut self.rfc2136_server,
            "dns-rfc2136-key-name" => &mut self.rfc2136_key_name,
            "dns-rfc2136-key-secret" => &mut self.rfc2136_key_secret,
            "dns-rfc2136-key-algorithm" => &mut self.rfc2136_key_algorithm,
            "dns-exec-path" => &mut self.exec_path,
            "dns-check-server" => &mut self.check_server,
            _ => return Err(DnsError::Invalid(format!("Unknown property {key}"))),
        };
        *slot = value;
        Ok(())
    }

    /// A property's value as reports show it: the secret never.
    pub fn shown(&self, key: &str) -> String {
        let value = match key {
            "dns-provider" => &self.provider,
            "dns-rfc2136-server" => &self.rfc2136_server,
            "dns-rfc2136-key-name" => &self.rfc2136_key_name,
            "dns-rfc2136-key-secret" => return self.rfc2136_key_secret.as_ref().map(|_| "****".to_string()).unwrap_or_default(),
            "dns-rfc2136-key-algorithm" => &self.rfc2136_key_algorithm,
            "dns-exec-path" => &self.exec_path,
            "dns-check-server" => &self.check_server,
            _ => &None,
        };
        value.clone().unwrap_or_default()
    }

    /// The provider these settings make, or None without `dns-provider`; what is missing is
    /// said.
    pub fn provider(&self) -> Result<Option<Provider>, DnsError> {
        let check = self.check_server.as_deref().map(server_addr).transpose()?;
        let missing = |what: &str| DnsError::Invalid(format!("dns-provider {} needs {what}: letsencrypt:set --global {what} VALUE", self.provider.as_deref().unwrap_or_default()));
        Ok(match self.provider.as_deref() {
            None => None,
            Some("rfc2136") => {
                let server = server_addr(self.rfc2136_server.as_deref().ok_or_else(|| missing("dns-rfc2136-server"))?)?;
                let name = self.rfc2136_key_name.as_deref().ok_or_else(|| missing("dns-rfc2136-key-name"))?;
                let key = secret(self.rfc2136_key_secret.as_deref().ok_or_else(|| missing("dns-rfc2136-key-secret"))?)?;
                let algorithm = algorithm(self.rfc2136_key_algorithm.as_deref().unwrap_or("hmac-sha256"))?;
                let key_name = Name::from_ascii(name).map_err(|e| DnsError::Invalid(format!("Invalid dns-rfc2136-key-name: {e}")))?;
                let signer = TSigner::new(key, algorithm, key_name, 300).map_err(|e| DnsError::Invalid(format!("Invalid TSIG key: {e}")))?;
                Some(Provider { how: How::Rfc2136 { server, signer }, check })
            }
            Some("exec") => Some(Provider { how: How::Exec(PathBuf::from(self.exec_path.as_deref().ok_or_else(|| missing("dns-exec-path"))?)), check }),
            Some(other) => return Err(DnsError::Invalid(format!("Unknown dns-provider {other}"))),
        })
    }
}

fn server_addr(text: &str) -> Result<SocketAddr, DnsError> {
    let with_port = if text.parse::<std::net::IpAddr>().is_ok() { format!("{text}:53") } else { text.to_string() };
    with_port.parse().map_err(|_| DnsError::Invalid(format!("Invalid DNS server {}: an IP address, with :PORT when not 53", crate::validate::quoted(text))))
}

fn secret(text: &str) -> Result<Vec<u8>, DnsError> {
    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(DnsError::Invalid("Invalid dns-rfc2136-key-secret: the key's base64 secret, as tsig-keygen prints it".into())),
    }
}

fn algorithm(text: &str) -> Result<TsigAlgorithm, DnsError> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let name = if name.starts_with("hmac-") { name } else { format!("hmac-{name}") };
    match name.as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(DnsError::Invalid(format!("Invalid dns-rfc2136-key-algorithm {}: hmac-sha256, hmac-sha384 or hmac-sha512", crate::validate::quoted(text)))),
    }
}

/// Where challenge records go, and where berth sees them arrive.
pub struct Provider {
    how: How,
    check: Option<SocketAddr>,
}

enum How {
    Rfc2136 { server: SocketAddr, signer: TSigner },
    Exec(PathBuf),
}

/// `_acme-challenge.NAME` of a name to certify (`*.NAME` as `NAME`).
pub fn challenge_name(domain: &str) -> String {
    format!("_acme-challenge.{}", domain.trim_start_matches("*."))
}

impl Provider {
    pub fn describe(&self) -> String {
        match &self.how {
            How::Rfc2136 { server, .. } => format!("RFC 2136 updates to {server}"),
            How::Exec(path) => path.display().to_string(),
        }
    }

    /// Whether a failed `present` may have put the record all the same (a program may fail
    /// halfway; an RFC 2136 update is all or nothing).
    pub fn may_leave_records(&self) -> bool {
        matches!(self.how, How::Exec(_))
    }

    /// Puts the TXT record `fqdn` = `value` (beside any other value it has).
    pub async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        match &self.how {
            How::Rfc2136 { server, signer } => update(*server, signer, fqdn, value, true).await,
            How::Exec(path) => exec(path, "present", fqdn, value).await,
        }
    }

    /// Takes that value away again (gone already is fine).
    pub async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        match &self.how {
            How::Rfc2136 { server, signer } => update(*server, signer, fqdn, value, false).await,
            How::Exec(path) => exec(path, "cleanup", fqdn, value).await,
        }
    }

    /// Waits until every server the CA may ask answers `value` for `fqdn`, polling fast at
    /// first; refused after `limit`.
    pub async fn wait_visible(&self, fqdn: &str, value: &str, limit: Duration) -> Result<(), DnsError> {
        let started = Instant::now();
        let servers = match (&self.check, &self.how) {
            (Some(check), _) => vec![*check],
            (None, How::Rfc2136 { server, .. }) => vec![*server],
            (None, How::Exec(_)) => authoritative_servers(fqdn).await?,
        };
        let mut pause = Duration::from_millis(50);
        loop {
            let mut missing = Vec::new();
            for server in &servers {
                if !txt_values(*server, fqdn).await.unwrap_or_default().iter().any(|v| v == value) {
                    missing.push(server.to_string());
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(DnsError::NotVisible(format!(
                    "the TXT record {fqdn} did not appear at {} within {}s (does the provider serve that zone?)",
                    missing.join(", "),
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

async fn tcp_client(server: SocketAddr, signer: Option<Arc<dyn MessageFinalizer>>) -> Result<Client, DnsError> {
    let unreachable = |e: hickory_proto::ProtoError| DnsError::Server { server: server.to_string(), what: format!("cannot be reached: {e}") };
    let (stream, handle) = TcpClientStream::new(server, None, Some(EXCHANGE_TIMEOUT), TokioRuntimeProvider::new());
    let (client, background) = Client::with_timeout(stream, handle, EXCHANGE_TIMEOUT, signer).await.map_err(unreachable)?;
    tokio::spawn(background);
    Ok(client)
}

async fn udp_client(server: SocketAddr) -> Result<Client, DnsError> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::new()).with_timeout(Some(EXCHANGE_TIMEOUT)).build();
    let (client, background) = Client::connect(stream).await.map_err(|e| DnsError::Server { server: server.to_string(), what: format!("cannot be reached: {e}") })?;
    tokio::spawn(background);
    Ok(client)
}

fn dns_name(fqdn: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(fqdn).map_err(|e| DnsError::Invalid(format!("{fqdn} is not a DNS name: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The zone `fqdn` is in, as `server` (one of its authoritative servers) says: the SOA
/// record's owner in its answer or authority section.
async fn zone_of(client: &mut Client, server: SocketAddr, fqdn: &Name) -> Result<Name, DnsError> {
    let failed = |e: hickory_client::ClientError| DnsError::Server { server: server.to_string(), what: format!("did not answer: {e}") };
    let mut name = fqdn.clone();
    loop {
        let response = client.query(name.clone(), DNSClass::IN, RecordType::SOA).await.map_err(failed)?;
        let soa = response.answers().iter().chain(response.name_servers()).find(|r| r.record_type() == RecordType::SOA);
        if let Some(soa) = soa {
            return Ok(soa.name().clone());
        }
        if name.is_root() {
            return Err(DnsError::Server { server: server.to_string(), what: format!("serves no zone of {fqdn}") });
        }
        name = name.base_name();
    }
}

/// One RFC 2136 update, signed: adds (`add`) or deletes the TXT value.
async fn update(server: SocketAddr, signer: &TSigner, fqdn: &str, value: &str, add: bool) -> Result<(), DnsError> {
    let name = dns_name(fqdn)?;
    let zone = zone_of(&mut udp_client(server).await?, server, &name).await?;
    let mut client = tcp_client(server, Some(Arc::new(signer.clone()))).await?;
    let record = Record::from_rdata(name, CHALLENGE_TTL, RData::TXT(TXT::new(vec![value.to_string()])));
    let sent = if add { client.append(record, zone.clone(), false).await } else { client.delete_by_rdata(record, zone.clone()).await };
    let response = sent.map_err(|e| {
        // A server that rejects the key answers with an empty MAC (BADSIG, BADKEY), which
        // hickory cannot verify and reports as a truncated HMAC.
        let why = if format!("{e:?}").contains("truncated HMAC") { "its answer carries no valid signature: the TSIG key (name, secret or algorithm) is not the server's".to_string() } else { crate::with_causes(&e) };
        DnsError::Server { server: server.to_string(), what: format!("refused the update of {fqdn}: {why}") }
    })?;
    match response.response_code() {
        ResponseCode::NoError => Ok(()),
        code => Err(DnsError::Server {
            server: server.to_string(),
            what: format!("refused the update of {fqdn} in zone {zone}: {code} (is the TSIG key right, and may it update that zone?)"),
        }),
    }
}

/// The TXT values `server` answers for `fqdn` (none: an empty list).
async fn txt_values(server: SocketAddr, fqdn: &str) -> Result<Vec<String>, DnsError> {
    let mut client = udp_client(server).await?;
    let response = client.query(dns_name(fqdn)?, DNSClass::IN, RecordType::TXT).await.map_err(|e| DnsError::Server { server: server.to_string(), what: e.to_string() })?;
    Ok(response
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(txt.txt_data().iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect::<String>()),
            _ => None,
        })
        .collect())
}

/// The addresses of the zone's authoritative servers (port 53), found through this
/// machine's resolver (`/etc/resolv.conf`).
async fn authoritative_servers(fqdn: &str) -> Result<Vec<SocketAddr>, DnsError> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolver = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| DnsError::NotVisible("no resolver in /etc/resolv.conf to find the zone's servers (letsencrypt:set --global dns-check-server ADDRESS)".into()))?;
    let resolver = SocketAddr::new(resolver, 53);
    let mut client = udp_client(resolver).await?;
    let zone = zone_of(&mut client, resolver, &dns_name(fqdn)?).await?;
    let failed = |e: hickory_client::ClientError| DnsError::Server { server: resolver.to_string(), what: e.to_string() };
    let ns = client.query(zone.clone(), DNSClass::IN, RecordType::NS).await.map_err(failed)?;
    let mut servers = Vec::new();
    for host in ns.answers().iter().filter_map(|r| match r.data() { RData::NS(ns) => Some(ns.0.clone()), _ => None }) {
        let found = client.query(host, DNSClass::IN, RecordType::A).await.map_err(failed)?;
        servers.extend(found.answers().iter().filter_map(|r| match r.data() { RData::A(a) => Some(SocketAddr::new(a.0.into(), 53)), _ => None }));
    }
    if servers.is_empty() {
        return Err(DnsError::NotVisible(format!("no authoritative server of {zone} was found (letsencrypt:set --global dns-check-server ADDRESS)")));
    }
    Ok(servers)
}

/// `PROGRAM ACTION FQDN VALUE`, with no input; its last line on stderr says why it failed.
async fn exec(path: &std::path::Path, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
    let run = tokio::process::Command::new(path).args([action, fqdn, value]).stdin(std::process::Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(EXEC_TIMEOUT, run)
        .await
        .map_err(|_| DnsError::Exec(format!("{} {action} {fqdn} did not finish within {}s", path.display(), EXEC_TIMEOUT.as_secs())))?
        .map_err(|e| DnsError::Exec(format!("cannot run {}: {e}", path.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(crate::one_line).unwrap_or_else(|| "no message".into());
    Err(DnsError::Exec(format!("{} {action} {fqdn} failed ({}): {why}", path.display(), out.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_secret_never_shown() {
        let mut s = DnsSettings::default();
        assert!(s.set("dns-provider", Some("route53")).unwrap_err().to_string().contains("Unknown dns-provider"));
        assert!(s.set("dns-rfc2136-key-secret", Some("not base64!")).unwrap_err().to_string().contains("base64"));
        assert!(s.set("dns-rfc2136-key-algorithm", Some("hmac-md5")).is_err());
        assert!(s.set("dns-rfc2136-server", Some("ns1.example.com")).is_err());
        assert!(s.set("dns-exec-path", Some("relative/hook")).is_err());
        s.set("dns-provider", Some("rfc2136")).unwrap();
        assert!(s.provider().err().unwrap().to_string().contains("needs dns-rfc2136-server"));
        s.set("dns-rfc2136-server", Some("127.0.0.1:5353")).unwrap();
        s.set("dns-rfc2136-key-name", Some("berth-key")).unwrap();
        s.set("dns-rfc2136-key-secret", Some("c2VjcmV0LXNlY3JldC1zZWNyZXQ=")).unwrap();
        s.set("dns-rfc2136-key-algorithm", Some("sha512")).unwrap();
        assert!(s.provider().unwrap().unwrap().describe().contains("127.0.0.1:5353"));
        assert_eq!(s.shown("dns-rfc2136-key-secret"), "****");
        assert_eq!(s.shown("dns-rfc2136-server"), "127.0.0.1:5353");
        assert_eq!(challenge_name("*.example.com"), "_acme-challenge.example.com");
        assert_eq!(challenge_name("example.com"), "_acme-challenge.example.com");
        assert_eq!(server_addr("10.0.0.1").unwrap().port(), 53);
    }
}
