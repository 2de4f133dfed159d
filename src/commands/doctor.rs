//! `doctor`: is this server fit to run berth? One line per check, each saying what to do
//! when it is not. The verdicts are pure functions of what was measured; the measuring is
//! in `run`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::Scope;
use super::{CmdResult, Ctx, failed};
use crate::engine::Engine;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] =
    &[("doctor", "Check this server: Docker, nginx, ports, DNS, disk, clock, certificates"), ("version", "Print berth's version")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print berth's version
    #[command(name = "version")]
    Version,
    /// Check this server: Docker, nginx, ports, DNS of the global domain, disk, clock, certificates
    #[command(name = "doctor")]
    Doctor,
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Version => Scope::Anyone,
            Cmd::Doctor => Scope::Admin,
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Version => {
                ctx.out.line(format!("berth {}", env!("CARGO_PKG_VERSION"))).await;
                Ok(())
            }
            Cmd::Doctor => run(ctx).await,
        }
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but something a user should know about or fix.
    Warn,
    /// berth cannot do its job until this is fixed.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub verdict: Verdict,
    pub what: &'static str,
    /// What was found, and (unless ok) what to do.
    pub says: String,
}

fn check(verdict: Verdict, what: &'static str, says: impl Into<String>) -> Check {
    Check { verdict, what, says: says.into() }
}

impl Check {
    pub fn line(&self) -> String {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        format!("{tag}  {:<13} {}", self.what, self.says)
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// Free space where berth keeps state or Docker keeps images.
pub fn disk(path: &Path, free: u64) -> Check {
    let shown = format!("{:.1} GiB free on {}", free as f64 / GIB as f64, path.display());
    if free < GIB {
        check(Verdict::Fail, "disk", format!("{shown}: builds will fail; free space (docker system prune, or a bigger disk)"))
    } else if free < 5 * GIB {
        check(Verdict::Warn, "disk", format!("{shown}: builds need a few GiB; free space soon (docker system prune)"))
    } else {
        check(Verdict::Ok, "disk", shown)
    }
}

/// Wildcard DNS services: the name holds the address (`APP.203.0.113.7.sslip.io`), so
/// nobody adds records under them.
fn wildcard_dns_service(domain: &str) -> Option<&'static str> {
    ["sslip.io", "nip.io"].into_iter().find(|s| domain == *s || domain.ends_with(&format!(".{s}")))
}

/// Where `probe` (an app name under global domain `domain`) resolves, against this host's
/// addresses (`own`) and those of them where berth's nginx answers (`answering`).
pub fn dns(domain: &str, probe: &str, resolved: Result<Vec<IpAddr>, String>, own: &[IpAddr], answering: &[IpAddr]) -> Check {
    let service = wildcard_dns_service(domain);
    let set_public = match service {
        Some(s) => format!("domains:set-global <this server's public IPv4>.{s}, or a domain of your own"),
        None => format!("point *.{domain} at this server's public address, or domains:set-global another domain"),
    };
    let ips = match resolved {
        Err(e) => {
            let says = match service {
                Some(s) => format!("{probe} does not resolve ({e}): this server cannot reach {s}'s DNS (check outbound DNS), or domains:set-global a domain of your own"),
                None => format!("{probe} does not resolve ({e}): add a wildcard A record *.{domain} pointing at this server, or domains:set-global another domain"),
            };
            return check(Verdict::Fail, "dns", says);
        }
        Ok(ips) => ips,
    };
    let shown = |ips: &[&IpAddr]| ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ");
    let mine: Vec<&IpAddr> = ips.iter().filter(|ip| own.contains(ip)).collect();
    if mine.is_empty() {
        let all: Vec<&IpAddr> = ips.iter().collect();
        return check(
            Verdict::Warn,
            "dns",
            format!("*.{domain} resolves to {}, not an address of this host: fine behind NAT that forwards ports 80 and 443 here; otherwise {set_public}", shown(&all)),
        );
    }
    let public: Vec<&IpAddr> = mine.iter().copied().filter(|ip| !crate::buildpack::is_private(**ip)).collect();
    if public.is_empty() {
        return check(
            Verdict::Warn,
            "dns",
            format!("*.{domain} resolves to {}, a private address of this host: only its own network reaches the apps; for the internet, {set_public}", shown(&mine)),
        );
    }
    if !public.iter().any(|ip| answering.contains(ip)) {
        return check(
            Verdict::Warn,
            "dns",
            format!("*.{domain} resolves to {} on this host, but berth's nginx does not answer there: give the daemon --http-listen on that address (0.0.0.0:80)", shown(&public)),
        );
    }
    check(Verdict::Ok, "dns", format!("*.{domain} resolves to this host ({}), where berth's nginx answers", shown(&public)))
}

/// A certificate's state: expired, due (renewal failing), or fine.
pub fn certificate(app: &str, days_left: i64, letsencrypt: bool, last_error: Option<&str>, graceperiod_days: i64) -> Option<Check> {
    if days_left < 0 {
        let fix = if letsencrypt { format!("letsencrypt:auto-renew {app} --force") } else { format!("certs:add {app} with a new certificate") };
        return Some(check(Verdict::Fail, "certificates", format!("{app}'s certificate has expired: {fix}")));
    }
    if days_left <= graceperiod_days {
        let why = match (letsencrypt, last_error) {
            (true, Some(e)) => format!("renewal keeps failing ({e}): fix that, then letsencrypt:auto-renew {app} --force"),
            (true, None) => "the daemon renews it within the day".to_string(),
            (false, _) => format!("it is not from Let's Encrypt: certs:add {app} a new one, or letsencrypt:enable {app}"),
        };
        let verdict = if letsencrypt && last_error.is_none() { Verdict::Ok } else { Verdict::Warn };
        return Some(check(verdict, "certificates", format!("{app}'s certificate expires in {days_left} days: {why}")));
    }
    None
}

/// The outcome: how many failed.
pub fn failures(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.verdict == Verdict::Fail).count()
}

pub async fn run(ctx: &mut Ctx<'_>) -> CmdResult {
    ctx.out.header("berth doctor").await;
    let checks = [
        docker(ctx.engine).await,
        nginx(ctx.engine).await,
        vec![ports(ctx.engine).await],
        global_dns(ctx.engine).await,
        disks(ctx.engine),
        vec![clock().await],
        certificates(ctx.engine),
    ]
    .concat();
    for c in &checks {
        ctx.out.line(c.line()).await;
    }
    match failures(&checks) {
        0 => Ok(()),
        1 => Err(failed("1 check failed: see FAIL above")),
        n => Err(failed(format!("{n} checks failed: see FAIL above"))),
    }
}

/// The engine answers, and the stack image buildpack builds run in is there.
async fn docker(engine: &Engine) -> Vec<Check> {
    let runtime = match tokio::time::timeout(Duration::from_secs(5), engine.runtime()).await {
        Ok(Ok(runtime)) => runtime,
        Ok(Err(e)) => {
            return vec![check(Verdict::Fail, "docker", format!("the Docker engine does not answer ({e}): start it (systemctl start docker, or dockerd)"))];
        }
        Err(_) => {
            return vec![check(Verdict::Fail, "docker", "the Docker engine did not answer within 5s: restart it (systemctl restart docker)")];
        }
    };
    let engine_check = match runtime.version().await {
        Ok(version) => check(Verdict::Ok, "docker", format!("engine {version} answers")),
        Err(e) => {
            return vec![check(Verdict::Fail, "docker", format!("the Docker engine does not answer ({e}): start it (systemctl start docker, or dockerd)"))];
        }
    };
    let stack = match runtime.image_info(crate::buildpack::STACK_IMAGE).await {
        Some(_) => check(Verdict::Ok, "stack image", format!("{} is built", crate::buildpack::STACK_IMAGE)),
        None => check(
            Verdict::Warn,
            "stack image",
            format!("{} is missing: apps without a Dockerfile cannot build until `berth stack:build` makes it", crate::buildpack::STACK_IMAGE),
        ),
    };
    vec![engine_check, stack]
}

async fn nginx(engine: &Engine) -> Vec<Check> {
    let log = engine.root().join("nginx/logs/error.log");
    let Some(pid) = engine.nginx.master_pid() else {
        return vec![check(
            Verdict::Fail,
            "nginx",
            format!("berth's nginx is not running and apps are not served: see {} (is another server holding its ports?)", log.display()),
        )];
    };
    match engine.nginx.check_main().await {
        Ok(()) => vec![check(Verdict::Ok, "nginx", format!("runs (pid {pid}), its config is valid"))],
        Err(e) => vec![check(Verdict::Fail, "nginx", format!("runs (pid {pid}) but its config is invalid: {e}"))],
    }
}

/// The SSH, HTTP and HTTPS listeners accept connections (checked from this host).
async fn ports(engine: &Engine) -> Check {
    // The SSH listener may have been given port 0: the daemon writes where it really is.
    let ssh = std::fs::read_to_string(engine.root().join("ssh-address")).ok().and_then(|a| a.trim().parse().ok()).unwrap_or(engine.settings.ssh_listen);
    let wanted = [("SSH", ssh), ("HTTP", engine.settings.http_listen), ("HTTPS", engine.settings.https_listen)];
    let mut open = Vec::new();
    let mut closed = Vec::new();
    for (name, address) in wanted {
        let target = SocketAddr::new(if address.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { address.ip() }, address.port());
        let accepts = matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(target)).await, Ok(Ok(_)));
        let shown = format!("{name} {address}");
        if accepts { open.push(shown) } else { closed.push(shown) }
    }
    if closed.is_empty() {
        check(Verdict::Ok, "ports", format!("{} accept connections (open them in your firewall too)", open.join(", ")))
    } else {
        check(Verdict::Fail, "ports", format!("nothing accepts on {}: see the nginx line above and the daemon log", closed.join(", ")))
    }
}

async fn global_dns(engine: &Engine) -> Vec<Check> {
    let domains = match engine.store.load_global() {
        Ok(global) => global.global_domains,
        Err(e) => {
            return vec![check(Verdict::Fail, "dns", format!("cannot read berth.toml: {e}"))];
        }
    };
    if domains.is_empty() {
        return vec![check(Verdict::Warn, "dns", "no global domain: apps answer only to names given with domains:add (domains:set-global DOMAIN)")];
    }
    let own = own_addresses();
    let port = engine.settings.http_listen.port();
    let mut checks = Vec::new();
    for domain in domains {
        let probe = format!("berth-doctor.{domain}");
        let resolved: Result<Vec<IpAddr>, String> = match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((probe.as_str(), 80))).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5s".to_string()),
        };
        let mut answering = Vec::new();
        for ip in resolved.iter().flatten().filter(|ip| own.contains(ip)) {
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(*ip, port));
            if matches!(tokio::time::timeout(Duration::from_secs(2), connect).await, Ok(Ok(_))) {
                answering.push(*ip);
            }
        }
        checks.push(dns(&domain, &probe, resolved, &own, &answering));
    }
    checks
}

fn own_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|a| a.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())).or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))))
        .collect()
}

fn disks(engine: &Engine) -> Vec<Check> {
    let mut checks = Vec::new();
    for path in [engine.root(), std::path::PathBuf::from("/var/lib/docker")] {
        if let Ok(stat) = nix::sys::statvfs::statvfs(&path) {
            checks.push(disk(&path, stat.blocks_available() * stat.fragment_size()));
        }
    }
    checks
}

/// Certificates and ACME need a right clock: is something keeping it synchronized?
async fn clock() -> Check {
    let probes: [(&str, &[&str]); 2] = [("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]), ("chronyc", &["-n", "tracking"])];
    for (program, args) in probes {
        let Ok(Ok(output)) = tokio::time::timeout(Duration::from_secs(3), tokio::process::Command::new(program).args(args).output()).await else {
            continue;
        };
        if !output.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let synchronized = if program == "timedatectl" { text.trim() == "yes" } else { text.contains("Leap status     : Normal") };
        return if synchronized {
            check(Verdict::Ok, "clock", format!("synchronized ({program})"))
        } else {
            check(
                Verdict::Warn,
                "clock",
                format!("not synchronized ({program}): enable NTP (timedatectl set-ntp true, or chrony); certificates need a right clock"),
            )
        };
    }
    check(Verdict::Warn, "clock", "cannot tell whether NTP keeps the clock right: install chrony (apt-get install chrony); certificates need a right clock")
}

fn certificates(engine: &Engine) -> Vec<Check> {
    let (Ok(apps), Ok(global)) = (engine.store.list_apps(), engine.store.load_global()) else {
        return vec![check(Verdict::Fail, "certificates", "cannot read berth's state")];
    };
    let now = crate::unix_now() as i64;
    let mut checks = Vec::new();
    let mut count = 0;
    for app in &apps {
        let Ok(config) = engine.store.load_app(app) else {
            continue;
        };
        match crate::https::current(engine, app) {
            Ok(Some((state, info))) => {
                count += 1;
                let grace = crate::https::effective(&config, &global).graceperiod as i64 / 86_400;
                if let Some(c) = certificate(app, info.days_left(now), config.letsencrypt.enabled, state.renewal.last_error.as_deref(), grace) {
                    checks.push(c);
                }
            }
            Ok(None) => {}
            Err(e) => checks.push(check(Verdict::Warn, "certificates", format!("{app}: {e}"))),
        }
    }
    if checks.is_empty() {
        checks.push(check(Verdict::Ok, "certificates", format!("{count} installed, none due")));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_verdicts() {
        assert_eq!(disk(Path::new("/v"), 500 * 1024 * 1024).verdict, Verdict::Fail);
        assert_eq!(disk(Path::new("/v"), 3 * GIB).verdict, Verdict::Warn);
        let fine = disk(Path::new("/v"), 40 * GIB);
        assert_eq!((fine.verdict, fine.says.as_str()), (Verdict::Ok, "40.0 GiB free on /v"));
    }

    #[test]
    fn dns_verdicts_say_what_record_to_add() {
        let own: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let answering: Vec<IpAddr> = own.clone();
        let missing = dns("apps.example.com", "berth-doctor.apps.example.com", Err("no such host".into()), &own, &answering);
        assert_eq!(missing.verdict, Verdict::Fail);
        assert!(missing.says.contains("wildcard A record *.apps.example.com"), "{}", missing.says);
        let fine = dns("a.example", "p.a.example", Ok(vec!["203.0.113.7".parse().unwrap()]), &own, &answering);
        assert_eq!(fine.verdict, Verdict::Ok, "{}", fine.says);
        let elsewhere = dns("a.example", "p.a.example", Ok(vec!["198.51.100.1".parse().unwrap()]), &own, &answering);
        assert_eq!(elsewhere.verdict, Verdict::Warn);
        assert!(elsewhere.says.contains("198.51.100.1"));
        // Nothing of berth's answers at the address the name gives.
        let silent = dns("a.example", "p.a.example", Ok(vec!["203.0.113.7".parse().unwrap()]), &own, &[]);
        assert_eq!(silent.verdict, Verdict::Warn);
        assert!(silent.says.contains("does not answer there"), "{}", silent.says);
    }

    #[test]
    fn a_private_address_is_named_and_sslip_io_never_gets_records() {
        let own: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        // A NAT cloud: the default route's source is private, and install chose it.
        let private = dns("10.0.0.5.sslip.io", "berth-doctor.10.0.0.5.sslip.io", Ok(own.clone()), &own, &own);
        assert_eq!(private.verdict, Verdict::Warn);
        assert!(private.says.contains("a private address of this host"), "{}", private.says);
        assert!(private.says.contains("domains:set-global <this server's public IPv4>.sslip.io"), "{}", private.says);
        let unresolved = dns("203.0.113.7.sslip.io", "berth-doctor.203.0.113.7.sslip.io", Err("timed out".into()), &own, &own);
        assert_eq!(unresolved.verdict, Verdict::Fail);
        assert!(unresolved.says.contains("cannot reach sslip.io's DNS"), "{}", unresolved.says);
        for check in [&private, &unresolved, &dns("198.51.100.1.sslip.io", "p.198.51.100.1.sslip.io", Ok(vec!["198.51.100.1".parse().unwrap()]), &own, &own)] {
            assert!(!check.says.contains("record"), "{}", check.says);
        }
        // An address of its own network is private too for a domain of the user's own.
        let lan = dns("apps.example.com", "p.apps.example.com", Ok(own.clone()), &own, &own);
        assert!(lan.says.contains("point *.apps.example.com at this server's public address"), "{}", lan.says);
    }

    #[test]
    fn certificate_verdicts() {
        assert_eq!(certificate("web", -1, true, None, 30).unwrap().verdict, Verdict::Fail);
        assert_eq!(certificate("web", 60, true, None, 30), None);
        assert_eq!(certificate("web", 10, true, None, 30).unwrap().verdict, Verdict::Ok);
        let failing = certificate("web", 10, true, Some("rate limited"), 30).unwrap();
        assert_eq!(failing.verdict, Verdict::Warn);
        assert!(failing.says.contains("rate limited"));
        assert!(certificate("web", 10, false, None, 30).unwrap().says.contains("certs:add web"));
    }

    #[test]
    fn one_line_per_check_with_its_verdict_first() {
        let line = check(Verdict::Fail, "nginx", "not running").line();
        assert_eq!(line, "FAIL  nginx         not running");
        assert_eq!(failures(&[check(Verdict::Warn, "a", ""), check(Verdict::Fail, "b", "")]), 1);
    }
}
