//! An app's site as a typed model, planned from its routing (domains, ports, certificate),
//! and the one decision of whether a change of it needs nginx to reload. Pure: rendering and
//! nginx are `proxy`'s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::validate::{PortMap, Scheme};

/// Where berth's nginx listens: host port 80 of a mapping is `http`, 443 is `https`; other
/// host ports listen on the same IP as those.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub http: SocketAddr,
    pub https: SocketAddr,
}

impl Listen {
    pub(super) fn for_map(&self, map: &PortMap) -> SocketAddr {
        match (map.scheme, map.host) {
            (Scheme::Http, 80) => self.http,
            (Scheme::Https, 443) => self.https,
            (Scheme::Http, port) => SocketAddr::new(self.http.ip(), port),
            (Scheme::Https, port) => SocketAddr::new(self.https.ip(), port),
        }
    }
}

/// The app's certificate as a site uses it.
#[derive(Debug, Clone)]
pub struct SiteTls {
    /// The bundle file (chain and key).
    pub bundle: PathBuf,
    /// The names it is valid for (`*.` wildcards allowed).
    pub names: Vec<String>,
    /// The Strict-Transport-Security value, None for no header.
    pub hsts: Option<String>,
}

/// Everything that decides an app's site.
#[derive(Debug, Clone)]
pub struct Routing<'a> {
    pub app: &'a str,
    pub domains: &'a [String],
    pub ports: &'a [PortMap],
    pub listen: Listen,
    pub tls: Option<SiteTls>,
}

/// Where one app's traffic goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Site {
    pub app: String,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
    /// Where ACME HTTP-01 answers are (`.well-known/acme-challenge/` below it).
    pub acme_root: String,
}

impl Site {
    /// The bundle its TLS servers serve (a site has one certificate), if it has any.
    pub fn certificate(&self) -> Option<&str> {
        self.servers.iter().find_map(|s| s.certificate.as_deref())
    }
}

/// An app's upstream for one container port; its peers are the app's (`Nginx::set_peers`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Upstream {
    pub name: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Server {
    pub listen: String,
    pub server_names: String,
    pub upstream: String,
    /// TLS server: the bundle nginx loads as certificate and key.
    pub certificate: Option<String>,
    pub hsts: Option<String>,
    /// Plain HTTP that only redirects: to this https port suffix (`""` for 443, `":8443"`).
    pub redirect: Option<String>,
}

/// Which of an app's names are served how.
struct Names<'a> {
    /// Names the certificate covers.
    secure: Vec<String>,
    /// Names plain http redirects to https for (https is served for them).
    redirected: Vec<String>,
    /// Names plain http proxies to the app.
    proxied: Vec<String>,
    /// The https mappings, when a certificate covers some name.
    https_maps: Vec<&'a PortMap>,
}

impl<'a> Names<'a> {
    fn of(routing: &Routing<'a>) -> Names<'a> {
        let (secure, plain): (Vec<String>, Vec<String>) = match &routing.tls {
            Some(tls) => routing.domains.iter().cloned().partition(|d| tls.names.iter().any(|n| crate::tls::covers(n, d))),
            None => (Vec::new(), routing.domains.to_vec()),
        };
        let https_maps: Vec<&PortMap> = if secure.is_empty() { Vec::new() } else { routing.ports.iter().filter(|p| p.scheme == Scheme::Https).collect() };
        // Names the certificate covers redirect only when https is really served for them.
        let (redirected, proxied) = if https_maps.is_empty() { (Vec::new(), routing.domains.to_vec()) } else { (secure.clone(), plain) };
        Names { secure, redirected, proxied, https_maps }
    }
}

/// Where a browser reaches the app, in the order of its domains: `https://` for names
/// served with a certificate, `http://` for the others; a port only when not the default.
/// Wildcard names are left out (no browser can open them).
pub fn urls(routing: &Routing<'_>) -> Vec<String> {
    let names = Names::of(routing);
    let http = routing.ports.iter().find(|p| p.scheme == Scheme::Http);
    let with_port = |scheme: &str, name: &str, map: &PortMap, default: u16| match routing.listen.for_map(map).port() {
        port if port == default => format!("{scheme}://{name}"),
        port => format!("{scheme}://{name}:{port}"),
    };
    let mut urls = Vec::new();
    for name in routing.domains.iter().filter(|d| !d.starts_with("*.")) {
        if let (true, Some(map)) = (names.redirected.contains(name), names.https_maps.first()) {
            urls.push(with_port("https", name, map, 443));
        } else if let (true, Some(map)) = (names.proxied.contains(name), http) {
            urls.push(with_port("http", name, map, 80));
        }
    }
    urls
}

/// Plans an app's site: one upstream per container port; per http mapping, a server that
/// proxies (or redirects to https the names the certificate covers); per https mapping,
/// a TLS server for those names. Pure. None when there is nothing to serve (no domains, or
/// no mapping that can be served). The web containers are not part of it: they are the
/// app's peers, so a site (and nginx's config) stays the same while they change.
pub fn plan_site(routing: &Routing<'_>, acme_root: &Path) -> Option<Site> {
    let Routing { app, domains, ports, listen, tls } = routing;
    if domains.is_empty() {
        return None;
    }
    let Names { secure, redirected, proxied, https_maps } = Names::of(routing);
    let redirect_to = https_maps.first().map(|m| match listen.for_map(m).port() {
        443 => String::new(),
        port => format!(":{port}"),
    });

    let mut upstreams: Vec<Upstream> = Vec::new();
    let mut upstream_for = |container: u16| {
        let name = format!("berth-{app}-{container}");
        if !upstreams.iter().any(|u| u.name == name) {
            upstreams.push(Upstream { name: name.clone(), port: container });
        }
        name
    };
    let mut servers = Vec::new();
    for map in ports.iter().filter(|p| p.scheme == Scheme::Http) {
        let address = listen.for_map(map).to_string();
        if !proxied.is_empty() {
            let upstream = upstream_for(map.container);
            servers.push(Server { listen: address.clone(), server_names: proxied.join(" "), upstream, certificate: None, hsts: None, redirect: None });
        }
        if !redirected.is_empty() {
            servers.push(Server {
                listen: address,
                server_names: redirected.join(" "),
                upstream: String::new(),
                certificate: None,
                hsts: None,
                redirect: redirect_to.clone(),
            });
        }
    }
    for map in &https_maps {
        let tls = tls.as_ref().expect("https maps are kept only with a certificate");
        servers.push(Server {
            listen: format!("{} ssl http2", listen.for_map(map)),
            server_names: secure.join(" "),
            upstream: upstream_for(map.container),
            certificate: Some(tls.bundle.display().to_string()),
            hsts: tls.hsts.clone(),
            redirect: None,
        });
    }
    if servers.is_empty() {
        return None;
    }
    Some(Site { app: app.to_string(), upstreams, servers, acme_root: acme_root.display().to_string() })
}

/// A mapping of `ours` on a listen address another app serves with the other scheme: nginx
/// has one TLS setting per listen socket, so `https` there would turn TLS on for the other
/// app's plain HTTP (or the other way round). The first such: ours, the other app, its
/// mapping. Pure.
pub fn scheme_clash<'a>(listen: Listen, ours: &[PortMap], others: &'a [(String, Vec<PortMap>)]) -> Option<(PortMap, &'a str, PortMap)> {
    ours.iter().find_map(|mine| {
        others.iter().find_map(|(app, maps)| {
            maps.iter().find(|theirs| theirs.scheme != mine.scheme && listen.for_map(theirs) == listen.for_map(mine)).map(|theirs| (*mine, app.as_str(), *theirs))
        })
    })
}

/// Whether nginx must reload to go from the site in place (`old`, None: none known) to
/// `new`: only when its server blocks or upstreams change, as ingress-nginx's
/// `IsDynamicConfigurationEnough` decides. Peers are not part of a site (they change in
/// nginx's memory), nor is which bundle a TLS server serves (a renewed certificate is put
/// in nginx's memory, `Nginx::switch_site`), and the order servers and upstreams are
/// listed in changes nothing.
pub fn needs_reload(old: Option<&Site>, new: &Site) -> bool {
    let Some(old) = old else { return true };
    let sorted = |site: &Site| {
        let mut upstreams = site.upstreams.clone();
        upstreams.sort();
        let mut servers: Vec<Server> = site.servers.iter().map(|s| Server { certificate: s.certificate.as_ref().map(|_| String::new()), ..s.clone() }).collect();
        servers.sort();
        (site.app.clone(), upstreams, servers, site.acme_root.clone())
    };
    sorted(old) != sorted(new)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn listen() -> Listen {
        Listen { http: "127.0.0.1:8080".parse().unwrap(), https: "127.0.0.1:8443".parse().unwrap() }
    }

    pub(crate) fn map(spec: &str) -> PortMap {
        crate::validate::port_map(spec).unwrap()
    }

    pub(crate) fn routing<'a>(domains: &'a [String], ports: &'a [PortMap], tls: Option<SiteTls>) -> Routing<'a> {
        Routing { app: "web", domains, ports, listen: listen(), tls }
    }

    pub(crate) fn tls(names: &[&str]) -> Option<SiteTls> {
        Some(SiteTls { bundle: "/r/apps/web/tls/cert-1.pem".into(), names: names.iter().map(|s| s.to_string()).collect(), hsts: Some("max-age=60".into()) })
    }

    #[test]
    fn urls_say_https_where_a_certificate_serves_and_name_odd_ports() {
        let ports = vec![PortMap::DEFAULT, map("https:443:5000")];
        let domains = vec!["a.com".to_string(), "b.com".to_string(), "*.c.com".to_string()];
        let plain = routing(&domains, &ports, None);
        assert_eq!(urls(&plain), vec!["http://a.com:8080", "http://b.com:8080"]);
        let secure = routing(&domains, &ports, tls(&["a.com"]));
        assert_eq!(urls(&secure), vec!["https://a.com:8443", "http://b.com:8080"]);
        let mut on_defaults = routing(&domains, &ports, tls(&["a.com"]));
        on_defaults.listen = Listen { http: "0.0.0.0:80".parse().unwrap(), https: "0.0.0.0:443".parse().unwrap() };
        assert_eq!(urls(&on_defaults), vec!["https://a.com", "http://b.com"]);
        // A certificate without an https mapping serves nothing over https.
        let http_only = [PortMap::DEFAULT];
        assert_eq!(urls(&routing(&domains, &http_only, tls(&["a.com"]))), vec!["http://a.com:8080", "http://b.com:8080"]);
    }

    #[test]
    fn plans_one_upstream_per_container_port() {
        let ports = vec![PortMap::DEFAULT, map("http:8081:5000"), map("https:443:5000")];
        let domains = vec!["a.com".to_string(), "b.com".to_string()];
        // Without a certificate, https mappings are not served.
        let site = plan_site(&routing(&domains, &ports, None), Path::new("/acme")).unwrap();
        assert_eq!(site.upstreams.len(), 1);
        assert_eq!((site.upstreams[0].name.as_str(), site.upstreams[0].port), ("berth-web-5000", 5000));
        assert_eq!(site.servers.len(), 2);
        assert_eq!(site.servers[0].listen, "127.0.0.1:8080");
        assert_eq!(site.servers[1].listen, "127.0.0.1:8081");
        assert_eq!(site.servers[0].server_names, "a.com b.com");
        assert!(plan_site(&routing(&[], &ports, None), Path::new("/acme")).is_none());
    }

    #[test]
    fn with_a_certificate_covered_names_redirect_and_others_stay_plain() {
        let ports = vec![PortMap::DEFAULT, map("https:443:5000")];
        let domains = vec!["a.com".to_string(), "new.com".to_string()];
        let site = plan_site(&routing(&domains, &ports, tls(&["a.com"])), Path::new("/acme")).unwrap();
        let names: Vec<(&str, &str, bool, bool)> =
            site.servers.iter().map(|s| (s.listen.as_str(), s.server_names.as_str(), s.certificate.is_some(), s.redirect.is_some())).collect();
        assert_eq!(
            names,
            vec![("127.0.0.1:8080", "new.com", false, false), ("127.0.0.1:8080", "a.com", false, true), ("127.0.0.1:8443 ssl http2", "a.com", true, false),]
        );
        assert_eq!(site.servers[1].redirect.as_deref(), Some(":8443"));
        // No https mapping: the certificate is kept but nothing redirects.
        let site = plan_site(&routing(&domains, &[PortMap::DEFAULT], tls(&["*.com"])), Path::new("/acme")).unwrap();
        assert_eq!(site.servers.len(), 1);
        assert!(site.servers[0].redirect.is_none());
    }

    /// One case of `needs_reload`: how the routing changes, and whether nginx must reload.
    struct ReloadCase {
        what: &'static str,
        change: fn(&mut Vec<String>, &mut Vec<PortMap>, &mut Option<SiteTls>, &mut Listen),
        reload: bool,
    }

    #[rustfmt::skip]
    const RELOAD_CASES: &[ReloadCase] = &[
        ReloadCase { what: "nothing changes (a deploy, a scale, a restart: only peers move)", change: |_, _, _, _| {}, reload: false },
        ReloadCase { what: "a domain is added", change: |d, _, _, _| d.push("c.com".into()), reload: true },
        ReloadCase { what: "a domain is removed", change: |d, _, _, _| { d.pop(); }, reload: true },
        ReloadCase { what: "the domains are listed in another order", change: |d, _, _, _| d.reverse(), reload: true },
        ReloadCase { what: "a certificate arrives without an https mapping: nothing is served with it", change: |_, _, t, _| *t = tls(&["a.com"]), reload: false },
        ReloadCase { what: "a certificate arrives with an https mapping", change: |_, p, t, _| { p.push(map("https:443:5000")); *t = tls(&["a.com"]); }, reload: true },
        ReloadCase { what: "a certificate that covers none of the names", change: |_, _, t, _| *t = tls(&["other.org"]), reload: false },
        ReloadCase { what: "an http port mapping is added", change: |_, p, _, _| p.push(map("http:8081:5000")), reload: true },
        ReloadCase { what: "a mapping to another container port (a new upstream)", change: |_, p, _, _| p.push(map("http:8082:3000")), reload: true },
        ReloadCase { what: "an https mapping without a certificate is not served", change: |_, p, _, _| p.push(map("https:443:5000")), reload: false },
        ReloadCase { what: "the mappings are listed in another order", change: |_, p, _, _| { p.push(map("http:8081:5000")); p.reverse(); }, reload: true },
        ReloadCase { what: "berth's http listener moves", change: |_, _, _, l| l.http = "127.0.0.1:9090".parse().unwrap(), reload: true },
        ReloadCase { what: "berth's https listener moves, nothing served on https", change: |_, _, _, l| l.https = "127.0.0.1:9443".parse().unwrap(), reload: false },
    ];

    #[test]
    fn a_reload_only_when_server_blocks_or_upstreams_change() {
        let base_domains = vec!["a.com".to_string(), "b.com".to_string()];
        let base_ports = vec![PortMap::DEFAULT];
        let old = plan_site(&routing(&base_domains, &base_ports, None), Path::new("/acme")).unwrap();
        assert!(needs_reload(None, &old), "nothing known in place");
        for case in RELOAD_CASES {
            let (mut domains, mut ports, mut tls, mut listen) = (base_domains.clone(), base_ports.clone(), None, listen());
            (case.change)(&mut domains, &mut ports, &mut tls, &mut listen);
            let new = plan_site(&Routing { app: "web", domains: &domains, ports: &ports, listen, tls }, Path::new("/acme")).unwrap();
            assert_eq!(needs_reload(Some(&old), &new), case.reload, "{}", case.what);
        }
    }

    #[test]
    fn one_listen_address_serves_one_scheme_across_apps() {
        let others = vec![("blog".to_string(), vec![PortMap::DEFAULT]), ("shop".to_string(), vec![map("https:443:5000"), map("http:8081:5000")])];
        // A default install: http on port 80, https on 443, of one address.
        let listen = Listen { http: "0.0.0.0:80".parse().unwrap(), https: "0.0.0.0:443".parse().unwrap() };
        let clash = |ours: &[&str]| scheme_clash(listen, &ours.iter().map(|m| map(m)).collect::<Vec<_>>(), &others).map(|(m, app, t)| (m.to_string(), app.to_string(), t.to_string()));
        assert_eq!(clash(&["https:80:5000"]), Some(("https:80:5000".into(), "blog".into(), "http:80:5000".into())));
        assert_eq!(clash(&["http:443:5000"]), Some(("http:443:5000".into(), "shop".into(), "https:443:5000".into())));
        assert_eq!(clash(&["https:8081:3000"]), Some(("https:8081:3000".into(), "shop".into(), "http:8081:5000".into())));
        assert_eq!(clash(&["http:80:3000", "https:443:3000", "http:8081:3000", "https:8443:5000"]), None);
        assert_eq!(scheme_clash(listen, &[map("https:80:5000")], &[]), None);
        // berth on other ports: https:80 is not where http listens.
        assert_eq!(scheme_clash(super::tests::listen(), &[map("https:80:5000")], &others), None);
    }

    #[test]
    fn with_a_certificate_hsts_and_redirects_reload_and_its_renewal_does_not() {
        let domains = vec!["a.com".to_string()];
        let ports = vec![PortMap::DEFAULT, map("https:443:5000")];
        let plan = |tls| plan_site(&routing(&domains, &ports, tls), Path::new("/acme")).unwrap();
        let old = plan(tls(&["a.com"]));
        assert!(!needs_reload(Some(&old), &plan(tls(&["a.com"]))));
        let renewed = SiteTls { bundle: "/r/apps/web/tls/cert-2.pem".into(), ..tls(&["a.com"]).unwrap() };
        let renewed = plan(Some(renewed));
        assert!(!needs_reload(Some(&old), &renewed), "a renewed certificate is served from nginx's memory");
        assert_eq!((old.certificate(), renewed.certificate()), (Some("/r/apps/web/tls/cert-1.pem"), Some("/r/apps/web/tls/cert-2.pem")));
        let no_hsts = SiteTls { hsts: None, ..tls(&["a.com"]).unwrap() };
        assert!(needs_reload(Some(&old), &plan(Some(no_hsts))), "HSTS off");
        assert!(needs_reload(Some(&old), &plan(None)), "the certificate goes: no more TLS server nor redirect");
        // The same servers in another order are the same config.
        let mut reordered = old.clone();
        reordered.servers.reverse();
        assert!(!needs_reload(Some(&old), &reordered));
        let other_app = Site { app: "api".into(), ..old.clone() };
        assert!(needs_reload(Some(&old), &other_app));
    }
}
