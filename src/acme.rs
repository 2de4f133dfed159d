//! The ACME v2 client (RFC 8555) that gets Let's Encrypt certificates, with instant-acme.
//! DNS-01 (wildcards) goes through a provider of `dns`.
//!
//! One account per ACME directory, kept under `<root>/letsencrypt/accounts/` (0600). HTTP-01
//! is answered through berth's own nginx: the key authorization is written where every
//! plain-HTTP server block serves `/.well-known/acme-challenge/` (see `proxy`), so a domain
//! can be validated whether or not its app is deployed. The HTTP client trusts the system's
//! CA store, or only `SSL_CERT_FILE`/`SSL_CERT_DIR` when set (a private CA's directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use instant_acme::{Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::output::Output;
use crate::proxy::Nginx;
use crate::tls::{self, Bundle};

/// Let's Encrypt's production directory: the default server.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How long the ACME server gets to validate every name, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
const ISSUE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a DNS-01 record may take to appear at the zone's servers.
const DNS_VISIBLE_TIMEOUT: Duration = Duration::from_secs(120);

/// RFC 8555 §6.7 problems that mean "the name could not be validated".
const VALIDATION_PROBLEMS: &[&str] = &[":connection", ":dns", ":unauthorized", ":incorrectResponse", ":caa", ":tls", ":rejectedIdentifier"];

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("{0}")]
    Refused(String),
    #[error("the ACME server {server} failed: {message}")]
    Server { server: String, message: String },
    #[error("the ACME server {server} failed: {message} (check that this server reaches it: outbound HTTPS and DNS; or set another with `letsencrypt:set --global server URL`)")]
    Unreachable { server: String, message: String },
    #[error("{domain}: the ACME server could not validate it: {detail} (does {domain} resolve to this server, with port 80 open to the internet?)")]
    Validation { domain: String, detail: String },
    #[error("{domain}: DNS-01: {detail}")]
    Dns { domain: String, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where and as whom to ask.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub server: String,
    pub email: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    server: String,
    email: String,
    credentials: AccountCredentials,
}

pub struct Acme<'a> {
    pub root: PathBuf,
    pub nginx: &'a Nginx,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl Acme<'_> {
    fn account_file(&self, server: &str) -> PathBuf {
        let name: String = server.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(120).collect();
        self.root.join("letsencrypt").join("accounts").join(format!("{name}.json"))
    }

    fn server_error(&self, settings: &AcmeSettings, e: impl std::fmt::Display) -> AcmeError {
        AcmeError::Server { server: settings.server.clone(), message: e.to_string() }
    }

    /// With the error's causes: an HTTP client's own message ("client error (Connect)")
    /// does not say what went wrong.
    /// A failure to connect (a name that does not resolve, a refused or cut connection, a TLS
    /// failure: an I/O error among the causes) says what to check.
    fn request_failed(&self, settings: &AcmeSettings, e: impl std::error::Error + 'static) -> AcmeError {
        let mut causes = std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source());
        let message = crate::with_causes(&e);
        if causes.any(|c| c.is::<std::io::Error>()) {
            AcmeError::Unreachable { server: settings.server.clone(), message }
        } else {
            AcmeError::Server { server: settings.server.clone(), message }
        }
    }

    /// The account for this directory: the stored one, or a new one (stored at once).
    async fn account(&self, settings: &AcmeSettings, fresh: bool, out: &Output) -> Result<Account, AcmeError> {
        let path = self.account_file(&settings.server);
        if !fresh
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(stored) = serde_json::from_str::<StoredAccount>(&text)
            && stored.server == settings.server
        {
            let account = builder(settings)?.from_credentials(stored.credentials).await.map_err(|e| self.request_failed(settings, e))?;
            if stored.email != settings.email {
                let contact = format!("mailto:{}", settings.email);
                account.update_contacts(&[contact.as_str()]).await.map_err(|e| self.request_failed(settings, e))?;
                // The credentials went into the account: read them again to store the new email.
                if let Ok(mut again) = serde_json::from_str::<StoredAccount>(&text) {
                    again.email = settings.email.clone();
                    let bytes = serde_json::to_vec(&again).map_err(|e| self.request_failed(settings, e))?;
                    self.write_private(&path, &bytes)?;
                }
            }
            return Ok(account);
        }
        let started = Instant::now();
        let contact = format!("mailto:{}", settings.email);
        let (account, credentials) = builder(settings)?
            .create(&NewAccount { contact: &[contact.as_str()], terms_of_service_agreed: true, only_return_existing: false }, settings.server.clone(), None)
            .await
            .map_err(|e| self.request_failed(settings, e))?;
        let stored = StoredAccount { server: settings.server.clone(), email: settings.email.clone(), credentials };
        let text = serde_json::to_vec(&stored).map_err(|e| self.request_failed(settings, e))?;
        self.write_private(&path, &text)?;
        out.step(format!("Registered account {} with {} in {}", settings.email, settings.server, secs(started.elapsed()))).await;
        Ok(account)
    }

    fn write_private(&self, path: &std::path::Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let io = |source| AcmeError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        crate::store::write_atomic(path, bytes, 0o600).map_err(|source| AcmeError::Io { path: path.to_path_buf(), source })
    }

    /// Orders a certificate for `domains`, answers each challenge (HTTP-01 through nginx,
    /// or DNS-01 through `dns`, whose records always go again), and returns the issued chain
    /// with its new key. Streams each step with its duration.
    pub async fn issue(&self, settings: &AcmeSettings, domains: &[String], dns: Option<&crate::dns::Provider>, out: &Output) -> Result<Bundle, AcmeError> {
        if let (Some(wild), None) = (domains.iter().find(|d| d.starts_with("*.")), dns) {
            return Err(AcmeError::Refused(format!(
                "{wild} is a wildcard: Let's Encrypt issues those only through DNS-01 (letsencrypt:set --global dns-provider rfc2136|exec)"
            )));
        }
        if domains.is_empty() {
            return Err(AcmeError::Refused("no domains to certify".into()));
        }
        let mut account = self.account(settings, false, out).await?;
        let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let started = Instant::now();
        out.step(format!("Ordering a certificate for {} from {}", domains.join(", "), settings.server)).await;
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            Ok(order) => order,
            // The server forgot the account (a test CA restarted, or it was deactivated).
            Err(instant_acme::Error::Api(p)) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist") => {
                account = self.account(settings, true, out).await?;
                account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| self.request_failed(settings, e))?
            }
            Err(e) => return Err(self.request_failed(settings, e)),
        };

        let mut written = Vec::new();
        let mut presented: Vec<(String, String)> = Vec::new();
        let validated = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(|e| self.request_failed(settings, e))?;
                let domain = authz.identifier().to_string();
                match authz.status {
                    AuthorizationStatus::Valid => {
                        out.detail(format!("{domain}: already validated")).await;
                        continue;
                    }
                    AuthorizationStatus::Pending => {}
                    other => return Err(AcmeError::Validation { domain, detail: format!("the authorization is {other:?}") }),
                }
                let kind = if dns.is_some() { ChallengeType::Dns01 } else { ChallengeType::Http01 };
                let mut challenge = authz
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::Validation { domain: domain.clone(), detail: format!("the server offers no {kind:?} challenge") })?;
                if let Some(dns) = dns {
                    let (fqdn, value) = (crate::dns::challenge_name(&domain), challenge.key_authorization().dns_value());
                    let dns_failed = |e: crate::dns::DnsError| AcmeError::Dns { domain: domain.clone(), detail: e.to_string() };
                    let shown = Instant::now();
                    let put = dns.present(&fqdn, &value).await;
                    // A program that failed may have put it all the same: it is asked to take it away.
                    if put.is_ok() || dns.may_leave_records() {
                        presented.push((fqdn.clone(), value.clone()));
                    }
                    put.map_err(dns_failed)?;
                    dns.wait_visible(&fqdn, &value, DNS_VISIBLE_TIMEOUT).await.map_err(dns_failed)?;
                    out.detail(format!("{domain}: answering the DNS-01 challenge at {fqdn} (visible in {})", secs(shown.elapsed()))).await;
                } else {
                    let path = self
                        .nginx
                        .put_challenge(&challenge.token, challenge.key_authorization().as_str())
                        .map_err(|e| AcmeError::Refused(e.to_string()))?;
                    written.push(path);
                    out.detail(format!("{domain}: answering the HTTP-01 challenge at /.well-known/acme-challenge/")).await;
                }
                challenge.set_ready().await.map_err(|e| self.validation_error(settings, &domain, e))?;
            }
            let status = order.poll_ready(&RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(VALIDATION_TIMEOUT)).await;
            match status {
                Ok(OrderStatus::Invalid) => Err(self.why_invalid(settings, &mut order).await),
                Ok(_) => Ok(()),
                // Some CAs answer a poll of an invalid order with the validation's problem.
                Err(instant_acme::Error::Api(p)) if is_validation_problem(&p) => Err(self.why_invalid(settings, &mut order).await),
                Err(e) => Err(self.request_failed(settings, e)),
            }
        }
        .await;
        for path in written {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dns) = dns {
            for (fqdn, value) in presented {
                // Said, not failed: the order's own outcome is what the command reports.
                if let Err(e) = dns.cleanup(&fqdn, &value).await {
                    tracing::warn!(%fqdn, "the challenge record could not be removed: {e}");
                    out.detail(format!("the challenge record {fqdn} could not be removed: {e}")).await;
                }
            }
        }
        validated?;
        out.step(format!("Validated {} in {}", domains.join(", "), secs(started.elapsed()))).await;

        let started = Instant::now();
        let (key_pem, csr) = tls::key_and_csr(domains).map_err(|e| AcmeError::Refused(e.to_string()))?;
        order.finalize_csr(&csr).await.map_err(|e| self.request_failed(settings, e))?;
        let chain = order
            .poll_certificate(&RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(ISSUE_TIMEOUT))
            .await
            .map_err(|e| self.request_failed(settings, e))?;
        let bundle = Bundle::new(&chain, &key_pem, crate::unix_now() as i64).map_err(|e| self.server_error(settings, format!("the issued certificate is unusable: {e}")))?;
        out.step(format!("Certificate issued in {} (expires {} UTC)", secs(started.elapsed()), tls::utc(bundle.info.not_after))).await;
        Ok(bundle)
    }

    /// A CA that validates at once answers `set_ready` with the validation's problem.
    fn validation_error(&self, settings: &AcmeSettings, domain: &str, e: instant_acme::Error) -> AcmeError {
        match e {
            instant_acme::Error::Api(p) if is_validation_problem(&p) => {
                AcmeError::Validation { domain: domain.to_string(), detail: crate::one_line(&p.detail.unwrap_or_default()) }
            }
            other => self.request_failed(settings, other),
        }
    }

    /// The first failed challenge's error, from the authorizations as they are now.
    async fn why_invalid(&self, settings: &AcmeSettings, order: &mut instant_acme::Order) -> AcmeError {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let Ok(mut authz) = authz else { continue };
            if authz.refresh().await.is_err() {
                continue;
            }
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let domain = authz.identifier().to_string();
            let detail = authz
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map(|p| p.detail.clone().unwrap_or_else(|| p.to_string()))
                .unwrap_or_else(|| format!("the authorization is {:?}", authz.status));
            return AcmeError::Validation { domain, detail: crate::one_line(&detail) };
        }
        self.server_error(settings, "the order became invalid")
    }
}

fn builder(settings: &AcmeSettings) -> Result<instant_acme::AccountBuilder, AcmeError> {
    Account::builder().map_err(|e| AcmeError::Server { server: settings.server.clone(), message: format!("cannot set up TLS to the ACME server: {e}") })
}

fn is_validation_problem(p: &instant_acme::Problem) -> bool {
    p.r#type.as_deref().is_some_and(|t| VALIDATION_PROBLEMS.iter().any(|v| t.ends_with(v)))
}

