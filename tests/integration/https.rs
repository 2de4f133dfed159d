//! HTTPS against a real ACME server: Debian's pebble, one per test, validating HTTP-01
//! through the daemon's own nginx, with pebble-challtestsrv as its DNS (every name is
//! 127.0.0.1 unless a test says otherwise). pebble's listener certificate comes from a CA
//! the test makes with openssl and gives the daemon through SSL_CERT_FILE; what berth
//! serves is checked with the real curl against pebble's issuing root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{AppRepo, Daemon, free_port, keygen, get, http_get, web_dockerfile};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed (scripts/test.sh)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA of the test's own, and a leaf it signed for `names` (PKCS#8 key).
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=berth-test-ca", "-keyout", "ca.key", "-out", "ca.pem"]);
        TestCa { dir: dir.to_path_buf() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// (certificate, key) files of a new leaf for `names`.
    pub fn leaf(&self, label: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let (key, csr, crt, ext) = (format!("{label}.key"), format!("{label}.csr"), format!("{label}.crt"), format!("{label}.ext"));
        openssl(&self.dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", &format!("/CN={}", names[0]), "-keyout", &key, "-out", &csr]);
        let sans: Vec<String> = names.iter().map(|n| if n.parse::<std::net::IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") }).collect();
        std::fs::write(self.dir.join(&ext), format!("subjectAltName={}\n", sans.join(","))).unwrap();
        openssl(&self.dir, &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &crt]);
        (self.dir.join(crt), self.dir.join(key))
    }
}

/// pebble and its DNS server, stopped on drop.
pub struct Pebble {
    pub directory: String,
    /// pebble's issuing root: what verifies the certificates berth gets.
    pub root: PathBuf,
    dns_management: u16,
    children: Vec<Child>,
}

impl Pebble {
    /// The daemon must trust `ca` (SSL_CERT_FILE) already; pebble validates on `http_port`.
    fn start(ca: &TestCa, http_port: u16) -> Pebble {
        Pebble::start_resolving(ca, http_port, None)
    }

    /// With `dns`, pebble resolves through that server (a BIND of the test's) rather than
    /// through pebble-challtestsrv.
    pub fn start_resolving(ca: &TestCa, http_port: u16, dns: Option<u16>) -> Pebble {
        let (cert, key) = ca.leaf("pebble", &["localhost", "127.0.0.1"]);
        let (acme, management, dns_management) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(ca.dir.join(name)).unwrap();
        let mut children = Vec::new();
        let resolving = dns.is_some();
        let dns = dns.unwrap_or_else(|| {
            let dns = free_port();
            let challtestsrv = Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}"), "-defaultIPv6", ""])
                .stdout(log("challtestsrv.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv is installed (scripts/test.sh)");
            children.push(challtestsrv);
            dns
        });
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"), "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key, "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        std::fs::write(ca.dir.join("pebble.json"), config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(ca.dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // pebble reuses half the valid authorizations by default: a DNS test must see
            // every order ask for its records.
            .env("PEBBLE_AUTHZREUSE", if resolving { "0" } else { "50" })
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble is installed (scripts/test.sh)");
        children.push(pebble);
        let this = Pebble { directory: format!("https://localhost:{acme}/dir"), root: ca.dir.join("pebble-root.pem"), dns_management, children };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let root = Command::new("curl").args(["-sfk", &format!("https://127.0.0.1:{management}/roots/0")]).output().unwrap();
            let dir = Command::new("curl").arg("-sf").arg("--cacert").arg(ca.ca()).arg(&this.directory).output().unwrap();
            if root.status.success() && dir.status.success() {
                std::fs::write(&this.root, root.stdout).unwrap();
                return this;
            }
            assert!(Instant::now() < deadline, "pebble did not start: {}", std::fs::read_to_string(ca.dir.join("pebble.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Points `host` somewhere berth does not listen, so its challenge cannot succeed.
    fn misroute(&mut self, host: &str) {
        let body = serde_json::json!({"host": format!("{host}."), "addresses": ["127.0.0.2"]}).to_string();
        let out = Command::new("curl").args(["-sf", "-X", "POST", "-d", &body, &format!("http://127.0.0.1:{}/add-a", self.dns_management)]).output().unwrap();
        assert!(out.status.success(), "challtestsrv add-a failed");
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A daemon that trusts `ca`, pebble for it, and the global Let's Encrypt settings.
fn setup(name: &str) -> (Daemon, TestCa, Pebble) {
    let ca_dir = std::env::temp_dir().join(format!("berth-https-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ca_dir);
    let ca = TestCa::new(&ca_dir);
    let d = Daemon::start_with_env(&[("SSL_CERT_FILE", ca.ca().display().to_string())]);
    let pebble = Pebble::start(&ca, d.http_port);
    d.ssh("letsencrypt:set --global email ops@example.com").ok();
    d.ssh(&format!("letsencrypt:set --global server {}", pebble.directory)).ok();
    (d, ca, pebble)
}

/// Deploys a busybox app answering `body`, reachable at `domain`.
fn deploy(d: &Daemon, app: &str, domain: &str, body: &str) {
    let repo = AppRepo::new(d, app);
    repo.write("Dockerfile", &web_dockerfile(body, 0)).commit(body);
    repo.push(d, "main").ok();
    d.ssh(&format!("domains:add {app} {domain}")).ok();
    assert_eq!(get(d, domain), (200, body.to_string()));
}

/// What curl got over https: status (0 when TLS or the connection failed), headers, body.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: String,
    pub body: String,
    /// curl's own message when it failed (the connection or TLS): read through `Debug`, in
    /// the messages of failed assertions.
    #[allow(dead_code)]
    pub error: String,
}

/// GET https://HOST:PORT/ with curl, trusting only `cacert` (None: no verification).
pub fn https(port: u16, host: &str, cacert: Option<&Path>) -> Fetched {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "--max-time", "10", "--resolve", &format!("{host}:{port}:127.0.0.1")]);
    match cacert {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    let out = cmd.arg(format!("https://{host}:{port}/")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.trim().to_string())).unwrap_or_default();
    let status = if out.status.success() { headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0) } else { 0 };
    Fetched { status, headers, body, error: String::from_utf8_lossy(&out.stderr).trim().to_string() }
}

fn report(d: &Daemon, app: &str) -> serde_json::Value {
    serde_json::from_str(&d.ssh(&format!("certs:report {app} --format json")).ok().stdout).unwrap()
}

fn serial(d: &Daemon, app: &str) -> String {
    report(d, app)["ssl-serial"].as_str().unwrap_or_default().to_string()
}

/// The serial of the certificate the daemon's nginx serves for `host` in a new handshake,
/// in hex as `certs:report` writes it, without leading zeros (openssl writes none).
fn served_serial(port: u16, host: &str) -> String {
    let shown = Command::new("openssl").args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", host]).stdin(Stdio::null()).output().unwrap();
    let mut x509 = Command::new("openssl").args(["x509", "-noout", "-serial"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut x509.stdin.take().unwrap(), &shown.stdout).unwrap();
    let out = x509.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").trim_start_matches('0').to_ascii_lowercase();
    assert!(!hex.is_empty(), "no certificate served for {host}: {}", String::from_utf8_lossy(&shown.stderr));
    hex
}

/// The pids of the daemon's nginx workers: the same after a change that reloaded nothing.
fn nginx_workers(d: &Daemon) -> String {
    let master = std::fs::read_to_string(d.root().join("nginx/nginx.pid")).unwrap();
    let master = master.trim();
    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap()
}

/// (status, Location) of GET http://… on the daemon's nginx.
fn http_head(d: &Daemon, host: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", &format!("Host: {host}"), &format!("http://127.0.0.1:{}{path}", d.http_port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, location) = text.split_once(' ').unwrap_or((&text, ""));
    (code.parse().unwrap_or(0), location.to_string())
}

#[test]
fn letsencrypt_serves_https_redirects_covers_new_domains_renews_under_load_and_disables() {
    let (d, _ca, pebble) = setup("enable");
    deploy(&d, "shop", "shop.example.com", "v1");

    let out = d.ssh("letsencrypt:enable shop");
    out.ok();
    for step in ["Ordering a certificate", "Validated shop.example.com in", "Certificate issued in", "Let's Encrypt enabled for shop in"] {
        assert!(out.stdout.contains(step), "{step} missing: {out:#?}");
    }
    let served = https(d.https_port, "shop.example.com", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "v1"), "{served:#?}");
    assert!(served.headers.to_lowercase().contains("strict-transport-security: max-age=15724800"), "{served:#?}");
    assert!(served.headers.starts_with("HTTP/2"), "HTTP/2 on 443: {served:#?}");
    assert_eq!(http_head(&d, "shop.example.com", "/a?b=1"), (301, format!("https://shop.example.com:{}/a?b=1", d.https_port)));
    // The ACME path is never redirected (a missing token is nginx's 404).
    assert_eq!(http_head(&d, "shop.example.com", "/.well-known/acme-challenge/nope").0, 404);
    let cert = report(&d, "shop");
    assert_eq!(cert["ssl-source"], "letsencrypt");
    assert!(cert["ssl-days-left"].as_i64().unwrap() > 30, "{cert}");
    let list: serde_json::Value = serde_json::from_str(&d.ssh("letsencrypt:list --format json").ok().stdout).unwrap();
    assert_eq!(list[0]["app"], "shop");
    assert_eq!(list[0]["status"], "ok");

    // A new domain: a new certificate covering both, served without a deploy.
    d.ssh("domains:add shop www.example.com").ok();
    let names = report(&d, "shop")["ssl-hostnames"].clone();
    assert_eq!(names, serde_json::json!(["shop.example.com", "www.example.com"]));
    assert_eq!(https(d.https_port, "www.example.com", Some(&pebble.root)).body, "v1");

    // A forced renewal swaps the certificate while a client keeps asking, without reloading
    // nginx (a reload's old workers end HTTP/2 connections they had just accepted).
    let before = serial(&d, "shop");
    assert_eq!(served_serial(d.https_port, "shop.example.com"), before.trim_start_matches('0'));
    let workers = nginx_workers(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, served, failed, root, port) = (stop.clone(), served.clone(), failed.clone(), pebble.root.clone(), d.https_port);
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let got = https(port, "shop.example.com", Some(&root));
                if got.status == 200 && got.body == "v1" {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(got);
                }
            }
            failures
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    d.ssh("letsencrypt:auto-renew shop --force").ok();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let failures = client.join().unwrap();
    assert_ne!(serial(&d, "shop"), before, "the renewal did not swap the certificate");
    assert_eq!(served_serial(d.https_port, "shop.example.com"), serial(&d, "shop").trim_start_matches('0'), "nginx does not serve the renewed certificate");
    assert_eq!(nginx_workers(&d), workers, "the renewal reloaded nginx");
    assert!(served.load(Ordering::Relaxed) > 5, "too few requests: {}", served.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests during the swap: {failures:#?}");
    assert_eq!(https(d.https_port, "shop.example.com", Some(&pebble.root)).status, 200);
    // A reload that fails (a port another server holds: nginx -t passes, the reload cannot),
    // then one that works: neither brings the certificate from before the renewal back.
    let renewed = serial(&d, "shop");
    let held = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = held.local_addr().unwrap().port();
    d.setting(format!("proxy_ports = [{port}]"));
    assert_ne!(d.ssh(&format!("ports:add shop http:{port}:5000")).code, 0);
    assert_eq!(served_serial(d.https_port, "shop.example.com"), renewed.trim_start_matches('0'), "a failed reload brought the old certificate back");
    drop(held);
    d.ssh(&format!("ports:add shop http:{port}:5000")).ok();
    assert_ne!(nginx_workers(&d), workers, "a new port reloads nginx");
    assert_eq!(serial(&d, "shop"), renewed);
    assert_eq!(served_serial(d.https_port, "shop.example.com"), renewed.trim_start_matches('0'), "a reload brought the old certificate back");

    // Disable: back to plain http, no certificate, no https for the name.
    d.ssh("letsencrypt:disable shop").ok();
    assert_eq!(report(&d, "shop")["ssl-enabled"], false);
    assert_eq!(get(&d, "shop.example.com"), (200, "v1".into()));
    assert_eq!(https(d.https_port, "shop.example.com", None).status, 0, "TLS is refused for a name without a certificate");
    assert!(!d.ssh("ports:report shop --format json").ok().stdout.contains("https"));
}

#[test]
fn a_challenge_that_cannot_succeed_is_refused_and_the_app_keeps_serving() {
    let (d, _ca, mut pebble) = setup("fail");
    deploy(&d, "blog", "blog.example.com", "blog v1");
    pebble.misroute("blog.example.com");
    let out = d.ssh("letsencrypt:enable blog");
    assert!(out.code != 0 && out.code != 255, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(out.stderr.starts_with(" !     ") && out.stderr.contains("blog.example.com: the ACME server could not validate it"), "{out:#?}");
    assert_eq!(get(&d, "blog.example.com"), (200, "blog v1".into()));
    assert_eq!(report(&d, "blog")["ssl-enabled"], false);
    assert!(!d.app_toml("blog").contains("enabled = true"), "{}", d.app_toml("blog"));
    // Without an email, enabling is refused before anything is asked of the CA.
    d.ssh("letsencrypt:set --global email").ok();
    d.ssh("letsencrypt:enable blog").refused("email");
}

#[test]
fn letsencrypt_before_a_deploy_keeps_serving_through_a_failed_renewal_follows_hsts_settings_and_disable_keeps_the_users_mapping() {
    let (d, _ca, pebble) = setup("undeployed");
    d.ssh("apps:create site").ok();
    d.ssh("domains:add site site.example.com old.example.com").ok();
    // The user's own https mapping, there before Let's Encrypt: enabling adds none.
    d.ssh("ports:add site https:443:5000").ok();

    // Never deployed: the challenge is answered all the same, and the certificate serves at the first deploy.
    d.ssh("letsencrypt:enable site").ok();
    assert_eq!(report(&d, "site")["ssl-source"], "letsencrypt");
    let repo = AppRepo::new(&d, "site");
    repo.write("Dockerfile", &web_dockerfile("site v1", 0)).commit("v1");
    repo.push(&d, "main").ok();
    let served = https(d.https_port, "site.example.com", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "site v1"), "{served:#?}");
    assert!(served.headers.to_lowercase().contains("strict-transport-security: max-age=15724800; includesubdomains"), "{served:#?}");

    // HSTS follows nginx:set at once.
    d.ssh("nginx:set site hsts-max-age 600").ok();
    let served = https(d.https_port, "site.example.com", Some(&pebble.root));
    assert!(served.headers.to_lowercase().contains("strict-transport-security: max-age=600; includesubdomains"), "{served:#?}");
    d.ssh("nginx:set site hsts false").ok();
    let served = https(d.https_port, "site.example.com", Some(&pebble.root));
    assert_eq!(served.status, 200, "{served:#?}");
    assert!(!served.headers.to_lowercase().contains("strict-transport-security"), "{served:#?}");
    let nginx: serde_json::Value = serde_json::from_str(&d.ssh("nginx:report site --format json").ok().stdout).unwrap();
    assert_eq!(
        (&nginx["nginx-hsts"], &nginx["nginx-hsts-max-age"], &nginx["nginx-hsts-header"]),
        (&serde_json::json!(false), &serde_json::json!(600), &serde_json::Value::Null)
    );
    assert_eq!(nginx["nginx-hsts-include-subdomains"], true);

    // A renewal that fails (the CA is gone) keeps the certificate serving, says so in one line
    // with what to check, and shows in list and report. (127.0.0.1, not localhost: where IPv6
    // is off but localhost also names ::1, the last address tried gives another error.)
    let before = serial(&d, "site");
    d.ssh("letsencrypt:set --global server https://127.0.0.1:1/directory").ok();
    let out = d.ssh("letsencrypt:auto-renew site --force");
    assert!(out.code != 0 && out.code != 255, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(out.stderr.starts_with(" !     site: renewal failed: the ACME server https://127.0.0.1:1/directory failed: "), "{out:#?}");
    assert!(out.stderr.contains("Connection refused") && out.stderr.contains("the current certificate keeps serving"), "{out:#?}");
    assert!(out.stderr.contains("outbound HTTPS and DNS") && out.stderr.contains("letsencrypt:set --global server URL"), "{out:#?}");
    assert_eq!(serial(&d, "site"), before);
    assert_eq!(https(d.https_port, "site.example.com", Some(&pebble.root)).body, "site v1");
    let list: serde_json::Value = serde_json::from_str(&d.ssh("letsencrypt:list --format json").ok().stdout).unwrap();
    assert!(list[0]["status"].as_str().unwrap().starts_with("renewal failed 1 time(s); next try "), "{list}");
    assert!(list[0]["error"].as_str().unwrap().contains("127.0.0.1:1"), "{list}");
    let le: serde_json::Value = serde_json::from_str(&d.ssh("letsencrypt:report site --format json").ok().stdout).unwrap();
    assert_eq!((&le["letsencrypt-enabled"], &le["letsencrypt-active"], &le["letsencrypt-renewal-failures"]), (&true.into(), &true.into(), &1.into()), "{le}");
    assert_eq!(le["letsencrypt-server"], "https://127.0.0.1:1/directory");
    assert_eq!(le["letsencrypt-email"], "ops@example.com");
    assert!(le["letsencrypt-days-left"].as_i64().unwrap() > 30 && le["letsencrypt-expires-at"].as_str().unwrap().ends_with(" UTC"), "{le}");
    assert!(le["letsencrypt-last-error"].as_str().unwrap().contains("127.0.0.1:1") && le["letsencrypt-next-attempt"].is_string(), "{le}");

    // The CA back, a removed domain is dropped at the next issue, and the failure is forgotten.
    d.ssh(&format!("letsencrypt:set --global server {}", pebble.directory)).ok();
    d.ssh("domains:remove site old.example.com").ok();
    d.ssh("letsencrypt:auto-renew site --force").ok();
    assert_eq!(report(&d, "site")["ssl-hostnames"], serde_json::json!(["site.example.com"]));
    let le: serde_json::Value = serde_json::from_str(&d.ssh("letsencrypt:report site --format json").ok().stdout).unwrap();
    assert_eq!((&le["letsencrypt-renewal-failures"], &le["letsencrypt-last-error"]), (&0.into(), &serde_json::Value::Null), "{le}");

    // Disable: the certificate goes, the user's https mapping stays.
    d.ssh("letsencrypt:disable site").ok();
    assert_eq!(report(&d, "site")["ssl-enabled"], false);
    assert_eq!(get(&d, "site.example.com"), (200, "site v1".into()));
    let ports: serde_json::Value = serde_json::from_str(&d.ssh("ports:report site --format json").ok().stdout).unwrap();
    assert_eq!(ports["ports-map"], serde_json::json!(["http:80:5000", "https:443:5000"]), "{ports}");
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn certs_add_serves_a_users_certificate_and_refuses_every_bad_tar_without_change() {
    let d = Daemon::start();
    deploy(&d, "api", "api.example.com", "api v1");
    let dir = d.dir.path().join("ca");
    let ca = TestCa::new(&dir);
    let (crt, key) = ca.leaf("api", &["api.example.com"]);
    let (crt, key) = (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap());
    d.ssh_as(&d.admin, "certs:add api", &tar_of(&[("server.crt", crt.clone()), ("server.key", key.clone())])).ok();
    let served = https(d.https_port, "api.example.com", Some(&ca.ca()));
    assert_eq!((served.status, served.body.as_str()), (200, "api v1"), "{served:#?}");
    assert_eq!(report(&d, "api")["ssl-source"], "user");
    let good = serial(&d, "api");
    let key_file = std::fs::read_dir(d.root().join("apps/api/tls")).unwrap().flatten().find(|e| e.file_name().to_string_lossy().ends_with(".pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_file.metadata().unwrap().permissions().mode() & 0o777, 0o600);

    let (_, other_key) = ca.leaf("other", &["api.example.com"]);
    let now = berth::unix_now() as i64;
    let expired = berth::tls::self_signed(&["api.example.com".into()], 1, now - 10 * 86_400).unwrap();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("server.key", tar_of(&[("server.crt", crt.clone())])),
        ("does not match", tar_of(&[("server.crt", crt.clone()), ("server.key", std::fs::read(other_key).unwrap())])),
        ("expired", tar_of(&[("server.crt", expired.chain_pem.into_bytes()), ("server.key", expired.key_pem.into_bytes())])),
        ("not a tar", b"this is not a tar at all\n".repeat(100)),
        ("too large", tar_of(&[("server.crt", crt.clone()), ("server.key", key.clone()), ("padding", vec![b'x'; 1100 * 1024])])),
        ("not PEM", tar_of(&[("server.crt", b"garbage".to_vec()), ("server.key", key.clone())])),
    ];
    for (needle, tar) in bad {
        d.ssh_as(&d.admin, "certs:add api", &tar).refused(needle);
        assert_eq!(serial(&d, "api"), good, "{needle}: the certificate changed");
        assert_eq!(https(d.https_port, "api.example.com", Some(&ca.ca())).status, 200, "{needle}: https stopped");
    }

    // Self-signed for testing, then removed: plain http again, TLS refused for the name.
    d.ssh("certs:generate api").ok();
    assert_eq!(report(&d, "api")["ssl-source"], "self-signed");
    assert_eq!(https(d.https_port, "api.example.com", None).body, "api v1");
    d.ssh("certs:remove api").ok();
    assert_eq!(report(&d, "api")["ssl-enabled"], false);
    assert_eq!(https(d.https_port, "api.example.com", None).status, 0);
    assert_eq!(http_get(d.http_port, "api.example.com", "/"), (200, "api v1".into()));
    d.ssh("certs:remove api").refused("no certificate");
}

#[test]
fn https_survives_a_daemon_restart_and_the_renewal_loop_runs_after_it() {
    let (mut d, _ca, pebble) = setup("restart");
    deploy(&d, "web", "web.example.com", "web v1");
    d.ssh("letsencrypt:enable web").ok();
    let first = serial(&d, "web");
    // Due at once after the restart: the grace period is longer than pebble's 5 years.
    d.ssh("letsencrypt:set --global graceperiod 200000000").ok();
    d.stop();
    assert_eq!(https(d.https_port, "web.example.com", Some(&pebble.root)).status, 200, "nginx outlives the daemon");
    d.boot();
    assert_eq!(https(d.https_port, "web.example.com", Some(&pebble.root)).body, "web v1");
    let deadline = Instant::now() + Duration::from_secs(90);
    while serial(&d, "web") == first {
        assert!(Instant::now() < deadline, "the renewal loop did not renew after the restart: {}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(https(d.https_port, "web.example.com", Some(&pebble.root)).body, "web v1");
}

/// curl through the daemon's nginx at `https://HOST:PORT{path}` (no verification unless
/// `cacert`), as `berth.<global domain>` is reached: (status, headers, body); status 0 and
/// curl's error when it failed (TLS).
fn front(d: &Daemon, host: &str, path: &str, args: &[&str], cacert: Option<&Path>) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "--max-time", "10", "--resolve", &format!("{host}:{}:127.0.0.1", d.https_port)]).args(args);
    match cacert {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    let out = cmd.arg(format!("https://{host}:{}{path}", d.https_port)).output().unwrap();
    if !out.status.success() {
        return (0, String::new(), String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    (headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), headers, body)
}

#[test]
fn berths_api_and_dashboard_are_served_at_berth_dot_the_global_domain_over_https() {
    let (d, _ca, pebble) = setup("front");
    let host = "berth.example.test";
    let out = d.ssh("domains:set-global example.test");
    out.ok();
    assert!(out.stdout.contains(&format!("https://{host}:{}", d.https_port)), "{out:#?}");
    let token = {
        let out = d.ssh("tokens:create script --scope read");
        out.ok();
        out.stdout.lines().last().unwrap_or_default().trim().to_string()
    };
    let bearer = format!("Authorization: Bearer {token}");

    // A self-signed certificate at once; plain http redirects; the API answers through nginx.
    let (status, _, body) = front(&d, host, "/api/v1/apps", &["-H", &bearer], None);
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_start().starts_with('['), "{body}");
    assert_eq!(http_head(&d, host, "/api/v1/apps"), (301, format!("https://{host}:{}/api/v1/apps", d.https_port)));
    assert_eq!(front(&d, host, "/api/v1/apps", &["-H", &bearer], Some(&pebble.root)).0, 0, "not pebble's yet");

    // The name stays berth's: no app takes it, nor its host.
    d.ssh("apps:create berth").refused("berth.DOMAIN is where berth serves its API and dashboard");
    d.ssh("apps:create shop").ok();
    d.ssh(&format!("domains:add shop {host}")).refused("where berth serves its API and dashboard");

    // The dashboard's one-time URL is the site's, and its session cookie works over it.
    let out = d.ssh("dashboard:login");
    out.ok();
    let url = out.stdout.lines().last().unwrap_or_default().trim().to_string();
    let prefix = format!("https://{host}:{}", d.https_port);
    let path = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url} is not under {prefix}"));
    let (status, headers, _) = front(&d, host, path, &[], None);
    assert_eq!(status, 303, "{headers}");
    assert!(headers.to_ascii_lowercase().contains("set-cookie:") && headers.contains("Secure"), "{headers}");

    // Failed logins are counted per client, not per nginx: an address the client claims
    // (X-Forwarded-For) is not taken for its own.
    for i in 0..10 {
        let (status, _, body) = front(&d, host, "/api/v1/apps", &["-H", "Authorization: Bearer berth_guess", "-H", &format!("X-Forwarded-For: 10.0.0.{i}")], None);
        assert_eq!(status, 401, "{body}");
    }
    let (status, _, body) = front(&d, host, "/api/v1/apps", &["-H", "Authorization: Bearer berth_guess", "-H", "X-Forwarded-For: 10.0.0.99"], None);
    assert_eq!(status, 429, "{body}");
    // Another client (another source address) is not held back by that one.
    let (status, _, body) = front(&d, host, "/api/v1/apps", &["--interface", "127.0.0.2", "-H", &bearer], None);
    assert_eq!(status, 200, "{body}");

    // Let's Encrypt for the site: pebble's chain, and the API still answers.
    let out = d.ssh("letsencrypt:enable --server");
    out.ok();
    assert!(out.stdout.contains(&format!("https://{host}")), "{out:#?}");
    let (status, _, _) = front(&d, host, "/api/v1/openapi.json", &[], Some(&pebble.root));
    assert_eq!(status, 200, "served with pebble's certificate");
    let list = d.ssh("letsencrypt:list");
    assert!(list.ok().stdout.contains(host), "{list:#?}");
    // A restart keeps it.
    let mut d = d;
    d.stop();
    d.boot();
    assert_eq!(front(&d, host, "/api/v1/openapi.json", &[], Some(&pebble.root)).0, 200);

    // Scoped keys cannot touch it; disabling goes back to self-signed.
    let scoped = keygen(d.dir.path(), "dev");
    d.ssh_as(&d.admin, "ssh-keys:add dev --app shop", scoped.public.as_bytes()).ok();
    d.ssh_as(&scoped, "letsencrypt:disable --server", b"").refused("Permission denied");
    d.ssh("letsencrypt:disable --server").ok();
    assert_eq!(front(&d, host, "/api/v1/openapi.json", &[], Some(&pebble.root)).0, 0, "no longer pebble's");
    assert_eq!(front(&d, host, "/api/v1/openapi.json", &[], None).0, 200);
    // Only the bundle in service is kept.
    let bundles = std::fs::read_dir(d.root().join("front")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("cert-")).count();
    assert_eq!(bundles, 1);

    // No global domain: no site.
    d.ssh("domains:clear-global").ok();
    assert_ne!(http_head(&d, host, "/api/v1/openapi.json").0, 301);
}

/// `letsencrypt:set --global auto true`: a new app is on https after its first push, with
/// no command (HTTP-01, in the background); an app whose order fails keeps serving http and
/// `letsencrypt:list` says when the daemon tries again.
#[test]
fn with_auto_every_new_app_gets_a_certificate_at_its_first_push() {
    let (d, _ca, mut pebble) = setup("auto");
    d.ssh("domains:set-global example.com").ok();
    d.ssh("letsencrypt:set someapp auto true").refused("Property can only be specified globally");
    d.ssh("letsencrypt:set --global auto maybe").refused("Invalid auto");
    d.ssh("letsencrypt:set --global auto true").ok();
    assert_eq!(d.ssh("letsencrypt:report --global --letsencrypt-global-auto").ok().stdout, "true\n");
    let repo = AppRepo::new(&d, "fresh");
    repo.write("Dockerfile", &web_dockerfile("fresh app", 0)).commit("v1");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Ordering a certificate for fresh.example.com in the background"), "{out:#?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = https(d.https_port, "fresh.example.com", Some(&pebble.root));
        if served.status == 200 {
            assert_eq!(served.body, "fresh app");
            break;
        }
        assert!(Instant::now() < deadline, "not served over https: {served:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // An order that fails: http keeps serving, the list says why and when it is retried.
    pebble.misroute("broken.example.com");
    let repo = AppRepo::new(&d, "broken");
    repo.write("Dockerfile", &web_dockerfile("broken app", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = d.ssh("letsencrypt:list").ok().stdout.clone();
        if listed.contains("no certificate: issuing failed 1 time(s)") {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&d, "broken.example.com"), (200, "broken app".into()));
}
