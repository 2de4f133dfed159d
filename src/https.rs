//! An app's HTTPS: putting a certificate in service, taking it out, and keeping Let's
//! Encrypt certificates renewed. Commands (`certs:*`, `letsencrypt:*`, `domains:*`) and the
//! daemon's renewal loop share these.
//!
//! A certificate goes into service in this order: written as a new bundle file, loaded
//! by nginx on its own (`Nginx::check_certificate`), named in `tls.toml`, then the app's
//! site is rendered against it (checked alone, swapped in, graceful reload). If the site
//! step fails, `tls.toml` and the port mappings go back to what they were and the old site
//! never stopped serving.

use std::time::Duration;

use crate::acme::{Acme, AcmeSettings, LETSENCRYPT_PRODUCTION};
use crate::engine::Engine;
use crate::output::Output;
use crate::store::{AppConfig, CertSource, GlobalConfig, Renewal, TlsState};
use crate::tls::{Bundle, CertInfo};
use crate::validate::{PortMap, Scheme};

/// dokku's default `graceperiod`: renew 30 days before expiry.
pub const DEFAULT_GRACEPERIOD: u64 = 30 * 86_400;
/// How often the daemon looks for certificates to renew.
pub const RENEW_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How long before expiry an app served by a wildcard that was not renewed orders its own.
const WILDCARD_FALLBACK: i64 = 7 * 86_400;
/// Waits after a failed renewal: 1 h, doubling, at most a day.
const RETRY_FIRST: u64 = 3600;
const RETRY_MAX: u64 = 86_400;

fn now() -> i64 {
    crate::unix_now() as i64
}

/// The ACME settings in force for an app: its own, else the global ones, else defaults.
pub struct Effective {
    pub email: Option<String>,
    pub server: String,
    pub graceperiod: u64,
}

pub fn effective(config: &AppConfig, global: &GlobalConfig) -> Effective {
    let (app, all) = (&config.letsencrypt, &global.letsencrypt);
    Effective {
        email: app.email.clone().or_else(|| all.email.clone()),
        server: app.server.clone().or_else(|| all.server.clone()).unwrap_or_else(|| LETSENCRYPT_PRODUCTION.to_string()),
        graceperiod: app.graceperiod.or(all.graceperiod).unwrap_or(DEFAULT_GRACEPERIOD),
    }
}

/// The certificate an app serves, read from its bundle.
pub fn current(engine: &Engine, app: &str) -> Result<Option<(TlsState, CertInfo)>, String> {
    engine.store.current_certificate(app)
}

/// Puts `bundle` in service for the app (see the module's comment for the order). Call
/// with the app's deploy lock held. A Let's Encrypt certificate also marks Let's Encrypt
/// enabled for the app, in the same write as the certificate.
pub async fn install(engine: &Engine, app: &str, bundle: &Bundle, source: CertSource, out: &Output) -> Result<(), String> {
    let store = &engine.store;
    let file = store.write_tls_bundle(app, bundle).map_err(|e| e.to_string())?;
    let state = TlsState { source, file, installed_at: crate::unix_now(), renewal: Renewal::default() };
    if let Err(e) = engine.nginx.check_certificate(&store.tls_bundle_path(app, &state)).await {
        let _ = store.prune_tls(app);
        return Err(e.to_string());
    }
    let (previous_tls, previous) = {
        let _lock = store.lock_app(app).await;
        let previous_tls = store.load_tls(app).map_err(|e| e.to_string())?;
        let mut config = store.load_app(app).map_err(|e| e.to_string())?;
        let previous = config.clone();
        // As dokku does: a certificate brings an https mapping to the app's container port.
        let added = !config.ports.iter().any(|p| p.scheme == Scheme::Https);
        if added {
            let container = config.effective_ports().iter().find(|p| p.scheme == Scheme::Http).map(|p| p.container).unwrap_or_else(|| config.container_port());
            let https = PortMap { scheme: Scheme::Https, host: 443, container };
            // Not on a listen address another app serves plain HTTP on.
            let others = store.ports_of_others(app).map_err(|e| e.to_string())?;
            if let Some((_, other, theirs)) = crate::proxy::scheme_clash(engine.nginx.listen, &[https], &others) {
                let _ = store.prune_tls(app);
                return Err(format!("Host port 443 serves {} for app {other} ({theirs}): {app} cannot be served over https there", theirs.scheme));
            }
            config.ports = config.effective_ports();
            config.ports.push(https);
        }
        if source == CertSource::Letsencrypt {
            let letsencrypt = &mut config.letsencrypt;
            // Enabling records whether it added the mapping (disabling removes only that);
            // a renewal keeps what enabling recorded, unless it had to add the mapping again.
            if !letsencrypt.enabled || added {
                letsencrypt.https_port_added = Some(added);
            }
            letsencrypt.enabled = true;
        }
        if config != previous {
            store.save_app(app, &config).map_err(|e| e.to_string())?;
        }
        store.save_tls(app, &state).map_err(|e| e.to_string())?;
        (previous_tls, previous)
    };
    if let Err(e) = crate::deploy::reroute(engine, app, out).await {
        let _lock = store.lock_app(app).await;
        match &previous_tls {
            Some(old) => store.save_tls(app, old).map_err(|e| e.to_string())?,
            None => store.remove_tls(app).map_err(|e| e.to_string())?,
        }
        // Only what this changed goes back: other settings may have changed meanwhile.
        if let Ok(mut config) = store.load_app(app) {
            config.ports = previous.ports;
            config.letsencrypt.enabled = previous.letsencrypt.enabled;
            config.letsencrypt.https_port_added = previous.letsencrypt.https_port_added;
            let _ = store.save_app(app, &config);
        }
        let _ = store.prune_tls(app);
        return Err(e.to_string());
    }
    {
        let _lock = store.lock_app(app).await;
        let _ = store.clear_pending_renewal(app);
    }
    let _ = store.prune_tls(app);
    let info = &bundle.info;
    out.step(format!("{app} serves https for {} with a {source} certificate (expires {} UTC)", info.names.join(", "), crate::tls::utc(info.not_after))).await;
    Ok(())
}

/// Which https mappings go when an app's certificate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpsMappings {
    /// Every one (`certs:remove`: back to plain http).
    All,
    /// Only the one `letsencrypt:enable` added (`letsencrypt:disable`: back to the state
    /// before enabling, so a mapping of the user's stays).
    AddedByLetsencrypt,
}

/// The app's port mappings once its certificate is gone. Pure.
fn ports_without_certificate(config: &AppConfig, mappings: HttpsMappings) -> Vec<PortMap> {
    // Enabling adds `https:443:<port>`; state from a berth that did not record whether it
    // did (None) is taken to have had it added, as that berth always did on an app without one.
    let added_by_enable = config.letsencrypt.https_port_added != Some(false);
    let mut ports = config.ports.clone();
    match mappings {
        HttpsMappings::All => ports.retain(|p| p.scheme != Scheme::Https),
        HttpsMappings::AddedByLetsencrypt => ports.retain(|p| !(added_by_enable && p.scheme == Scheme::Https && p.host == 443)),
    }
    // What remains may be just the default mapping: keep the default implicit again.
    if ports == [PortMap::DEFAULT] {
        ports.clear();
    }
    ports
}

/// Takes the app's certificate out of service with the given https mappings; plain http
/// serves again without a redirect. Call with the app's deploy lock held.
pub async fn remove(engine: &Engine, app: &str, mappings: HttpsMappings, out: &Output) -> Result<bool, String> {
    let store = &engine.store;
    {
        let _lock = store.lock_app(app).await;
        let had = store.load_tls(app).map_err(|e| e.to_string())?.is_some();
        let mut config = store.load_app(app).map_err(|e| e.to_string())?;
        let before = config.clone();
        config.ports = ports_without_certificate(&config, mappings);
        config.letsencrypt.https_port_added = None;
        if config != before {
            store.save_app(app, &config).map_err(|e| e.to_string())?;
        }
        store.clear_pending_renewal(app).map_err(|e| e.to_string())?;
        if !had && config == before {
            return Ok(false);
        }
        store.remove_tls(app).map_err(|e| e.to_string())?;
    }
    crate::deploy::reroute(engine, app, out).await.map_err(|e| e.to_string())?;
    store.prune_tls(app).map_err(|e| e.to_string())?;
    Ok(true)
}

/// What an app's Let's Encrypt setting and certificate were when a certificate was ordered.
#[derive(Debug, Clone, PartialEq)]
struct Basis {
    enabled: bool,
    /// The certificate's source and bundle file.
    cert: Option<(CertSource, String)>,
}

impl Basis {
    fn read(engine: &Engine, app: &str) -> Result<(AppConfig, Basis), String> {
        let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
        let cert = engine.store.load_tls(app).map_err(|e| e.to_string())?.map(|s| (s.source, s.file));
        let basis = Basis { enabled: config.letsencrypt.enabled, cert };
        Ok((config, basis))
    }
}

/// Why a certificate ordered when the app was `started` must not replace what it has `now`,
/// or None. `current` is the Let's Encrypt certificate it serves now (if it does). Pure.
fn superseded(started: &Basis, now: &Basis, domains: &[String], current: Option<&CertInfo>, new: &CertInfo) -> Option<String> {
    if started.enabled && !now.enabled {
        return Some("Let's Encrypt was disabled for it meanwhile".into());
    }
    match (&started.cert, &now.cert) {
        (_, Some((source, _))) if *source != CertSource::Letsencrypt && now.cert != started.cert => {
            return Some(format!("it got a {source} certificate meanwhile"));
        }
        (Some(_), None) => return Some("its certificate was removed meanwhile".into()),
        _ => {}
    }
    // Another issuance finished first (a renewal and a domains:add, say): keep the one
    // that covers more of the app's domains.
    let lost = domains.iter().find(|d| current.is_some_and(|c| c.covers(d)) && !new.covers(d))?;
    Some(format!("a certificate that also covers {lost} was installed meanwhile"))
}

/// What an issuance did.
#[derive(Debug, PartialEq)]
pub enum Issued {
    Installed,
    /// The certificate was issued but not installed: the app's Let's Encrypt setting or
    /// certificate changed while it was ordered (why).
    Dropped(String),
}

/// Issues a Let's Encrypt certificate for every domain of the app and puts it in service
/// (Let's Encrypt is then enabled for the app). The ACME exchange runs without the deploy
/// lock (deploys go on); installing takes it, and installs only if nothing changed the
/// app's Let's Encrypt setting or certificate meanwhile in a way that makes the new one
/// unwanted (`letsencrypt:disable`, `certs:remove`, `certs:add`, a better one installed).
pub async fn issue_letsencrypt(engine: &Engine, app: &str, out: &Output) -> Result<Issued, String> {
    let (config, started) = Basis::read(engine, app)?;
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let settings = effective(&config, &global);
    let Some(email) = settings.email else {
        return Err("Set an email for Let's Encrypt first: letsencrypt:set --global email you@example.com".into());
    };
    if config.domains.is_empty() {
        return Err(format!("{app} has no domains: domains:add {app} DOMAIN first"));
    }
    let acme = Acme { root: engine.root(), nginx: &engine.nginx };
    let bundle = acme.issue(&AcmeSettings { server: settings.server, email }, &config.domains, None, out).await.map_err(|e| e.to_string())?;
    let _deploying = engine.deploy_lock(app, out).await?;
    // Every change of an app's certificate or Let's Encrypt setting holds its deploy lock:
    // what is read now stays so until the certificate is installed.
    let (config, now) = Basis::read(engine, app)?;
    let serving = match &now.cert {
        Some((CertSource::Letsencrypt, _)) => current(engine, app).ok().flatten().map(|(_, info)| info),
        _ => None,
    };
    if let Some(why) = superseded(&started, &now, &config.domains, serving.as_ref(), &bundle.info) {
        tracing::info!(app, "the new Let's Encrypt certificate was not installed: {why}");
        out.step(format!("The new certificate of {app} was not installed: {why}")).await;
        return Ok(Issued::Dropped(why));
    }
    install(engine, app, &bundle, CertSource::Letsencrypt, out).await?;
    Ok(Issued::Installed)
}

/// Why an app's Let's Encrypt certificate needs issuing now, or None.
pub fn due(config: &AppConfig, global: &GlobalConfig, cert: Option<&(TlsState, CertInfo)>, now: i64) -> Option<String> {
    let Some((state, info)) = cert else { return Some("it has no certificate".into()) };
    if state.source != CertSource::Letsencrypt {
        return Some(format!("its certificate is {}", state.source));
    }
    if let Some(missing) = config.domains.iter().find(|d| !info.covers(d)) {
        return Some(format!("the certificate does not cover {missing}"));
    }
    let grace = effective(config, global).graceperiod as i64;
    if info.not_after - grace <= now {
        return Some(format!("it expires {} UTC", crate::tls::utc(info.not_after)));
    }
    None
}

/// What a renewal attempt did.
#[derive(Debug, PartialEq)]
pub enum Renewed {
    NotEnabled,
    NotDue,
    /// Failed before; the next attempt is not before this time.
    BackingOff(u64),
    Renewed,
    /// Issued, but not installed (see [`Issued::Dropped`]).
    Dropped(String),
}

/// Renews the app's Let's Encrypt certificate if it is due (or `force`). A failure keeps
/// the current certificate serving, goes to the daemon's log, and is recorded with the
/// next attempt (see [`record_failure`]).
pub async fn renew(engine: &Engine, app: &str, force: bool, out: &Output) -> Result<Renewed, String> {
    let renewed = try_renew(engine, app, force, out).await;
    match &renewed {
        Ok(Renewed::Renewed) => tracing::info!(app, "certificate renewed"),
        Err(e) => {
            tracing::warn!(app, "certificate renewal failed: {e}");
            record_failure(engine, app, e).await;
        }
        Ok(_) => {}
    }
    renewed
}

async fn try_renew(engine: &Engine, app: &str, force: bool, out: &Output) -> Result<Renewed, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    if !config.letsencrypt.enabled {
        return Ok(Renewed::NotEnabled);
    }
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let cert = current(engine, app)?;
    let why = match due(&config, &global, cert.as_ref(), now()) {
        Some(why) => why,
        None if force => "forced".into(),
        None => return Ok(Renewed::NotDue),
    };
    // A wildcard's certificate is renewed as the wildcard (`letsencrypt:wildcard`), forced
    // or not; the app orders its own only if that has not happened a week before expiry.
    // (Not when the app has a name the wildcard does not cover: then it needs its own now.)
    let by_wildcard = cert.as_ref().is_some_and(|(_, info)| {
        config.domains.iter().all(|d| info.covers(d)) && crate::store::wildcard_serving(&engine.store.wildcards(), info).is_some()
    });
    if by_wildcard && cert.as_ref().is_some_and(|(_, info)| info.not_after - now() > WILDCARD_FALLBACK) {
        return Ok(Renewed::NotDue);
    }
    let next_attempt = renewal(engine, app).next_attempt;
    if !force && next_attempt > crate::unix_now() {
        return Ok(Renewed::BackingOff(next_attempt));
    }
    out.step(format!("Renewing the certificate of {app}: {why}")).await;
    Ok(match issue_letsencrypt(engine, app, out).await? {
        Issued::Installed => Renewed::Renewed,
        Issued::Dropped(why) => Renewed::Dropped(why),
    })
}

/// The app's Let's Encrypt attempts that failed since its certificate was installed: kept
/// in `tls.toml` with the certificate, or on their own while it has none.
pub fn renewal(engine: &Engine, app: &str) -> Renewal {
    match engine.store.load_tls(app) {
        Ok(Some(state)) => state.renewal,
        _ => engine.store.load_pending_renewal(app).ok().flatten().unwrap_or_default(),
    }
}

/// Records a failed Let's Encrypt attempt of an app that has it enabled: the error shows in
/// `letsencrypt:list` and the next attempt waits (1 h, doubling, at most a day).
pub async fn record_failure(engine: &Engine, app: &str, error: &str) {
    let store = &engine.store;
    let _lock = store.lock_app(app).await;
    // Not for an app destroyed or disabled meanwhile: nothing is retried for those.
    if !store.load_app(app).is_ok_and(|config| config.letsencrypt.enabled) {
        return;
    }
    let recorded = match store.load_tls(app) {
        Ok(Some(mut state)) => {
            note_failure(&mut state.renewal, error, crate::unix_now());
            store.save_tls(app, &state)
        }
        _ => {
            let mut pending = store.load_pending_renewal(app).ok().flatten().unwrap_or_default();
            note_failure(&mut pending, error, crate::unix_now());
            store.save_pending_renewal(app, &pending)
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(app, "the failed renewal could not be recorded: {e}");
    }
}

pub(crate) fn note_failure(renewal: &mut Renewal, error: &str, now: u64) {
    renewal.failures = renewal.failures.saturating_add(1);
    renewal.last_error = Some(error.to_string());
    // A rate limit says when to come back: not before then.
    renewal.next_attempt = (now + retry_wait(renewal.failures)).max(rate_limited_until(error).unwrap_or(0));
}

/// When a rate limit of the CA's ends, as Let's Encrypt says it in the problem it answers
/// with its 429 ("…, retry after 2026-12-06 01:02:03 UTC: see …"). Pure.
pub fn rate_limited_until(error: &str) -> Option<u64> {
    let at = error.find("retry after ")? + "retry after ".len();
    let text = error.get(at..at + 19)?;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let when = time::PrimitiveDateTime::parse(text, &format).ok()?.assume_utc();
    u64::try_from(when.unix_timestamp()).ok()
}

/// How long to wait after the `failures`-th failure in a row: 1 h, doubling, at most a day.
fn retry_wait(failures: u32) -> u64 {
    (RETRY_FIRST << failures.saturating_sub(1).min(8)).min(RETRY_MAX)
}

/// Renews every app's certificate that is due. Logs what it did.
pub async fn renew_all(engine: &Engine) {
    for app in engine.store.list_apps().unwrap_or_default() {
        let out = Output::discard();
        // Failures and dropped certificates are logged (and recorded) by `renew`.
        if let Ok(Renewed::BackingOff(at)) = renew(engine, &app, false, &out).await {
            tracing::info!(app, "certificate renewal due; retrying after {} UTC", crate::tls::utc(at as i64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str], not_after: i64) -> CertInfo {
        CertInfo {
            subject: String::new(),
            issuer: String::new(),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_before: 0,
            not_after,
            serial: "01".into(),
            self_signed: false,
        }
    }

    fn state(source: CertSource) -> TlsState {
        TlsState { source, file: "cert-1.pem".into(), installed_at: 0, renewal: Renewal::default() }
    }

    #[test]
    fn renewal_is_due_near_expiry_for_new_domains_and_for_other_sources() {
        let mut config = AppConfig::new();
        config.domains = vec!["a.com".into()];
        let global = GlobalConfig::default();
        let now = 1_000_000_000;
        let far = now + 60 * 86_400;
        assert_eq!(due(&config, &global, Some(&(state(CertSource::Letsencrypt), info(&["a.com"], far))), now), None);
        assert!(due(&config, &global, Some(&(state(CertSource::Letsencrypt), info(&["a.com"], now + 29 * 86_400))), now).unwrap().contains("expires"));
        config.domains.push("b.com".into());
        assert!(due(&config, &global, Some(&(state(CertSource::Letsencrypt), info(&["a.com"], far))), now).unwrap().contains("b.com"));
        assert!(due(&config, &global, Some(&(state(CertSource::User), info(&["a.com", "b.com"], far))), now).is_some());
        assert!(due(&config, &global, None, now).is_some());
        // graceperiod: the app's over the global one.
        config.letsencrypt.graceperiod = Some(90 * 86_400);
        assert!(due(&config, &global, Some(&(state(CertSource::Letsencrypt), info(&["a.com", "b.com"], far))), now).is_some());
    }

    #[test]
    fn a_rate_limit_is_waited_out() {
        let error = "the ACME server failed: too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2030-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/";
        assert_eq!(rate_limited_until(error), Some(1_893_553_445));
        assert_eq!(rate_limited_until("connection refused"), None);
        let mut renewal = Renewal::default();
        note_failure(&mut renewal, error, 1_800_000_000);
        assert_eq!(renewal.next_attempt, 1_893_553_445, "not before the limit ends");
        let mut renewal = Renewal::default();
        note_failure(&mut renewal, "retry after 2000-01-01 00:00:00 UTC", 1_800_000_000);
        assert_eq!(renewal.next_attempt, 1_800_000_000 + RETRY_FIRST, "a limit already over: the usual backoff");
    }

    #[test]
    fn failed_renewals_wait_an_hour_doubling_up_to_a_day() {
        let waits: Vec<u64> = (1..=7).map(retry_wait).collect();
        assert_eq!(waits, [3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400]);
        assert_eq!(retry_wait(u32::MAX), 86_400);
        let mut renewal = Renewal::default();
        note_failure(&mut renewal, "first", 1000);
        assert_eq!(renewal, Renewal { failures: 1, last_error: Some("first".into()), next_attempt: 1000 + 3600 });
        note_failure(&mut renewal, "second", 2000);
        assert_eq!(renewal, Renewal { failures: 2, last_error: Some("second".into()), next_attempt: 2000 + 7200 });
    }

    fn engine(dir: &std::path::Path) -> std::sync::Arc<Engine> {
        let store = crate::store::Store::open(dir).unwrap();
        let any = "127.0.0.1:1".parse().unwrap();
        Engine::new(store, crate::engine::Settings { ssh_listen: any, http_listen: any, https_listen: any, api_listen: any })
    }

    #[tokio::test]
    async fn a_failure_is_recorded_with_the_certificate_or_without_one_and_only_while_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let store = &engine.store;
        let mut config = AppConfig::new();
        store.create_app("web", &config).unwrap();
        // Disabled (or gone): nothing is kept, nothing will be retried.
        record_failure(&engine, "web", "refused").await;
        record_failure(&engine, "gone", "refused").await;
        assert_eq!(renewal(&engine, "web"), Renewal::default());
        assert!(!store.tls_dir("gone").exists());

        // Enabled without a certificate: kept on its own, so backoff applies and list shows it.
        config.letsencrypt.enabled = true;
        store.save_app("web", &config).unwrap();
        record_failure(&engine, "web", "no route").await;
        record_failure(&engine, "web", "no route again").await;
        let pending = renewal(&engine, "web");
        assert_eq!((pending.failures, pending.last_error.as_deref()), (2, Some("no route again")));
        assert!(pending.next_attempt >= crate::unix_now() + 7000);

        // With a certificate: kept in tls.toml with it.
        let bundle = crate::tls::self_signed(&["a.example.com".into()], 10, now()).unwrap();
        let file = store.write_tls_bundle("web", &bundle).unwrap();
        store.save_tls("web", &TlsState { source: CertSource::Letsencrypt, file, installed_at: 1, renewal: Renewal::default() }).unwrap();
        record_failure(&engine, "web", "expired account").await;
        let state = store.load_tls("web").unwrap().unwrap();
        assert_eq!((state.renewal.failures, state.renewal.last_error.as_deref()), (1, Some("expired account")));
        assert_eq!(renewal(&engine, "web"), state.renewal);
    }

    fn basis(enabled: bool, cert: Option<(CertSource, &str)>) -> Basis {
        Basis { enabled, cert: cert.map(|(s, f)| (s, f.to_string())) }
    }

    #[test]
    fn a_new_certificate_is_dropped_when_letsencrypt_or_the_certificate_changed_while_it_was_ordered() {
        use CertSource::{Letsencrypt as Le, User};
        let domains = vec!["a.com".to_string(), "b.com".to_string()];
        let new = info(&["a.com", "b.com"], 0);
        let renewing = basis(true, Some((Le, "cert-1.pem")));
        let check = |started: &Basis, now: &Basis| superseded(started, now, &domains, None, &new);
        // Unchanged, or renewed by another issuance: install.
        assert_eq!(check(&renewing, &renewing), None);
        assert_eq!(check(&renewing, &basis(true, Some((Le, "cert-2.pem")))), None);
        // letsencrypt:disable, certs:remove, certs:add / certs:generate meanwhile: drop.
        assert!(check(&renewing, &basis(false, None)).unwrap().contains("disabled"));
        assert!(check(&renewing, &basis(false, Some((Le, "cert-1.pem")))).unwrap().contains("disabled"));
        assert!(check(&renewing, &basis(true, None)).unwrap().contains("removed"));
        assert!(check(&renewing, &basis(false, Some((User, "cert-2.pem")))).is_some());
        assert!(check(&renewing, &basis(true, Some((CertSource::SelfSigned, "cert-2.pem")))).unwrap().contains("self-signed"));
        // Enabling over the user's certificate replaces it, unless another came meanwhile.
        let enabling = basis(false, Some((User, "cert-1.pem")));
        assert_eq!(check(&enabling, &enabling), None);
        assert!(check(&enabling, &basis(false, Some((User, "cert-2.pem")))).unwrap().contains("user"));
        assert!(check(&basis(false, None), &basis(false, Some((User, "cert-2.pem")))).is_some());
        // A certificate installed meanwhile that covers more of the app's domains stays.
        let narrow = info(&["a.com"], 0);
        let now = basis(true, Some((Le, "cert-2.pem")));
        assert!(superseded(&renewing, &now, &domains, Some(&new), &narrow).unwrap().contains("b.com"));
        assert_eq!(superseded(&renewing, &now, &domains, Some(&narrow), &new), None);
    }

    #[test]
    fn disabling_removes_only_the_https_mapping_enabling_added() {
        let map = |s: &str| crate::validate::port_map(s).unwrap();
        let mut config = AppConfig::new();
        config.ports = vec![PortMap::DEFAULT, map("https:443:5000"), map("https:8443:5000")];
        for (added, left) in [(Some(true), vec![map("http:80:5000"), map("https:8443:5000")]), (None, vec![map("http:80:5000"), map("https:8443:5000")])] {
            config.letsencrypt.https_port_added = added;
            assert_eq!(ports_without_certificate(&config, HttpsMappings::AddedByLetsencrypt), left, "{added:?}");
        }
        config.letsencrypt.https_port_added = Some(false);
        assert_eq!(ports_without_certificate(&config, HttpsMappings::AddedByLetsencrypt), config.ports);
        // certs:remove: every https mapping; the default left is implicit again.
        assert_eq!(ports_without_certificate(&config, HttpsMappings::All), vec![]);
        config.ports = vec![PortMap::DEFAULT, map("https:443:5000")];
        config.letsencrypt.https_port_added = Some(true);
        assert_eq!(ports_without_certificate(&config, HttpsMappings::AddedByLetsencrypt), vec![]);
    }

    #[test]
    fn settings_fall_back_from_app_to_global_to_defaults() {
        let mut config = AppConfig::new();
        let mut global = GlobalConfig::default();
        assert_eq!(effective(&config, &global).server, LETSENCRYPT_PRODUCTION);
        assert_eq!(effective(&config, &global).email, None);
        global.letsencrypt.email = Some("g@example.com".into());
        config.letsencrypt.server = Some("https://ca.example/dir".into());
        let e = effective(&config, &global);
        assert_eq!((e.email.as_deref(), e.server.as_str(), e.graceperiod), (Some("g@example.com"), "https://ca.example/dir", DEFAULT_GRACEPERIOD));
    }
}
