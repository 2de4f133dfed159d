//! The registry berth runs for its cluster (`cluster:init`, `cluster:registry --serve`):
//! Debian's `docker-registry`, listening on an address every server of the cluster reaches,
//! with TLS from a certificate authority berth keeps and a password only berth knows. Images
//! of swarm apps are pushed there after each build and pulled by digest on each server; the
//! password travels with each service (Swarm hands it to the servers that pull).
//!
//! Everything lives in `ROOT/cluster/registry/`: the CA (`ca.pem`, `ca-key.pem`), the
//! registry's certificate for its address, `htpasswd` (bcrypt, as docker-registry reads it),
//! `password`, `config.yml`, the images (`data/`) and `registry.log`. The CA is installed for
//! this server's engine in `/etc/docker/certs.d/ADDRESS/ca.crt`; `cluster:add` prints (or
//! runs over ssh) the same for each server that joins. The daemon runs the registry (killed
//! with it) and starts it again when it ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name berth pushes and services pull as.
pub const USERNAME: &str = "berth";

/// Where an engine on this machine looks for a registry's CA.
const CERTS_D: &str = "/etc/docker/certs.d";

/// How long the certificates last (the CA is made again with the registry's address).
const DAYS: i64 = 3650;

/// The files of the registry berth runs under one root.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

/// A registry's login, for a push and for the servers that pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub address: String,
    pub password: String,
}

impl Login {
    pub fn credentials(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials { username: Some(USERNAME.into()), password: Some(self.password.clone()), serveraddress: Some(self.address.clone()), ..Default::default() }
    }
}

impl Files {
    pub fn new(root: &Path) -> Files {
        Files { dir: root.join("cluster").join("registry") }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The address berth's registry listens on, when it runs one.
    pub fn address(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join("address")).ok()?;
        Some(text.trim().to_string()).filter(|a| !a.is_empty() && self.config().exists())
    }

    /// The login of berth's registry, when it runs one at `address`.
    pub fn login(&self, address: &str) -> Option<Login> {
        if self.address().as_deref() != Some(address) {
            return None;
        }
        let password = std::fs::read_to_string(self.dir.join("password")).ok()?;
        Some(Login { address: address.to_string(), password: password.trim().to_string() })
    }

    /// The CA every server must trust for berth's registry (PEM).
    pub fn ca(&self) -> Option<String> {
        self.address()?;
        std::fs::read_to_string(self.dir.join("ca.pem")).ok()
    }

    /// Makes (or makes again, for another address) the registry's CA, certificate, password
    /// and configuration, and installs the CA for this server's engine. The registry starts
    /// when the daemon is told ([`Registry::changed`]).
    pub fn prepare(&self, listen: SocketAddr) -> Result<(), String> {
        let address = listen.to_string();
        let io = |what: &str, e: std::io::Error| format!("cannot write the registry's {what} in {}: {e}", self.dir.display());
        std::fs::create_dir_all(self.dir.join("data")).map_err(|e| io("directory", e))?;
        let previous = self.address();
        let now = chrono::Utc::now().timestamp();
        if previous.as_deref() != Some(address.as_str()) || !self.dir.join("cert.pem").exists() {
            let made = certificates(listen, now)?;
            let write = |name: &str, text: &str, mode| crate::store::write_atomic(&self.dir.join(name), text.as_bytes(), mode).map_err(|e| io(name, e));
            write("ca.pem", &made.ca, 0o644)?;
            write("cert.pem", &made.cert, 0o644)?;
            write("key.pem", &made.key, 0o600)?;
        }
        if !self.dir.join("password").exists() {
            let password = hex(&rand::random::<[u8; 24]>());
            // The registry checks the hash at every request of a push or a pull: at bcrypt's
            // default cost (12) that is a quarter of a second each, seconds per deploy. The
            // password is 192 random bits, which no guessing gets through whatever the cost:
            // the lowest cost costs nothing.
            let hashed = bcrypt::hash(&password, 4).map_err(|e| format!("cannot hash the registry's password: {e}"))?;
            crate::store::write_atomic(&self.dir.join("htpasswd"), format!("{USERNAME}:{hashed}\n").as_bytes(), 0o600).map_err(|e| io("htpasswd", e))?;
            crate::store::write_atomic(&self.dir.join("password"), password.as_bytes(), 0o600).map_err(|e| io("password", e))?;
        }
        let config = config_yml(&self.dir, &address);
        crate::store::write_atomic(&self.config(), config.as_bytes(), 0o600).map_err(|e| io("configuration", e))?;
        crate::store::write_atomic(&self.dir.join("address"), format!("{address}\n").as_bytes(), 0o644).map_err(|e| io("address", e))?;
        if let Some(previous) = previous.filter(|p| *p != address) {
            uninstall_ca(&previous);
        }
        let ca = std::fs::read_to_string(self.dir.join("ca.pem")).map_err(|e| io("CA", e))?;
        install_ca(&address, &ca)
    }

    /// Stops serving: the configuration and the CA's installation go (images and the
    /// password stay, for a registry served again).
    pub fn remove(&self) {
        if let Some(address) = self.address() {
            uninstall_ca(&address);
        }
        let _ = std::fs::remove_file(self.config());
        let _ = std::fs::remove_file(self.dir.join("address"));
    }
}

/// Installs a registry's CA where this machine's engine looks for it.
pub fn install_ca(address: &str, ca: &str) -> Result<(), String> {
    let dir = Path::new(CERTS_D).join(address);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::store::write_atomic(&dir.join("ca.crt"), ca.as_bytes(), 0o644).map_err(|e| format!("cannot write {}/ca.crt: {e}", dir.display()))
}

fn uninstall_ca(address: &str) {
    let dir = Path::new(CERTS_D).join(address);
    let _ = std::fs::remove_file(dir.join("ca.crt"));
    let _ = std::fs::remove_dir(dir);
}

/// A CA and the registry's certificate for its address, both PEM, and the certificate's key.
struct Made {
    ca: String,
    cert: String,
    key: String,
}

fn certificates(listen: SocketAddr, now: i64) -> Result<Made, String> {
    let bad = |e: rcgen::Error| format!("cannot make the registry's certificates: {e}");
    let time = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| format!("bad time: {e}"));
    let serial = || rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>().map(|b| b & 0x7f));
    let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("berth cluster CA {}", listen.ip()));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
    ca.not_before = time(now - 60)?;
    ca.not_after = time(now + DAYS * 86_400)?;
    ca.serial_number = Some(serial());
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).map_err(bad)?;
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let mut params = rcgen::CertificateParams::new(vec![listen.ip().to_string()]).map_err(bad)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, listen.ip().to_string());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = time(now - 60)?;
    params.not_after = time(now + DAYS * 86_400)?;
    params.serial_number = Some(serial());
    let cert = params.signed_by(&key, &issuer).map_err(bad)?;
    // The CA's key is not kept: a new address makes a new CA (the servers are told again).
    Ok(Made { ca: issuer.pem(), cert: cert.pem(), key: key.serialize_pem() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// docker-registry's configuration: filesystem storage, deletes allowed, TLS, htpasswd. Pure.
fn config_yml(dir: &Path, address: &str) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        "version: 0.1\nlog:\n  fields:\n    service: berth-registry\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n  tls:\n    certificate: {cert}\n    key: {key}\nauth:\n  htpasswd:\n    realm: berth\n    path: {htpasswd}\n",
        data = path("data"),
        cert = path("cert.pem"),
        key = path("key.pem"),
        htpasswd = path("htpasswd"),
    )
}

/// The registry process the daemon keeps running while the root has one configured.
#[derive(Default)]
pub struct Registry {
    changed: tokio::sync::Notify,
}

impl Registry {
    /// The configuration changed: the registry starts, starts again, or stops.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Runs the registry of `root` while one is configured, again a second after it ends,
    /// until `stop`. It dies with the daemon (`setpriv --pdeathsig`).
    pub async fn run(&self, root: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
        let files = Files::new(&root);
        while !*stop.borrow() {
            let Some(address) = files.address() else {
                tokio::select! {
                    _ = self.changed.notified() => continue,
                    _ = stop.changed() => break,
                }
            };
            let mut child = match spawn(&files) {
                Ok(child) => child,
                Err(e) => {
                    tracing::warn!("cannot start the cluster's registry: {e}");
                    tokio::select! {
                        _ = self.changed.notified() => continue,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = stop.changed() => break,
                    }
                }
            };
            tracing::info!(%address, "the cluster's registry runs");
            tokio::select! {
                status = child.wait() => {
                    tracing::warn!(%address, ?status, log = %files.log().display(), "the cluster's registry ended; starting it again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ = self.changed.notified() => {}
                _ = stop.changed() => {}
            }
            let _ = child.kill().await;
        }
    }
}

fn spawn(files: &Files) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(files.log())?;
    tokio::process::Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "docker-registry", "serve"])
        .arg(files.config())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
}

/// Waits until something answers on `address` (at most `limit`).
pub async fn answers(address: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_serves_tls_with_a_password_from_the_roots_files() {
        let yml = config_yml(Path::new("/r/cluster/registry"), "10.0.0.1:5000");
        for line in ["  addr: 10.0.0.1:5000", "    certificate: /r/cluster/registry/cert.pem", "    key: /r/cluster/registry/key.pem", "    path: /r/cluster/registry/htpasswd", "    rootdirectory: /r/cluster/registry/data"] {
            assert!(yml.lines().any(|l| l == line), "{line:?} in\n{yml}");
        }
    }

    #[test]
    fn the_certificate_names_the_address_and_is_signed_by_the_ca() {
        let made = certificates("10.0.0.1:5000".parse().unwrap(), 1_800_000_000).unwrap();
        let der = |pem: &str| x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents;
        let (ca_der, cert_der) = (der(&made.ca), der(&made.cert));
        let ca = x509_parser::parse_x509_certificate(&ca_der).unwrap().1;
        let cert = x509_parser::parse_x509_certificate(&cert_der).unwrap().1;
        assert!(ca.is_ca());
        assert_eq!(cert.issuer(), ca.subject());
        let names = cert.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
        assert_eq!(format!("{names:?}"), "[IPAddress([10, 0, 0, 1])]");
    }

    #[test]
    fn a_login_is_only_for_the_address_berth_serves() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        assert_eq!(files.login("10.0.0.1:5000"), None);
        std::fs::create_dir_all(&files.dir).unwrap();
        std::fs::write(files.dir.join("address"), "10.0.0.1:5000\n").unwrap();
        std::fs::write(files.config(), "x").unwrap();
        std::fs::write(files.dir.join("password"), "secret").unwrap();
        assert_eq!(files.login("10.0.0.1:5000").map(|l| l.password), Some("secret".into()));
        assert_eq!(files.login("10.0.0.2:5000"), None);
    }
}
