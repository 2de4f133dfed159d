//! Wildcard certificates: `letsencrypt:wildcard DOMAIN` orders `*.DOMAIN` and `DOMAIN` from
//! the ACME CA over DNS-01 (the provider of `letsencrypt:set --global dns-provider`), keeps
//! the bundle in `<root>/letsencrypt/wildcards/DOMAIN.pem` (0600), and puts it in service
//! for every app whose names it all covers and that has no certificate of its own: at once,
//! and for a new app at its first deploy. The daemon renews it like an app's certificate
//! (`graceperiod` before expiry) and puts the new one in service where the old one served.
//! A certificate an app was given (`certs:add`, `certs:generate`) is never replaced; one of
//! Let's Encrypt's is, by a wildcard that lasts longer.

use crate::acme::{Acme, AcmeSettings};
use crate::engine::Engine;
use crate::output::Output;
use crate::store::{AppConfig, CertSource};
use crate::tls::Bundle;

/// The kept wildcard that covers every one of `domains`, the one that lasts longest.
pub fn covering(engine: &Engine, domains: &[String]) -> Option<Bundle> {
    if domains.is_empty() {
        return None;
    }
    engine.store.wildcards().into_iter().map(|(_, b)| b).filter(|b| domains.iter().all(|d| b.info.covers(d))).max_by_key(|b| b.info.not_after)
}

/// Which apps a wildcard just issued is put in service for.
#[derive(Debug, Clone, Copy)]
pub enum Serve<'a> {
    /// `letsencrypt:wildcard`: every app it covers (see [`serve_covered`]).
    Covered,
    /// A renewal: the apps the earlier one served (a certificate removed since stays so).
    Renewed,
    /// `previews:enable APP`: APP and its previews, of the apps it covers.
    AppAndPreviews(&'a str),
}

/// Orders `*.DOMAIN` and `DOMAIN` over DNS-01, keeps it, and serves it to the apps `serve`
/// says. The apps' current certificates serve until then; a failed order changes nothing.
pub async fn issue(engine: &Engine, domain: &str, serve: Serve<'_>, out: &Output) -> Result<(), String> {
    let provider = engine.store.load_dns()?.provider().map_err(|e| e.to_string())?.ok_or(
        "No DNS provider for DNS-01: letsencrypt:set --global dns-provider rfc2136 (with dns-rfc2136-server, -key-name, -key-secret) or exec (with dns-exec-path)",
    )?;
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let settings = crate::https::effective(&AppConfig::default(), &global);
    let email = settings.email.ok_or("Set an email for Let's Encrypt first: letsencrypt:set --global email you@example.com")?;
    out.step(format!("Ordering *.{domain} and {domain} over DNS-01 ({})", provider.describe())).await;
    let acme = Acme { root: engine.root(), nginx: &engine.nginx };
    let names = [format!("*.{domain}"), domain.to_string()];
    let bundle = acme.issue(&AcmeSettings { server: settings.server, email }, &names, Some(&provider), out).await.map_err(|e| e.to_string())?;
    engine.store.save_wildcard(domain, &bundle)?;
    let _ = engine.store.save_wildcard_renewal(domain, &Default::default());
    let served = serve_covered(engine, &bundle, serve, out).await;
    out.step(format!("*.{domain} serves {} app(s)", served.len())).await;
    Ok(())
}

/// Puts `bundle` in service for the apps whose names it all covers, of those `serve` names,
/// and whose certificate is none, an earlier wildcard of the same name, or one of Let's
/// Encrypt's that does not last as long (on a renewal: only an earlier one of the same
/// name). Returns those apps; one that fails keeps its certificate and is said.
pub async fn serve_covered(engine: &Engine, bundle: &Bundle, serve: Serve<'_>, out: &Output) -> Vec<String> {
    let mut served = Vec::new();
    for app in engine.store.list_apps().unwrap_or_default() {
        let Ok(config) = engine.store.load_app(&app) else { continue };
        if config.domains.is_empty() || !config.domains.iter().all(|d| bundle.info.covers(d)) {
            continue;
        }
        if let Serve::AppAndPreviews(parent) = serve
            && app != parent
            && config.preview_of.as_ref().is_none_or(|p| p.parent != parent)
        {
            continue;
        }
        let Ok(_deploying) = engine.deploy_lock(&app, out).await else { continue };
        if wants(engine, &app, bundle, matches!(serve, Serve::Renewed)) {
            match crate::https::install(engine, &app, bundle, CertSource::Letsencrypt, out).await {
                Ok(()) => served.push(app),
                Err(e) => out.error(format!("{app} keeps its certificate: {e}")).await,
            }
        }
    }
    served
}

/// Whether the app should take `bundle`: it has no certificate, or one of Let's Encrypt's
/// that is this wildcard's earlier one or ends sooner; on a renewal, only the earlier one.
fn wants(engine: &Engine, app: &str, bundle: &Bundle, renewal: bool) -> bool {
    match engine.store.current_certificate(app) {
        Ok(None) => !renewal,
        Ok(Some((state, info))) => {
            let same_wildcard = info.names.iter().any(|n| n.starts_with("*.") && bundle.info.names.contains(n));
            let better = same_wildcard || (!renewal && info.not_after < bundle.info.not_after);
            state.source == CertSource::Letsencrypt && info.serial != bundle.info.serial && better
        }
        Err(_) => false,
    }
}

/// Before an app's first deploy (its deploy lock held), if it has no certificate: a kept
/// wildcard that covers all its names serves it; else, with `letsencrypt:set --global auto
/// true`, Let's Encrypt is enabled for it and its certificate ordered in the background
/// (HTTP-01; a failure is retried by the daemon with its backoff and shown by
/// `letsencrypt:list`).
pub async fn serve_new_app(engine: &Engine, app: &str, out: &Output) {
    let Ok(config) = engine.store.load_app(app) else { return };
    // Its first deploy only: a certificate removed since (`certs:remove`,
    // `letsencrypt:disable`) stays removed.
    let deployed = engine.store.load_releases(app).map(|r| r.active().is_some()).unwrap_or(true);
    if deployed || !matches!(engine.store.current_certificate(app), Ok(None)) {
        return;
    }
    if let Some(bundle) = covering(engine, &config.domains) {
        if let Err(e) = crate::https::install(engine, app, &bundle, CertSource::Letsencrypt, out).await {
            out.error(format!("the wildcard certificate could not be put in service for {app}: {e}")).await;
        }
        return;
    }
    let Ok(global) = engine.store.load_global() else { return };
    let email = crate::https::effective(&config, &global).email;
    if !global.letsencrypt.auto || config.letsencrypt.enabled || config.domains.is_empty() || email.is_none() {
        return;
    }
    let enabled = engine
        .update_app(app, |c| {
            c.letsencrypt.enabled = true;
            Ok::<_, crate::store::StoreError>(())
        })
        .await;
    if enabled.is_err() {
        return;
    }
    out.step(format!("Ordering a certificate for {} in the background (letsencrypt:set --global auto true; letsencrypt:list shows it)", config.domains.join(", "))).await;
    let (engine, app) = (engine.shared(), app.to_string());
    tokio::spawn(async move {
        // `renew` logs and records a failure; the daemon tries again after its backoff.
        let _ = crate::https::renew(&engine, &app, false, &Output::discard()).await;
    });
}

/// The kept wildcards due for renewal (`graceperiod` before expiry, or all with `force`),
/// renewed; a failure keeps the current one serving, is said and logged (the next check
/// tries again). Returns how many failed.
pub async fn renew_due(engine: &Engine, now: i64, force: bool, out: &Output) -> usize {
    let Ok(global) = engine.store.load_global() else { return 0 };
    let grace = crate::https::effective(&AppConfig::default(), &global).graceperiod as i64;
    let mut failures = 0;
    for (domain, bundle) in engine.store.wildcards() {
        let mut renewal = engine.store.wildcard_renewal(&domain);
        if !force && (bundle.info.not_after - grace > now || renewal.next_attempt as i64 > now) {
            continue;
        }
        out.step(format!("Renewing *.{domain} (expires {} UTC)", crate::tls::utc(bundle.info.not_after))).await;
        match issue(engine, &domain, Serve::Renewed, out).await {
            Ok(()) => tracing::info!(domain, "wildcard certificate renewed"),
            Err(e) => {
                failures += 1;
                tracing::warn!(domain, "wildcard certificate renewal failed: {e}");
                // Backed off as an app's renewal is (a rate limit: until it ends).
                crate::https::note_failure(&mut renewal, &e, now.max(0) as u64);
                if let Err(e) = engine.store.save_wildcard_renewal(&domain, &renewal) {
                    tracing::warn!(domain, "the failed renewal could not be recorded: {e}");
                }
                out.error(format!("*.{domain}: renewal failed: {e}; the current certificate keeps serving")).await;
            }
        }
    }
    failures
}
