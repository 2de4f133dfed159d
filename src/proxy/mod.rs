//! berth's own nginx: its prefix and pid under `<root>/nginx`, one site file per app, and
//! each app's web peers in nginx's memory (`berth.lua`, Debian's lua module), set through a
//! control socket and kept in the peers file that nginx loads at start and on reload: a
//! deploy, scale, restart, rollback or heal changes peers and never reloads nginx. A reload
//! happens only when an app's server blocks change (domains, ports, a certificate added or
//! removed, nginx properties); a renewed certificate is put in nginx's memory.
//!
//! Rendering is pure (handlebars, strict, no escaping; every value was validated before it
//! got here: app names, domains, IPs and ports cannot carry nginx syntax). A site is checked
//! on its own with `nginx -t` before it replaces the old one, so one app's bad config never
//! blocks another app, and a failed check leaves the running site untouched.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use handlebars::Handlebars;
use serde::Serialize;


mod gates;
mod site;
mod switch;

pub use gates::Gate;
pub use site::{Listen, Routing, Server, Site, SiteTls, Upstream, needs_reload, plan_site, scheme_clash, urls};
pub use switch::Candidate;

const MAIN_TEMPLATE: &str = include_str!("../../nginx-templates/nginx.conf.hbs");
const SITE_TEMPLATE: &str = include_str!("../../nginx-templates/site.conf.hbs");
const LUA_MODULE: &str = include_str!("../../nginx-templates/berth.lua");
/// Where Debian's nginx modules are (libnginx-mod-http-lua and its ndk).
pub const NGINX_MODULES: &str = "/usr/lib/nginx/modules";
/// How long berth waits for nginx's control endpoint.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
pub const NGINX: &str = "nginx";
/// Parent of every root's ACME challenge directory (see `Nginx::acme_root`).
pub const ACME_RUN_DIR: &str = "/run/berth-acme";

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

pub struct Nginx {
    prefix: PathBuf,
    pub listen: Listen,
    templates: Handlebars<'static>,
    /// One writer of the peers file at a time (each app's routing holds its own lock).
    peers_lock: std::sync::Mutex<()>,
    /// Each app's site as this daemon put it in place (or found it there): what
    /// `needs_reload` compares a planned site with.
    placed: std::sync::Mutex<std::collections::HashMap<String, Site>>,
    /// Whether berth.lua counts requests for metrics (berth.toml's `nginx_metrics`).
    counting: std::sync::atomic::AtomicBool,
}

#[derive(Serialize)]
struct MainVars {
    prefix: String,
    pid: String,
    http_listen: String,
    https_listen: String,
    acme_root: String,
    sites: String,
    default_server: bool,
    modules: &'static str,
    lua_dir: String,
    peers_file: String,
    gates_file: String,
    gate_dir: String,
    control_socket: String,
    metrics: bool,
}

impl Nginx {
    pub fn new(root: &Path, listen: Listen) -> Nginx {
        let mut templates = Handlebars::new();
        templates.register_escape_fn(handlebars::no_escape);
        templates.set_strict_mode(true);
        templates.register_template_string("main", MAIN_TEMPLATE).expect("nginx.conf.hbs is valid handlebars");
        templates.register_template_string("site", SITE_TEMPLATE).expect("site.conf.hbs is valid handlebars");
        Nginx { prefix: root.join("nginx"), listen, templates, peers_lock: std::sync::Mutex::new(()), placed: Default::default(), counting: true.into() }
    }

    /// Where ACME HTTP-01 answers live: `<acme_root>/.well-known/acme-challenge/TOKEN`,
    /// served for every host on plain HTTP (apps' sites and the catch-all server). nginx's
    /// workers run as nobody and read these files per request, so they live under /run
    /// (world-traversable) rather than under the berth root, whose parents may be private
    /// (`--root /root/berth`). One directory per root; challenges are short-lived anyway.
    pub fn acme_root(&self) -> PathBuf {
        PathBuf::from(ACME_RUN_DIR).join(self.root_name())
    }

    /// The root's path as one file name, for its directories under /run.
    fn root_name(&self) -> String {
        let root = self.prefix.parent().unwrap_or(&self.prefix).display().to_string();
        root.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
    }

    /// Writes an HTTP-01 answer where nginx serves it (world-readable: workers run as
    /// nobody; a key authorization is public by design).
    pub fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<PathBuf, ProxyError> {
        let dir = self.acme_root().join(".well-known/acme-challenge");
        create_public_dir(&dir)?;
        // Tokens are base64url (RFC 8555 §8.3); anything else is not written.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ProxyError::Nginx(format!("the ACME server sent an invalid token {token:?}")));
        }
        let path = dir.join(token);
        crate::store::write_atomic(&path, key_authorization.as_bytes(), 0o644).map_err(io(&path))?;
        Ok(path)
    }

    /// Checks that nginx can load a certificate bundle (it parses, and the key matches the
    /// certificate), with a config of its own: nothing that serves is touched.
    pub async fn check_certificate(&self, bundle: &Path) -> Result<(), ProxyError> {
        let conf = self.prefix.join(format!(".check-cert-{}.conf", rand::random::<u32>()));
        let text = format!(
            "pid {pid};\nerror_log stderr;\nevents {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1 ssl;\n        ssl_certificate {b};\n        ssl_certificate_key {b};\n    }}\n}}\n",
            pid = self.prefix.join(".check-cert.pid").display(),
            b = bundle.display()
        );
        std::fs::create_dir_all(&self.prefix).map_err(io(&self.prefix))?;
        std::fs::write(&conf, text).map_err(io(&conf))?;
        let checked = self.test_config(&conf).await;
        let _ = std::fs::remove_file(&conf);
        checked.map_err(|e| match e {
            ProxyError::Nginx(m) if m.contains("key values mismatch") => ProxyError::Nginx("the private key does not match the certificate".into()),
            ProxyError::Nginx(m) if m.contains("PEM") || m.contains("SSL_CTX_use") => {
                ProxyError::Nginx(format!("nginx cannot load the certificate or key: {m}"))
            }
            other => other,
        })
    }

    fn lua_dir(&self) -> PathBuf {
        self.prefix.join("lua")
    }

    /// Every app's routed web containers, `APP vRELEASE IP…` per line: what nginx loads at
    /// start and on reload.
    pub fn gates_file(&self) -> PathBuf {
        self.prefix.join("gates")
    }

    pub fn peers_file(&self) -> PathBuf {
        self.prefix.join("peers")
    }

    /// nginx's control endpoint, in a directory only root can enter.
    fn control_socket(&self) -> PathBuf {
        self.prefix.join("control").join("control.sock")
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
            http_listen: self.listen.http.to_string(),
            https_listen: self.listen.https.to_string(),
            acme_root: self.acme_root().display().to_string(),
            sites: sites.display().to_string(),
            default_server,
            modules: NGINX_MODULES,
            lua_dir: self.lua_dir().display().to_string(),
            peers_file: self.peers_file().display().to_string(),
            gates_file: self.gates_file().display().to_string(),
            gate_dir: self.gate_dir().display().to_string(),
            control_socket: self.control_socket().display().to_string(),
            metrics: self.counting.load(std::sync::atomic::Ordering::Relaxed),
        };
        self.templates.render("main", &vars).map_err(|e| ProxyError::Render(e.to_string()))
    }

    /// Writes the main config and starts nginx unless it already runs (then reloads it).
    /// nginx outlives the daemon: restarting berth never interrupts traffic.
    pub async fn ensure_running(&self) -> Result<(), ProxyError> {
        for dir in [self.prefix.clone(), self.sites_dir(), self.prefix.join("logs"), self.prefix.join("tmp"), self.lua_dir()] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let control = self.prefix.join("control");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&control).map_err(io(&control))?;
        }
        let lua = self.lua_dir().join("berth.lua");
        crate::store::write_atomic(&lua, LUA_MODULE.as_bytes(), 0o644).map_err(io(&lua))?;
        create_public_dir(&self.acme_root().join(".well-known/acme-challenge"))?;
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

    /// `nginx -t` on the whole running config.
    pub async fn check_main(&self) -> Result<(), ProxyError> {
        self.test_config(&self.main_conf()).await
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

    /// The release an app's peers on disk route to, if it has any.
    pub fn peers_release(&self, app: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.peers_file()).ok()?;
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(app))?;
        line.split_whitespace().nth(1)?.strip_prefix('v')?.parse().ok()
    }

    /// The addresses an app's peers on disk route to.
    pub fn peers(&self, app: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.peers_file()).unwrap_or_default();
        text.lines().find(|l| l.split_whitespace().next() == Some(app)).map(|l| l.split_whitespace().skip(2).map(str::to_string).collect()).unwrap_or_default()
    }

    /// Routes the app's traffic to the web containers at `ips` (of `release`): the peers
    /// file first (what nginx loads if it restarts), then nginx's memory through the
    /// control socket. No reload, unless the control socket does not answer: a reload then
    /// loads the file. Call with the app's route lock held.
    pub async fn set_peers(&self, app: &str, release: u32, ips: &[String]) -> Result<(), ProxyError> {
        let line = format!("{app} v{release} {}", ips.join(" "));
        let line = line.trim_end();
        if self.write_table(Table::Peers, app, Some(line))? {
            crate::crashpoint("peers-written");
        }
        self.push_table(Table::Peers, line).await
    }

    /// Routes nothing to the app any more.
    pub async fn remove_peers(&self, app: &str) -> Result<(), ProxyError> {
        self.write_table(Table::Peers, app, None)?;
        self.push_table(Table::Peers, &format!("{app} v0")).await
    }

    /// A table's file with the app's line replaced (or removed), written atomically if that
    /// changes it. Whether it did.
    fn write_table(&self, table: Table, app: &str, line: Option<&str>) -> Result<bool, ProxyError> {
        let _one = self.peers_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.table_file(table);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty() && l.split_whitespace().next() != Some(app)).collect();
        lines.extend(line);
        lines.sort_unstable();
        let mut out = format!("# {}: nginx loads this at start and on reload\n", table.what());
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        if out == text {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.prefix).map_err(io(&self.prefix))?;
        crate::store::write_atomic(&path, out.as_bytes(), 0o644).map_err(io(&path))?;
        Ok(true)
    }

    /// Puts one app's line into nginx's memory. nginx not running loads the file when it
    /// starts; nginx running but not answering is reloaded, which loads it.
    async fn push_table(&self, table: Table, line: &str) -> Result<(), ProxyError> {
        if self.master_pid().is_none() {
            return Ok(());
        }
        match self.control("PUT", table.path(), &format!("{line}\n")).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!("nginx's control endpoint: {e}; reloading nginx to load the {} file", table.path().trim_start_matches('/'));
                self.reload().await
            }
        }
    }

    fn table_file(&self, table: Table) -> PathBuf {
        match table {
            Table::Peers => self.peers_file(),
            Table::Gates => self.gates_file(),
        }
    }

    /// Requests in flight from nginx to these addresses (0 if nginx does not run).
    pub async fn inflight(&self, ips: &[String]) -> Result<u64, ProxyError> {
        if ips.is_empty() || self.master_pid().is_none() {
            return Ok(0);
        }
        let body = self.control("GET", &format!("/inflight?ips={}", ips.join(",")), "").await?;
        body.trim().parse().map_err(|_| ProxyError::Nginx(format!("nginx's control endpoint answered {body:?} for requests in flight")))
    }

    /// Whether nginx counts each app's requests (from the next start or reload on).
    pub fn set_counting(&self, on: bool) {
        self.counting.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// What nginx counted of each app's requests since it started (nothing when it does
    /// not run).
    pub async fn traffic(&self) -> Result<crate::traffic::Traffic, ProxyError> {
        if self.master_pid().is_none() {
            return Ok(Default::default());
        }
        Ok(crate::traffic::parse(&self.control("GET", "/metrics", "").await?))
    }

    /// Forgets what nginx counted of the app (it was destroyed or renamed).
    pub async fn forget_traffic(&self, app: &str) -> Result<(), ProxyError> {
        if self.master_pid().is_none() {
            return Ok(());
        }
        self.control("DELETE", &format!("/metrics?app={app}"), "").await.map(|_| ())
    }

    /// What nginx routes the app to now, from its memory (for tests and reports).
    pub async fn live_peers(&self, app: &str) -> Result<Vec<String>, ProxyError> {
        let body = self.control("GET", &format!("/peers?app={app}"), "").await?;
        Ok(body.split_whitespace().map(str::to_string).collect())
    }

    /// One HTTP/1.0 request to nginx's control endpoint (a unix socket only root reaches);
    /// the body of a 200 answer.
    async fn control(&self, method: &str, path: &str, body: &str) -> Result<String, ProxyError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = self.control_socket();
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&socket).await?;
            let request = format!("{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(CONTROL_TIMEOUT, exchange)
            .await
            .map_err(|_| ProxyError::Nginx(format!("{} did not answer within {CONTROL_TIMEOUT:?}", socket.display())))?
            .map_err(|e| ProxyError::Nginx(format!("{}: {e}", socket.display())))?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(ProxyError::Nginx(format!("nginx's control endpoint refused {method} {path}: {}", head.lines().next().unwrap_or_default())));
        }
        Ok(body.to_string())
    }

    /// Why the last reload failed, from nginx's error log (its last emerg/alert line).
    fn reload_failure(&self) -> Option<ProxyError> {
        let log = std::fs::read(self.prefix.join("logs/error.log")).ok()?;
        let tail = &log[log.len().saturating_sub(16 * 1024)..];
        let text = String::from_utf8_lossy(tail);
        let line = text.lines().rev().find(|l| l.contains("[emerg]") || l.contains("[alert]"))?;
        let message = line.split_once("] ").map_or(line, |(_, m)| m);
        let message = message.split_once(": ").filter(|(pid, _)| pid.contains('#')).map_or(message, |(_, m)| m);
        Some(ProxyError::Nginx(format!("nginx could not apply the new config: {}", message.trim())))
    }

    /// Serves the app no more: its site goes (a reload), then its peers.
    pub async fn remove_site(&self, app: &str) -> Result<(), ProxyError> {
        self.placed.lock().unwrap_or_else(|e| e.into_inner()).remove(app);
        let site = self.site_file(app);
        if site.exists() {
            std::fs::remove_file(&site).map_err(io(&site))?;
            self.reload().await?;
        }
        self.forget_certificate(app).await;
        self.remove_peers(app).await
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

/// What nginx keeps in memory per app, each with its file and its control path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// `APP vN IP…`: where its web containers are.
    Peers,
    /// `APP m=0|1 a=-|TAG p=-|TAG`: maintenance and http-auth (`gates.rs`).
    Gates,
}

impl Table {
    fn path(self) -> &'static str {
        match self {
            Table::Peers => "/peers",
            Table::Gates => "/gates",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Table::Peers => "berth's routed web containers, APP vRELEASE IP…",
            Table::Gates => "what berth's nginx answers before an app sees a request, APP m=MAINTENANCE a=AUTH p=PAGE",
        }
    }
}

/// A directory nginx's workers (nobody) can read, with every parent berth creates 0755.
fn create_public_dir(dir: &Path) -> Result<(), ProxyError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io(dir))
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
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
    use super::site::tests::{listen, map, routing, tls};
    use crate::validate::PortMap;

    #[test]
    fn renders_tls_servers_with_hsts_and_the_acme_path() {
        let nginx = Nginx::new(Path::new("/tmp/x"), listen());
        let ports = vec![PortMap::DEFAULT, map("https:443:5000")];
        let domains = vec!["a.com".to_string()];
        let site = plan_site(&routing(&domains, &ports, tls(&["a.com"])), &nginx.acme_root()).unwrap();
        let text = nginx.render_site(&site).unwrap();
        for needle in [
            "listen 127.0.0.1:8443 ssl http2;",
            "ssl_certificate /r/apps/web/tls/cert-1.pem;",
            "ssl_certificate_key /r/apps/web/tls/cert-1.pem;",
            "add_header Strict-Transport-Security \"max-age=60\" always;",
            "return 301 https://$host:8443$request_uri;",
            "location ^~ /.well-known/acme-challenge/ {",
            "root /run/berth-acme/_tmp_x;",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn renders_a_site_with_keepalive_forwarded_headers_and_websockets() {
        let nginx = Nginx::new(Path::new("/tmp/x"), listen());
        let domains = vec!["a.com".to_string()];
        let site = plan_site(&routing(&domains, &[PortMap::DEFAULT], None), &nginx.acme_root()).unwrap();
        let text = nginx.render_site(&site).unwrap();
        // The containers are peers in nginx's memory, not in the site: a deploy changes no site.
        assert!(!text.contains("172.18."), "{text}");
        for needle in [
            "upstream berth-web-5000 {",
            "balancer_by_lua_block { berth.balance(\"web\", 5000) }",
            "log_by_lua_block { berth.done(\"web\") }",
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
        assert!(!text.contains("ssl"), "{text}");
    }

    #[test]
    fn the_main_config_has_a_404_default_tls_settings_and_includes_sites() {
        let nginx = Nginx::new(Path::new("/var/lib/berth"), listen());
        let text = nginx.render_main(Path::new("/var/lib/berth/nginx/sites/*.conf"), Path::new("/p.pid"), true).unwrap();
        assert!(text.contains("listen 127.0.0.1:8080 default_server;"));
        assert!(text.contains("listen 127.0.0.1:8443 ssl http2 default_server;"));
        assert!(text.contains("ssl_reject_handshake on;"));
        assert!(text.contains("ssl_protocols TLSv1.2 TLSv1.3;"));
        assert!(text.contains("return 404;"));
        assert!(text.contains("root /run/berth-acme/_var_lib_berth;"));
        assert!(text.contains("include /var/lib/berth/nginx/sites/*.conf;"));
        assert!(text.contains("load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"));
        assert!(text.contains("berth.load(\"/var/lib/berth/nginx/peers\")"));
        assert!(text.contains("listen unix:/var/lib/berth/nginx/control/control.sock;"));
        assert!(text.contains("worker_shutdown_timeout"));
        let check = nginx.render_main(Path::new("/c.conf"), Path::new("/p.pid"), false).unwrap();
        assert!(!check.contains("default_server"));
        assert!(!check.contains("control.sock"), "a site's check binds nothing: {check}");
    }

    /// Domains, random but repeatable: from an alphabet that mixes what validation takes
    /// and what it refuses (the property is about what it takes), and built label by label
    /// up to the limits (63 per label, 253 in all), wildcards too.
    fn domains_to_try(count: usize) -> Vec<String> {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        const INNER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        const ANY: &[u8] = b"abcz09-._*AZ\x20;{}$\"'";
        let mut out = vec!["a".repeat(63) + "." + &"b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(61), "*.".to_string() + &"e".repeat(63) + ".com"];
        for i in 0..count {
            let name = if i % 3 == 0 {
                (0..1 + next(80)).map(|_| ANY[next(ANY.len())] as char).collect()
            } else {
                let labels: Vec<String> = (0..1 + next(6))
                    .map(|_| {
                        let len = [1, 2, 63, 1 + next(63)][next(4)];
                        let mut label: String = (0..len).map(|_| INNER[next(INNER.len())] as char).collect();
                        label.replace_range(..1, "x");
                        if len > 1 {
                            label.replace_range(len - 1.., "y");
                        }
                        label
                    })
                    .collect();
                let name = labels.join(".");
                let name = if next(5) == 0 { format!("*.{name}") } else { name };
                name.chars().take(253).collect::<String>().trim_end_matches(['.', '-']).to_string()
            };
            out.push(name);
        }
        out
    }

    /// The property behind domain validation: whatever it accepts, nginx serves. An app's
    /// site of accepted names passes `nginx -t` (a name once broke every reload through
    /// the server-names hash), one name at a time and all at once.
    #[tokio::test]
    async fn every_domain_validation_accepts_renders_into_a_site_nginx_takes() {
        let dir = tempfile::tempdir().unwrap();
        let nginx = Nginx::new(dir.path(), listen());
        for sub in ["logs", "tmp", "sites", "lua"] {
            std::fs::create_dir_all(nginx.prefix.join(sub)).unwrap();
        }
        let accepted: Vec<String> = domains_to_try(600).iter().filter_map(|d| crate::validate::domain(d).ok()).collect();
        assert!(accepted.len() > 300, "the generator should mostly make valid names: {}", accepted.len());
        assert!(accepted.iter().any(|d| d.len() == 253) && accepted.iter().any(|d| d.starts_with("*.")));
        let mut sites: Vec<Vec<String>> = accepted.iter().take(40).map(|d| vec![d.clone()]).collect();
        sites.push(accepted.clone());
        for domains in sites {
            let site = plan_site(&routing(&domains, &[PortMap::DEFAULT, map("http:8081:5000")], None), &nginx.acme_root()).unwrap();
            if let Err(e) = nginx.check_site(&site).await {
                panic!("nginx refused a site of accepted names {domains:?}: {e}");
            }
        }
    }

    #[tokio::test]
    async fn the_peers_file_keeps_one_line_per_app_and_says_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let nginx = Nginx::new(dir.path(), listen());
        assert!(nginx.write_table(Table::Peers, "b", Some("b v2 172.18.0.5")).unwrap());
        assert!(nginx.write_table(Table::Peers, "a", Some("a v7 172.18.0.2 172.18.0.3")).unwrap());
        assert!(!nginx.write_table(Table::Peers, "a", Some("a v7 172.18.0.2 172.18.0.3")).unwrap(), "the same line changes nothing");
        assert_eq!(nginx.peers_release("a"), Some(7));
        assert_eq!(nginx.peers("a"), vec!["172.18.0.2", "172.18.0.3"]);
        assert_eq!(nginx.peers("ab"), Vec::<String>::new());
        assert!(nginx.write_table(Table::Peers, "a", None).unwrap());
        let text = std::fs::read_to_string(nginx.peers_file()).unwrap();
        assert!(text.starts_with('#') && text.ends_with("b v2 172.18.0.5\n"), "{text}");
        assert_eq!(nginx.peers_release("a"), None);
        // Without nginx running, setting peers writes the file only (nginx loads it at start).
        nginx.set_peers("c", 1, &["172.18.0.7".into()]).await.unwrap();
        assert_eq!(nginx.peers("c"), vec!["172.18.0.7"]);
    }
}
