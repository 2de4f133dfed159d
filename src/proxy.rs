//! berth's own nginx: its prefix and pid under `<root>/nginx`, one site file per app.
//!
//! Rendering is pure (handlebars, strict, no escaping; every value was validated before it
//! got here: app names, domains, IPs and ports cannot carry nginx syntax). A site is checked
//! on its own with `nginx -t` before it replaces the old one, so one app's bad config never
//! blocks another app, and a failed check leaves the running site untouched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use handlebars::Handlebars;
use serde::Serialize;

use crate::validate::{PortMap, Scheme};

const MAIN_TEMPLATE: &str = include_str!("../nginx-templates/nginx.conf.hbs");
const SITE_TEMPLATE: &str = include_str!("../nginx-templates/site.conf.hbs");
pub const NGINX: &str = "nginx";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nginx: {0}")]
    Nginx(String),
    #[error("cannot render the nginx config: {0}")]
    Render(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProxyError + '_ {
    move |source| ProxyError::Io { path: path.to_path_buf(), source }
}

/// Where one app's traffic goes.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub app: String,
    pub release: u32,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub listen: String,
    pub server_names: String,
    pub upstream: String,
}

/// Plans an app's site: one upstream per container port, one server per http mapping.
/// Pure. Returns None when there is nothing to route (no domains, or no http mapping).
pub fn plan_site(app: &str, release: u32, domains: &[String], ports: &[PortMap], backends: &[String], http_listen: SocketAddr) -> Option<Site> {
    if domains.is_empty() || backends.is_empty() {
        return None;
    }
    let mut upstreams: Vec<Upstream> = Vec::new();
    let mut servers = Vec::new();
    for map in ports.iter().filter(|p| p.scheme == Scheme::Http) {
        let name = format!("berth-{app}-{}", map.container);
        if !upstreams.iter().any(|u| u.name == name) {
            upstreams.push(Upstream { name: name.clone(), servers: backends.iter().map(|ip| format!("{ip}:{}", map.container)).collect() });
        }
        // Host port 80 is berth's HTTP address; other host ports listen on the same IP.
        let listen = if map.host == 80 { http_listen } else { SocketAddr::new(http_listen.ip(), map.host) };
        servers.push(Server { listen: listen.to_string(), server_names: domains.join(" "), upstream: name });
    }
    if servers.is_empty() {
        return None;
    }
    Some(Site { app: app.to_string(), release, upstreams, servers })
}

pub struct Nginx {
    prefix: PathBuf,
    http_listen: SocketAddr,
    templates: Handlebars<'static>,
}

#[derive(Serialize)]
struct MainVars<'a> {
    prefix: String,
    pid: String,
    http_listen: String,
    sites: String,
    default_server: bool,
    #[serde(skip)]
    _marker: std::marker::PhantomData<&'a ()>,
}

impl Nginx {
    pub fn new(root: &Path, http_listen: SocketAddr) -> Nginx {
        let mut templates = Handlebars::new();
        templates.register_escape_fn(handlebars::no_escape);
        templates.set_strict_mode(true);
        templates.register_template_string("main", MAIN_TEMPLATE).expect("nginx.conf.hbs is valid handlebars");
        templates.register_template_string("site", SITE_TEMPLATE).expect("site.conf.hbs is valid handlebars");
        Nginx { prefix: root.join("nginx"), http_listen, templates }
    }

    fn sites_dir(&self) -> PathBuf {
        self.prefix.join("sites")
    }

    fn pid_file(&self) -> PathBuf {
        self.prefix.join("nginx.pid")
    }

    fn main_conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    pub fn site_file(&self, app: &str) -> PathBuf {
        self.sites_dir().join(format!("{app}.conf"))
    }

    pub fn render_site(&self, site: &Site) -> Result<String, ProxyError> {
        self.templates.render("site", site).map_err(|e| ProxyError::Render(e.to_string()))
    }

    fn render_main(&self, sites: &Path, pid: &Path, default_server: bool) -> Result<String, ProxyError> {
        let vars = MainVars {
            prefix: self.prefix.display().to_string(),
            pid: pid.display().to_string(),
            http_listen: self.http_listen.to_string(),
            sites: sites.display().to_string(),
            default_server,
            _marker: std::marker::PhantomData,
        };
        self.templates.render("main", &vars).map_err(|e| ProxyError::Render(e.to_string()))
    }

    /// Writes the main config and starts nginx unless it already runs (then reloads it).
    /// nginx outlives the daemon: restarting berth never interrupts traffic.
    pub async fn ensure_running(&self) -> Result<(), ProxyError> {
        for dir in [self.prefix.clone(), self.sites_dir(), self.prefix.join("logs"), self.prefix.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        // Workers run as nobody and write request bodies to tmp/.
        if let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") {
            let _ = nix::unistd::chown(&self.prefix.join("tmp"), Some(nobody.uid), None);
        }
        let main = self.render_main(&self.sites_dir().join("*.conf"), &self.pid_file(), true)?;
        crate::store::write_atomic(&self.main_conf(), main.as_bytes(), 0o644).map_err(io(&self.main_conf()))?;
        if self.master_pid().is_some() {
            return self.reload().await;
        }
        self.test_config(&self.main_conf()).await?;
        let output = tokio::process::Command::new(NGINX)
            .arg("-c")
            .arg(self.main_conf())
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg(self.prefix.join("logs/error.log"))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| ProxyError::Nginx(format!("cannot run {NGINX}: {e} (apt-get install nginx)")))?;
        if !output.status.success() {
            return Err(ProxyError::Nginx(first_error(&output.stderr)));
        }
        for _ in 0..50 {
            if self.master_pid().is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ProxyError::Nginx("nginx started but wrote no pid file".into()))
    }

    /// The master's pid, if it runs.
    pub fn master_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
        comm.contains("nginx").then_some(pid)
    }

    /// `nginx -t` on a config file.
    async fn test_config(&self, conf: &Path) -> Result<(), ProxyError> {
        let output = tokio::process::Command::new(NGINX)
            .arg("-t")
            .arg("-q")
            .arg("-c")
            .arg(conf)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg("/dev/stderr")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| ProxyError::Nginx(format!("cannot run {NGINX}: {e}")))?;
        if output.status.success() { Ok(()) } else { Err(ProxyError::Nginx(first_error(&output.stderr))) }
    }

    /// Checks `text` as the app's site on its own, then swaps it in and reloads nginx.
    /// On any failure the old site stays in place and keeps serving.
    pub async fn install_site(&self, app: &str, text: &str) -> Result<(), ProxyError> {
        let candidate = self.sites_dir().join(format!(".{app}.conf.candidate"));
        let check_conf = self.prefix.join(format!(".check-{app}.conf"));
        let check_pid = self.prefix.join(format!(".check-{app}.pid"));
        std::fs::write(&candidate, text).map_err(io(&candidate))?;
        let check_main = self.render_main(&candidate, &check_pid, false)?;
        std::fs::write(&check_conf, check_main).map_err(io(&check_conf))?;
        let checked = self.test_config(&check_conf).await;
        let _ = std::fs::remove_file(&check_conf);
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&candidate);
            return Err(e);
        }
        let site = self.site_file(app);
        let previous = std::fs::read(&site).ok();
        std::fs::rename(&candidate, &site).map_err(io(&site))?;
        // The whole config once more: a site can only conflict with another through nginx
        // itself (e.g. a listen option); if so, put the old site back.
        if let Err(e) = self.test_config(&self.main_conf()).await {
            match previous {
                Some(old) => crate::store::write_atomic(&site, &old, 0o644).map_err(io(&site))?,
                None => std::fs::remove_file(&site).map_err(io(&site))?,
            }
            return Err(e);
        }
        self.reload().await
    }

    pub async fn remove_site(&self, app: &str) -> Result<(), ProxyError> {
        let site = self.site_file(app);
        if site.exists() {
            std::fs::remove_file(&site).map_err(io(&site))?;
            self.reload().await?;
        }
        Ok(())
    }

    /// Graceful reload (SIGHUP), waiting until new workers run and every old worker has
    /// stopped accepting (it is gone, or titled "shutting down"), so that requests sent after
    /// this returns see the new config. Old workers finish their requests on their own.
    pub async fn reload(&self) -> Result<(), ProxyError> {
        let Some(pid) = self.master_pid() else {
            return Box::pin(self.ensure_running()).await;
        };
        let before = children(pid);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP)
            .map_err(|e| ProxyError::Nginx(format!("cannot signal nginx ({pid}): {e}")))?;
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = children(pid);
            let new_running = now.iter().any(|c| !before.contains(c));
            let old_accepting = before.iter().any(|c| now.contains(c) && !shutting_down(*c));
            if new_running && !old_accepting {
                return Ok(());
            }
        }
        Err(ProxyError::Nginx(format!("nginx did not reload within 1.5s; see {}", self.prefix.join("logs/error.log").display())))
    }

    /// Restarts nginx whenever it is found dead. Runs for the daemon's life.
    pub async fn watch(self: std::sync::Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            if self.master_pid().is_none() {
                tracing::warn!("nginx is not running: starting it");
                if let Err(e) = self.ensure_running().await {
                    tracing::error!("cannot start nginx: {e}");
                }
            }
        }
    }
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A worker that got QUIT has closed its listening sockets and says so in its title.
fn shutting_down(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains("shutting down")).unwrap_or(true)
}

/// nginx's error, one line.
fn first_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find(|l| l.contains("[emerg]") || l.contains("[alert]") || l.contains("[error]"))
        .or_else(|| text.lines().next())
        .unwrap_or("failed without a message")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    #[test]
    fn plans_one_upstream_per_container_port() {
        let ports = vec![PortMap::DEFAULT, crate::validate::port_map("http:8081:5000").unwrap(), crate::validate::port_map("https:443:5000").unwrap()];
        let site = plan_site("web", 3, &["a.com".into(), "b.com".into()], &ports, &["172.18.0.2".into()], listen()).unwrap();
        assert_eq!(site.upstreams.len(), 1);
        assert_eq!(site.upstreams[0].servers, vec!["172.18.0.2:5000"]);
        assert_eq!(site.servers.len(), 2);
        assert_eq!(site.servers[0].listen, "127.0.0.1:8080");
        assert_eq!(site.servers[1].listen, "127.0.0.1:8081");
        assert_eq!(site.servers[0].server_names, "a.com b.com");
        assert!(plan_site("web", 3, &[], &ports, &["172.18.0.2".into()], listen()).is_none());
    }

    #[test]
    fn renders_a_site_with_keepalive_forwarded_headers_and_websockets() {
        let nginx = Nginx::new(Path::new("/tmp/x"), listen());
        let site = plan_site("web", 2, &["a.com".into()], &[PortMap::DEFAULT], &["172.18.0.2".into(), "172.18.0.3".into()], listen()).unwrap();
        let text = nginx.render_site(&site).unwrap();
        for needle in [
            "upstream berth-web-5000 {",
            "server 172.18.0.2:5000;",
            "server 172.18.0.3:5000;",
            "keepalive 32;",
            "listen 127.0.0.1:8080;",
            "server_name a.com;",
            "proxy_pass http://berth-web-5000;",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "proxy_set_header Upgrade $http_upgrade;",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn the_main_config_has_a_404_default_and_includes_sites() {
        let nginx = Nginx::new(Path::new("/var/lib/berth"), listen());
        let text = nginx.render_main(Path::new("/var/lib/berth/nginx/sites/*.conf"), Path::new("/p.pid"), true).unwrap();
        assert!(text.contains("listen 127.0.0.1:8080 default_server;"));
        assert!(text.contains("return 404;"));
        assert!(text.contains("include /var/lib/berth/nginx/sites/*.conf;"));
        let check = nginx.render_main(Path::new("/c.conf"), Path::new("/p.pid"), false).unwrap();
        assert!(!check.contains("default_server"));
    }
}
