//! An app's HTTPS: putting a certificate in service, taking it out, and keeping Let's
//! Encrypt certificates renewed. Commands (`certs:*`, `letsencrypt:*`, `domains:*`) and the
//! daemon's renewal loop share these.
//!
//! A certificate goes into service in this order: written as a new bundle file, loaded
//! by nginx on its own (`Nginx::check_certificate`), named in `tls.toml`, then the app's
//! site is rendered against it (checked alone, swapped in, graceful reload). If the site
//! step fails, `tls.toml` and the port mappings go back to what they were and the old site
//! never stopped serving.

use std::sync::Arc;
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
const RENEW_CHECK_EVERY: Duration = Duration::from_secs(3600);
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
    let Some(state) = engine.store.load_tls(app).map_err(|e| e.to_string())? else { return Ok(None) };
    let text = engine.store.load_tls_bundle(app, &state).map_err(|e| e.to_string())?;
    let bundle = Bundle::from_nginx_pem(&text).map_err(|e| format!("the certificate of {app} cannot be read: {e}"))?;
    Ok(Some((state, bundle.info)))
}

/// Puts `bundle` in service for the app (see the module's comment for the order). Call
/// with the app's deploy lock held.
pub async fn install(engine: &Engine, app: &str, bundle: &Bundle, source: CertSource, out: &Output) -> Result<(), String> {
    let store = &engine.store;
    let file = store.write_tls_bundle(app, bundle).map_err(|e| e.to_string())?;
    let state = TlsState { source, file, installed_at: crate::unix_now(), renewal: Renewal::default() };
    if let Err(e) = engine.nginx.check_certificate(&store.tls_bundle_path(app, &state)).await {
        let _ = store.prune_tls(app);
        return Err(e.to_string());
    }
    let (previous_tls, previous_ports) = {
        let _lock = store.lock_app(app).await;
        let previous_tls = store.load_tls(app).map_err(|e| e.to_string())?;
        let mut config = store.load_app(app).map_err(|e| e.to_string())?;
        let previous_ports = config.ports.clone();
        // As dokku does: a certificate brings an https mapping to the app's container port.
        if !config.ports.iter().any(|p| p.scheme == Scheme::Https) {
            let container = config.effective_ports().iter().find(|p| p.scheme == Scheme::Http).map(|p| p.container).unwrap_or_else(|| config.container_port());
            config.ports = config.effective_ports();
            config.ports.push(PortMap { scheme: Scheme::Https, host: 443, container });
            store.save_app(app, &config).map_err(|e| e.to_string())?;
        }
        store.save_tls(app, &state).map_err(|e| e.to_string())?;
        (previous_tls, previous_ports)
    };
    if let Err(e) = crate::deploy::reroute(engine, app, out).await {
        let _lock = store.lock_app(app).await;
        match &previous_tls {
            Some(old) => store.save_tls(app, old).map_err(|e| e.to_string())?,
            None => store.remove_tls(app).map_err(|e| e.to_string())?,
        }
        if let Ok(mut config) = store.load_app(app) {
            config.ports = previous_ports;
            let _ = store.save_app(app, &config);
        }
        let _ = store.prune_tls(app);
        return Err(e);
    }
    let _ = store.prune_tls(app);
    let info = &bundle.info;
    out.step(format!("{app} serves https for {} with a {source} certificate (expires {} UTC)", info.names.join(", "), crate::tls::utc(info.not_after)))
        .await;
    Ok(())
}

/// Takes the app's certificate out of service: https mappings go, plain http serves again
/// without a redirect. Call with the app's deploy lock held.
pub async fn remove(engine: &Engine, app: &str, out: &Output) -> Result<bool, String> {
    let store = &engine.store;
    {
        let _lock = store.lock_app(app).await;
        let had = store.load_tls(app).map_err(|e| e.to_string())?.is_some();
        let mut config = store.load_app(app).map_err(|e| e.to_string())?;
        let before = config.clone();
        config.ports.retain(|p| p.scheme != Scheme::Https);
        // What remains may be just the default mapping: keep the default implicit again.
        if config.ports == [PortMap::DEFAULT] || config.ports.is_empty() {
            config.ports.clear();
        }
        if config != before {
            store.save_app(app, &config).map_err(|e| e.to_string())?;
        }
        if !had && config == before {
            return Ok(false);
        }
        store.remove_tls(app).map_err(|e| e.to_string())?;
    }
    crate::deploy::reroute(engine, app, out).await?;
    store.prune_tls(app).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Issues a Let's Encrypt certificate for every domain of the app and puts it in service.
/// The ACME exchange runs without the deploy lock (deploys go on); installing takes it.
pub async fn issue_letsencrypt(engine: &Engine, app: &str, out: &Output) -> Result<(), String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let settings = effective(&config, &global);
    let Some(email) = settings.email else {
        return Err("Set an email for Let's Encrypt first: letsencrypt:set --global email you@example.com".into());
    };
    if config.domains.is_empty() {
        return Err(format!("{app} has no domains: domains:add {app} DOMAIN first"));
    }
    let acme = Acme { root: engine.root(), nginx: &engine.nginx };
    let bundle = acme.issue(&AcmeSettings { server: settings.server, email }, &config.domains, out).await.map_err(|e| e.to_string())?;
    let _deploying = engine.deploy_lock(app, out).await?;
    install(engine, app, &bundle, CertSource::Letsencrypt, out).await
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
}

/// Renews the app's Let's Encrypt certificate if it is due (or `force`). A failure keeps
/// the current certificate serving and is recorded in `tls.toml` with the next attempt.
pub async fn renew(engine: &Engine, app: &str, force: bool, out: &Output) -> Result<Renewed, String> {
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
    if !force && let Some((state, _)) = &cert
        && state.renewal.next_attempt > crate::unix_now()
    {
        return Ok(Renewed::BackingOff(state.renewal.next_attempt));
    }
    out.step(format!("Renewing the certificate of {app}: {why}")).await;
    match issue_letsencrypt(engine, app, out).await {
        Ok(()) => {
            tracing::info!(app, "certificate renewed");
            Ok(Renewed::Renewed)
        }
        Err(e) => {
            tracing::warn!(app, "certificate renewal failed: {e}");
            record_failure(engine, app, &e).await;
            Err(e)
        }
    }
}

pub async fn record_failure(engine: &Engine, app: &str, error: &str) {
    let store = &engine.store;
    let _lock = store.lock_app(app).await;
    if let Ok(Some(mut state)) = store.load_tls(app) {
        state.renewal.failures += 1;
        state.renewal.last_error = Some(error.to_string());
        let wait = (RETRY_FIRST << (state.renewal.failures - 1).min(8)).min(RETRY_MAX);
        state.renewal.next_attempt = crate::unix_now() + wait;
        let _ = store.save_tls(app, &state);
    }
}

/// Renews what is due, for every app: at daemon start, then every hour. Logs what it did.
pub async fn renewal_loop(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        for app in engine.store.list_apps().unwrap_or_default() {
            let out = Output::discard();
            match renew(&engine, &app, false, &out).await {
                Ok(Renewed::BackingOff(at)) => tracing::info!(app, "certificate renewal due; retrying after {} UTC", crate::tls::utc(at as i64)),
                Ok(_) => {}
                Err(_) => {} // logged by renew
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RENEW_CHECK_EVERY) => {}
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
