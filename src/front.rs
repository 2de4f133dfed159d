//! berth's own site: its API and dashboard at `berth.<first global domain>`, served by
//! berth's nginx over https (plain http redirects), proxied to the API listener.
//!
//! Its certificate is a bundle in `front/` under the root, self-signed until an admin runs
//! `letsencrypt:enable --server`, then Let's Encrypt's, renewed by the daemon as the apps'
//! are. `front/front.toml` names the bundle and says which. Each certificate is a new file
//! (written as an app's is), so the site changes with it and nginx serves it (from its
//! memory, as an app's renewed one); the others go once the site serves it. The site is an
//! nginx site like an app's, named `berth` (no app may take that name or its host); its one
//! peer is the API listener.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::acme::{Acme, AcmeSettings};
use crate::engine::Engine;
use crate::output::Output;
use crate::proxy::{Routing, SiteTls};
use crate::store::{AppConfig, CertSource, GlobalConfig, Renewal};
use crate::tls::{Bundle, CertInfo};
use crate::validate::{PortMap, Scheme};

/// The site's name, and the first label of its host: no app may be called this.
pub const NAME: &str = crate::validate::BERTH_SITE;
/// Days a self-signed certificate of the site is valid.
const SELF_SIGNED_DAYS: i64 = 825;

/// `front/front.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrontState {
    /// The bundle nginx serves (`cert-<stamp>.pem` in `front/`).
    pub file: Option<String>,
    /// `letsencrypt:enable --server`: the certificate comes from the ACME server and is renewed.
    pub letsencrypt: bool,
    /// Let's Encrypt attempts that failed since the last success.
    pub renewal: Renewal,
}

/// Where berth's API and dashboard are reached: `berth.<first global domain>`, if any.
pub fn host(global: &GlobalConfig) -> Option<String> {
    global.global_domains.first().map(|g| format!("{NAME}.{g}"))
}

/// The site's address as a browser opens it (a port only when not 443), if it has a host.
pub fn url(engine: &Engine) -> Option<String> {
    let host = host(&engine.store.load_global().ok()?)?;
    Some(match engine.nginx.listen.https.port() {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    })
}

/// An app's default name under one global domain: `APP.<global>`, or the app's name itself
/// when it already ends in the global domain (`test.dokku.test` under `dokku.test`), as
/// dokku names it. Pure.
pub fn default_name(app: &str, global: &str) -> String {
    if app == global || app.ends_with(&format!(".{global}")) { app.to_string() } else { format!("{app}.{global}") }
}

/// Why `domain` cannot be an app's: it is berth's own host under a global domain.
pub fn claimed(domain: &str, global: &[String]) -> Option<String> {
    let bare = domain.trim_start_matches("*.");
    global
        .iter()
        .find(|g| bare == format!("{NAME}.{g}"))
        .map(|g| format!("Domain {domain} would take {NAME}.{g}, where berth serves its API and dashboard"))
}

fn dir(engine: &Engine) -> PathBuf {
    engine.root().join("front")
}

pub fn load_state(engine: &Engine) -> Result<FrontState, String> {
    let path = dir(engine).join("front.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FrontState::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save_state(engine: &Engine, state: &FrontState) -> Result<(), String> {
    let path = dir(engine).join("front.toml");
    let text = toml::to_string(state).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir(engine)).map_err(|e| format!("cannot create {}: {e}", dir(engine).display()))?;
    let text = format!("# berth's own site (its API and dashboard): where its certificate comes from\n{text}");
    crate::store::write_atomic(&path, text.as_bytes(), 0o600).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The certificate the site serves, if it has one that can be read.
pub fn certificate(engine: &Engine) -> Option<CertInfo> {
    bundle_info(engine, &load_state(engine).ok()?)
}

/// What the bundle `state` names says of its certificate, if it can be read.
fn bundle_info(engine: &Engine, state: &FrontState) -> Option<CertInfo> {
    let text = std::fs::read_to_string(dir(engine).join(state.file.as_ref()?)).ok()?;
    Bundle::from_nginx_pem(&text).ok().map(|b| b.info)
}

/// Makes `bundle` the site's certificate (with `letsencrypt` as its source) once nginx
/// loads it on its own: the certificate in place stays if it does not. Returns its file's
/// name. Call with the site's lock held; the site is routed to it next (which removes the
/// bundles no longer named).
async fn put_certificate(engine: &Engine, bundle: &Bundle, letsencrypt: bool) -> Result<String, String> {
    let name = crate::store::write_bundle(&dir(engine), bundle).map_err(|e| e.to_string())?;
    let path = dir(engine).join(&name);
    if let Err(e) = engine.nginx.check_certificate(&path).await {
        let _ = std::fs::remove_file(&path);
        return Err(e.to_string());
    }
    save_state(engine, &FrontState { file: Some(name.clone()), letsencrypt, renewal: Renewal::default() })?;
    Ok(name)
}

/// Serves the API and dashboard at the site's host, or serves no site when there is no
/// global domain. A certificate that does not cover the host (a new global domain) is
/// replaced by a self-signed one, or by Let's Encrypt's at the next renewal. The API
/// listener is the site's one peer (127.0.0.1 when it listens on every address).
pub async fn route(engine: &Engine) -> Result<(), String> {
    let _lock = engine.store.lock_app(NAME).await;
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let Some(host) = host(&global) else {
        return engine.nginx.remove_site(NAME).await.map_err(|e| e.to_string());
    };
    let state = load_state(engine)?;
    let (file, names) = match (bundle_info(engine, &state).filter(|info| info.covers(&host)), state.file) {
        (Some(info), Some(file)) => (file, info.names),
        _ => {
            let bundle = crate::tls::self_signed(std::slice::from_ref(&host), SELF_SIGNED_DAYS, crate::unix_now() as i64).map_err(|e| e.to_string())?;
            (put_certificate(engine, &bundle, state.letsencrypt).await?, bundle.info.names)
        }
    };
    let api = engine.settings.api_listen;
    let peer = match api.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) => return Err(format!("berth's site cannot proxy to the API on the IPv6 address {ip} (--api-listen): use an IPv4 address")),
        ip => ip,
    };
    let ports = [PortMap { scheme: Scheme::Http, host: 80, container: api.port() }, PortMap { scheme: Scheme::Https, host: 443, container: api.port() }];
    let domains = [host];
    let routing = Routing {
        app: NAME,
        domains: &domains,
        ports: &ports,
        listen: engine.nginx.listen,
        tls: Some(SiteTls { bundle: dir(engine).join(&file), names, hsts: None }),
    };
    let site = crate::proxy::plan_site(&routing, &engine.nginx.acme_root()).ok_or("berth's site has nothing to serve")?;
    engine.nginx.install_site(&site).await.map_err(|e| format!("berth's site: {e}"))?;
    crate::store::prune_bundles(&dir(engine), Some(&file));
    engine.nginx.set_peers(NAME, 0, &[peer.to_string()]).await.map_err(|e| e.to_string())
}

/// Routes the site as the daemon starts; a failure is logged, and the API still answers on
/// its listener.
pub async fn route_at_start(engine: &Engine) {
    if let Err(e) = route(engine).await {
        tracing::error!("cannot serve berth's API and dashboard through nginx: {e}");
    }
}

/// `letsencrypt:enable --server`: orders a certificate for the site's host over HTTP-01 and
/// serves it; the daemon renews it from then on.
pub async fn enable_letsencrypt(engine: &Engine, out: &Output) -> Result<(), String> {
    let global = engine.store.load_global().map_err(|e| e.to_string())?;
    let Some(host) = host(&global) else {
        return Err("berth's site has no name yet: domains:set-global DOMAIN first (it is then berth.DOMAIN)".into());
    };
    let settings = crate::https::effective(&AppConfig::new(), &global);
    let Some(email) = settings.email else {
        return Err("Set an email for Let's Encrypt first: letsencrypt:set --global email you@example.com".into());
    };
    let acme = Acme { root: engine.root(), nginx: &engine.nginx };
    let issued = acme.issue(&AcmeSettings { server: settings.server, email }, std::slice::from_ref(&host), None, out).await;
    let bundle = match issued {
        Ok(bundle) => bundle,
        Err(e) => {
            let mut state = load_state(engine)?;
            if state.letsencrypt {
                crate::https::note_failure(&mut state.renewal, &e.to_string(), crate::unix_now());
                save_state(engine, &state)?;
            }
            return Err(e.to_string());
        }
    };
    {
        let _lock = engine.store.lock_app(NAME).await;
        put_certificate(engine, &bundle, true).await?;
    }
    route(engine).await?;
    out.step(format!("berth serves its API and dashboard at https://{host} with a {} certificate (expires {} UTC)", CertSource::Letsencrypt, crate::tls::utc(bundle.info.not_after))).await;
    Ok(())
}

/// `letsencrypt:disable --server`: back to a self-signed certificate, renewed no more.
pub async fn disable_letsencrypt(engine: &Engine, out: &Output) -> Result<(), String> {
    {
        let _lock = engine.store.lock_app(NAME).await;
        if !load_state(engine)?.letsencrypt {
            return Err("Let's Encrypt is not enabled for berth's site".into());
        }
        let host = host(&engine.store.load_global().map_err(|e| e.to_string())?).ok_or("berth's site has no name: domains:set-global DOMAIN first")?;
        let bundle = crate::tls::self_signed(std::slice::from_ref(&host), SELF_SIGNED_DAYS, crate::unix_now() as i64).map_err(|e| e.to_string())?;
        put_certificate(engine, &bundle, false).await?;
    }
    route(engine).await?;
    out.step("berth's site serves a self-signed certificate; Let's Encrypt is disabled for it").await;
    Ok(())
}

/// Why the site's Let's Encrypt certificate needs ordering now, or None (also when Let's
/// Encrypt is not enabled for it, or there is no host).
pub fn due(engine: &Engine, now: i64) -> Option<String> {
    let global = engine.store.load_global().ok()?;
    let host = host(&global)?;
    let state = load_state(engine).ok()?;
    if !state.letsencrypt || state.renewal.next_attempt > now as u64 {
        return None;
    }
    let grace = crate::https::effective(&AppConfig::new(), &global).graceperiod as i64;
    match bundle_info(engine, &state) {
        None => Some("it has no certificate".into()),
        Some(info) if info.self_signed => Some("its certificate is self-signed".into()),
        Some(info) if !info.covers(&host) => Some(format!("the certificate does not cover {host}")),
        Some(info) if info.not_after - grace <= now => Some(format!("it expires {} UTC", crate::tls::utc(info.not_after))),
        Some(_) => None,
    }
}

/// Renews the site's certificate when due: at daemon start, then every hour.
pub async fn renewal_loop(engine: std::sync::Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        renew(&engine).await;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Renews the site's certificate if it is due.
pub async fn renew(engine: &Engine) {
    if let Some(why) = due(engine, crate::unix_now() as i64) {
        tracing::info!("renewing the certificate of berth's site: {why}");
        if let Err(e) = enable_letsencrypt(engine, &Output::discard()).await {
            tracing::warn!("the certificate of berth's site was not renewed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sites_host_is_under_the_first_global_domain_and_no_app_may_take_it() {
        let mut global = GlobalConfig::default();
        assert_eq!(host(&global), None);
        global.global_domains = vec!["example.com".into(), "other.org".into()];
        assert_eq!(host(&global).as_deref(), Some("berth.example.com"));
        let g = &global.global_domains;
        assert!(claimed("berth.example.com", g).is_some());
        assert!(claimed("berth.other.org", g).is_some());
        assert!(claimed("*.berth.example.com", g).is_some());
        assert!(claimed("shop.example.com", g).is_none());
        assert!(claimed("berth.example.net", g).is_none());
        assert!(claimed("myberth.example.com", g).is_none());
    }
}
