//! Log drains as a user sets them up: Debian's rsyslog receives an app's lines over TCP and
//! over TLS (RFC 5424, octet counting), a local HTTP receiver gets JSON lines with the
//! bearer token, and a drain stopped for 30 s loses none of the lines written meanwhile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{AppRepo, Daemon, base_image, free_port, poll, temp_dir};

/// Debian's rsyslogd with a plain TCP and a TLS listener, each writing what it receives
/// (app, procid, structured data, message) to its own file. Stopped when dropped.
struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
    tcp: u16,
    tls: u16,
}

impl Rsyslog {
    fn start(dir: &Path, tcp: u16, tls: u16) -> Rsyslog {
        let conf = dir.join("rsyslog.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}" defaultNetstreamDriverCAFile="{d}/ca.pem" defaultNetstreamDriverCertFile="{d}/cert.pem" defaultNetstreamDriverKeyFile="{d}/key.pem")
module(load="imtcp" maxSessions="50")
template(name="line" type="string" string="%app-name% %procid% %structured-data% %msg%\n")
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="line" flushOnTXEnd="on" asyncWriting="off") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="line" flushOnTXEnd="on" asyncWriting="off") }}
input(type="imtcp" port="{tcp}" address="127.0.0.1" ruleset="tcp")
input(type="imtcp" port="{tls}" address="127.0.0.1" ruleset="tls" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
"#
            ),
        )
        .unwrap();
        let mut r = Rsyslog { child: None, dir: dir.to_path_buf(), tcp, tls };
        r.run();
        r
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("rsyslogd.out")).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rsyslogd is installed (scripts/test.sh installs rsyslog)");
        self.child = Some(child);
        for port in [self.tcp, self.tls] {
            poll(Duration::from_secs(20), "rsyslogd listening", || std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.to_string()));
        }
    }

    /// SIGTERM, as `systemctl stop` does: it writes what it received, then exits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    fn received(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA, and a certificate for 127.0.0.1 it signed (openssl, as an admin makes them).
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=drain-ca", "-keyout", "ca.key", "-out", "ca.pem"]);
    run(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "req.csr"]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&["x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "cert.pem"]);
}

/// An HTTP receiver (python3's http.server): each POST's body appended to `bodies`, 204
/// with `Bearer TOKEN`, else 401. Stopped when dropped.
struct Receiver(Child);

impl Receiver {
    fn start(dir: &Path, port: u16, token: &str) -> Receiver {
        let script = r#"
import sys, http.server
port, token, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != "Bearer " + token:
            self.send_response(401); self.end_headers(); return
        with open(out, "ab") as f:
            f.write(body)
        self.send_response(204); self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;
        let child = Command::new("python3")
            .args(["-c", script, &port.to_string(), token])
            .arg(dir.join("bodies"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        poll(Duration::from_secs(20), "the HTTP receiver listening", || std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.to_string()));
        Receiver(child)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An app whose web process writes `tick N` every 100 ms (and `started` on stderr) while
/// it serves.
fn ticking_app(d: &Daemon, app: &str) {
    // A first push creates the app when it does not exist.
    let repo = AppRepo::new(d, app);
    repo.write(
        "Dockerfile",
        "FROM berth-test/busybox\nRUN mkdir /www && echo hi > /www/index.html\nCMD [\"sh\", \"-c\", \"echo started >&2; (i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done) & exec httpd -f -p $PORT -h /www\"]\n",
    )
    .commit("v1");
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The tick numbers in what a drain received of `app`.
fn ticks(text: &str, app: &str) -> Vec<u64> {
    text.lines().filter(|l| l.starts_with(&format!("{app} "))).filter_map(|l| l.rsplit_once("tick ")?.1.trim().parse().ok()).collect()
}

/// Every tick from the first received to the last: none lost (a line sent again after its
/// connection closed may come twice).
#[track_caller]
fn contiguous(ticks: &[u64]) {
    let set: BTreeSet<u64> = ticks.iter().copied().collect();
    let (first, last) = (*set.first().unwrap(), *set.last().unwrap());
    let missing: Vec<u64> = (first..=last).filter(|n| !set.contains(n)).collect();
    assert!(missing.is_empty(), "lines lost: {missing:?} of {first}..={last}");
}

#[test]
fn drains_send_every_line_to_rsyslog_and_http_and_keep_them_while_a_drain_is_down() {
    base_image();
    let logs = temp_dir();
    certificates(logs.path());
    let (tcp, tls, http) = (free_port(), free_port(), free_port());
    let mut rsyslog = Rsyslog::start(logs.path(), tcp, tls);
    let _receiver = Receiver::start(logs.path(), http, "s3cret-token");
    // The daemon trusts the drain's CA as an admin's machine would (the system's store, or
    // SSL_CERT_FILE).
    let d = Daemon::start_with_env(&[("SSL_CERT_FILE", logs.path().join("ca.pem").display().to_string())]);

    // Bad drains are refused, one line each; nothing is saved.
    d.ssh("apps:create plain").ok();
    d.ssh("logs:set plain drain ftp://logs.example.com").refused("the scheme ftp is not one of");
    d.ssh("logs:set plain drain syslog+tcp://logs.example.com/x").refused("no path");
    d.ssh("logs:set plain drain-token").ok();
    assert!(!d.app_toml("plain").contains("drain"), "{}", d.app_toml("plain"));
    // A key of an app sends its lines to public addresses only: never to this server's
    // own networks (its services, loopback, the cloud's metadata address).
    let scoped = crate::harness::keygen(d.dir.path(), "scoped");
    d.local(&["ssh-keys:add", "scoped", "--app", "plain"], scoped.public.as_bytes()).ok();
    for private in [format!("syslog+tcp://127.0.0.1:{tcp}"), "https://169.254.169.254/latest".into(), "syslog+tls://10.0.0.5".into()] {
        d.ssh_as(&scoped, &format!("logs:set plain drain {private}"), b"").refused("a private address");
    }
    assert!(!d.app_toml("plain").contains("drain"), "{}", d.app_toml("plain"));

    // plain → TCP, its own; secure → the global drain, TLS; hooked → HTTP with a token.
    d.ssh(&format!("logs:set plain drain syslog+tcp://127.0.0.1:{tcp}")).ok();
    d.ssh(&format!("logs:set --global drain syslog+tls://127.0.0.1:{tls}")).ok();
    d.ssh("apps:create hooked").ok();
    d.ssh(&format!("logs:set hooked drain http://127.0.0.1:{http}/ingest")).ok();
    let set = d.ssh("logs:set hooked drain-token s3cret-token");
    assert!(!set.stdout.contains("s3cret") && !set.stderr.contains("s3cret"), "a token is never printed: {set:?}");
    assert!(!d.ssh("logs:report hooked").stdout.contains("s3cret"));
    for app in ["plain", "secure", "hooked"] {
        ticking_app(&d, app);
    }

    poll(Duration::from_secs(60), "ticks over TCP, TLS and HTTP", || {
        let (t, s, h) = (ticks(&rsyslog.received("tcp.log"), "plain"), ticks(&rsyslog.received("tls.log"), "secure"), std::fs::read_to_string(logs.path().join("bodies")).unwrap_or_default());
        if t.len() >= 10 && s.len() >= 10 && h.matches("\"tick ").count() >= 10 { Ok(()) } else { Err(format!("tcp {}, tls {}, http {}", t.len(), s.len(), h.lines().count())) }
    });
    // What each line carries: app, process, instance, release; stderr too.
    let tcp_text = rsyslog.received("tcp.log");
    assert!(tcp_text.lines().any(|l| l.starts_with("plain web.1 [berth@32473 app=\"plain\" process=\"web\" instance=\"1\" release=\"v1\"] tick ")), "{tcp_text}");
    assert!(tcp_text.contains("plain web.1 [berth@32473 app=\"plain\" process=\"web\" instance=\"1\" release=\"v1\"] started"), "stderr lines too: {tcp_text}");
    assert!(!rsyslog.received("tls.log").contains("plain "), "an app's own drain replaces the global one");
    let bodies = std::fs::read_to_string(logs.path().join("bodies")).unwrap();
    let first: serde_json::Value = serde_json::from_str(bodies.lines().find(|l| l.contains("tick")).unwrap()).unwrap();
    assert_eq!((first["app"].as_str(), first["process"].as_str(), first["instance"].as_u64(), first["release"].as_str(), first["stream"].as_str()), (Some("hooked"), Some("web"), Some(1), Some("v1"), Some("stdout")));
    let report = d.ssh("logs:report plain").stdout;
    assert!(report.contains(" sent, ") && report.contains(" buffered, 0 dropped"), "{report}");

    // The syslog server stops for 30 s: lines wait in berth's buffer, the app goes on, and
    // once it is back every line arrives.
    let before = *ticks(&rsyslog.received("tcp.log"), "plain").last().unwrap();
    rsyslog.stop();
    std::thread::sleep(Duration::from_secs(30));
    let down = d.ssh("logs:report plain").stdout;
    assert!(down.contains("failing:"), "the report says the drain fails: {down}");
    rsyslog.run();
    poll(Duration::from_secs(60), "the lines written while rsyslog was down", || {
        let t = ticks(&rsyslog.received("tcp.log"), "plain");
        let last = *t.last().unwrap_or(&0);
        if last >= before + 250 { Ok(()) } else { Err(format!("last tick {last}, {before} before the stop")) }
    });
    contiguous(&ticks(&rsyslog.received("tcp.log"), "plain"));
    contiguous(&ticks(&rsyslog.received("tls.log"), "secure"));
    let after = d.ssh("logs:report plain").stdout;
    assert!(after.contains(" buffered, 0 dropped") && !after.contains("failing"), "{after}");
}
