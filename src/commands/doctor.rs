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

/// Where `name` (an app name under a global domain) resolves, against this host's addresses.
pub fn dns(domain: &str, probe: &str, resolved: Result<Vec<IpAddr>, String>, own: &[IpAddr]) -> Check {
    match resolved {
        Err(e) => check(
            Verdict::Fail,
            "dns",
            format!("{probe} does not resolve ({e}): add a wildcard A record *.{domain} pointing at this server, or domains:set-global another domain"),
        ),
        Ok(ips) if ips.iter().any(|ip| own.contains(ip)) => check(Verdict::Ok, "dns", format!("*.{domain} resolves to this host")),
        Ok(ips) => {
            let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            check(
                Verdict::Warn,
                "dns",
                format!("*.{domain} resolves to {}, not an address of this host: fine behind NAT, otherwise point *.{domain} at this server", shown.join(", ")),
            )
        }
    }
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
    let mut checks = Vec::new();
    for domain in domains {
        let probe = format!("berth-doctor.{domain}");
        let resolved = match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((probe.as_str(), 80))).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5s".to_string()),
        };
        checks.push(dns(&domain, &probe, resolved, &own));
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
        let own: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap()];
        let missing = dns("apps.example.com", "berth-doctor.apps.example.com", Err("no such host".into()), &own);
        assert_eq!(missing.verdict, Verdict::Fail);
        assert!(missing.says.contains("wildcard A record *.apps.example.com"), "{}", missing.says);
        assert_eq!(dns("a.example", "p.a.example", Ok(vec!["203.0.113.7".parse().unwrap()]), &own).verdict, Verdict::Ok);
        let elsewhere = dns("a.example", "p.a.example", Ok(vec!["198.51.100.1".parse().unwrap()]), &own);
        assert_eq!(elsewhere.verdict, Verdict::Warn);
        assert!(elsewhere.says.contains("198.51.100.1"));
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
