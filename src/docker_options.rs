//! dokku's `docker-options`: options of `docker run` (deploy and run phases) and `docker
//! build` (build phase) an admin gives an app, stored as written (`-v /data:/data`,
//! `--shm-size 256m`) and turned into the engine API's fields when a container is made or
//! an image built. berth talks to the engine's API, not its command line, so each option
//! it accepts is one it knows how to pass on; the rest are refused when added, with why.
//! Pure.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig, PortBinding, ResourcesUlimits};

/// The phases dokku names: the image build, the app's containers, one-off containers.
pub const PHASES: [&str; 3] = ["build", "deploy", "run"];

/// Options that need no value.
const SWITCHES: [&str; 4] = ["--privileged", "--init", "--read-only", "--oom-kill-disable"];

/// Options berth manages itself, and where to go instead.
const OWN: [(&str, &str); 12] = [
    ("-e", "config:set"),
    ("--env", "config:set"),
    ("--env-file", "config:set"),
    ("--network", "network:set"),
    ("--net", "network:set"),
    ("--name", "berth names containers"),
    ("--restart", "ps:set APP restart-policy"),
    ("-h", "berth sets the hostname"),
    ("--hostname", "berth sets the hostname"),
    ("--rm", "berth removes what it starts"),
    ("-d", "berth starts containers detached"),
    ("--detach", "berth starts containers detached"),
];

/// The phases of `build,deploy`: each known, none twice.
pub fn phases(list: &str) -> Result<Vec<&'static str>, String> {
    let mut phases = Vec::new();
    for word in list.split(',') {
        let Some(phase) = PHASES.iter().find(|p| **p == word) else {
            return Err(format!("Phase(s) must be one of [{}]; got {}", PHASES.join(" "), crate::validate::quoted(word)));
        };
        if !phases.contains(phase) {
            phases.push(*phase);
        }
    }
    Ok(phases)
}

/// Command-line words as options, the way dokku groups them: a word starting with `-` starts
/// one, the words after it are its value (`--build-arg X=Y --link foo` is two). A word that
/// starts with `-` and holds spaces is one quoted option (`"-v /tmp"`) and is split as a
/// shell would. `--process P` inside the words is taken out and returned apart. Each option
/// comes back in one canonical form, its value quoted where a shell would need it.
pub fn group(words: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut tokens = Vec::new();
    for word in words {
        if word.starts_with('-') && word.contains(char::is_whitespace) {
            tokens.extend(shell_words::split(word).map_err(|e| format!("Cannot read the option {}: {e}", crate::validate::quoted(word)))?);
        } else {
            tokens.push(word.clone());
        }
    }
    let mut options: Vec<Vec<String>> = Vec::new();
    let mut processes = Vec::new();
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        if token == "--process" {
            processes.push(tokens.next().ok_or("--process needs a process type")?);
        } else if let Some(process) = token.strip_prefix("--process=") {
            processes.push(process.to_string());
        } else if token.starts_with('-') && token.len() > 1 && token[1..].parse::<i64>().is_err() {
            // (`--memory-swap -1`: a negative number is a value, not an option)
            options.push(vec![token]);
        } else {
            match options.last_mut() {
                Some(option) => option.push(token),
                None => return Err(format!("A Docker option starts with -: {}", crate::validate::quoted(&token))),
            }
        }
    }
    let canonical = options.into_iter().map(|words| words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")).collect();
    Ok((canonical, processes))
}

/// A word as a shell reads it back: bare when it is plain (`X=Y`, `/data:/data:ro`), else
/// quoted.
fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_-.,:/=@%+".contains(c));
    if plain { word.to_string() } else { shell_words::quote(word).into_owned() }
}

/// One stored option read back: its flag and its value, if any (`--memory=512m` and
/// `--memory 512m` alike).
fn split_option(option: &str) -> Result<(String, Option<String>), String> {
    let words = shell_words::split(option).map_err(|e| format!("Cannot read the Docker option {}: {e}", crate::validate::quoted(option)))?;
    let Some((flag, rest)) = words.split_first() else {
        return Err("An empty Docker option".into());
    };
    if !flag.is_ascii() {
        return Err(format!("Not a Docker option: {}", crate::validate::quoted(flag)));
    }
    if let Some((flag, value)) = flag.split_once('=').filter(|(f, _)| f.starts_with("--")) {
        if !rest.is_empty() {
            return Err(format!("The Docker option {} has a value twice", crate::validate::quoted(option)));
        }
        return Ok((flag.to_string(), Some(value.to_string())));
    }
    // `-m512m`: a short flag with its value attached.
    if flag.len() > 2 && !flag.starts_with("--") {
        return Ok((flag[..2].to_string(), Some(flag[2..].to_string())));
    }
    Ok((flag.clone(), (!rest.is_empty()).then(|| rest.join(" "))))
}

/// What `docker run` options make of a container, gathered before it is created.
#[derive(Debug, Default, PartialEq)]
pub struct RunOptions {
    pub binds: Vec<String>,
    pub volumes: Vec<String>,
    pub ports: Vec<(String, PortBinding)>,
    pub links: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub shm_size: Option<i64>,
    pub pids_limit: Option<i64>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub group_add: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    pub ulimits: Vec<ResourcesUlimits>,
    pub sysctls: Vec<(String, String)>,
    pub tmpfs: Vec<(String, String)>,
    pub privileged: bool,
    pub read_only: bool,
    pub oom_kill_disable: bool,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub stop_signal: Option<String>,
    pub log_driver: Option<String>,
    pub log_opts: Vec<(String, String)>,
}

fn size(flag: &str, value: &str) -> Result<i64, String> {
    crate::validate::memory(value).map_err(|_| format!("{flag} takes a size (512m, 1g): {}", crate::validate::quoted(value)))
}

fn pair(flag: &str, value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{flag} takes KEY=VALUE: {}", crate::validate::quoted(value)))
}

/// `[IP:][HOST:]CONTAINER[/PROTO]` as the engine's port binding.
fn publish(value: &str) -> Result<(String, PortBinding), String> {
    let bad = || format!("-p takes [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]: {}", crate::validate::quoted(value));
    let (spec, proto) = value.rsplit_once('/').map_or((value, "tcp"), |(s, p)| (s, p));
    if proto != "tcp" && proto != "udp" {
        return Err(bad());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(bad()),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    if port(container).is_none() || (!host.is_empty() && port(host).is_none()) || (!ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(bad());
    }
    let binding = PortBinding { host_ip: (!ip.is_empty()).then(|| ip.to_string()), host_port: Some(host.to_string()) };
    Ok((format!("{container}/{proto}"), binding))
}

/// `docker run` options as a container's fields; the first one berth cannot pass on is
/// the error, saying why.
pub fn run_options(options: &[String]) -> Result<RunOptions, String> {
    let mut o = RunOptions::default();
    for option in options {
        let (flag, value) = split_option(option)?;
        if let Some((_, instead)) = OWN.iter().find(|(f, _)| *f == flag) {
            return Err(format!("berth sets {flag} itself ({instead})"));
        }
        if SWITCHES.contains(&flag.as_str()) {
            if value.as_deref().is_some_and(|v| v != "true" && v != "false") {
                return Err(format!("{flag} takes no value"));
            }
            let on = value.as_deref() != Some("false");
            match flag.as_str() {
                "--privileged" => o.privileged = on,
                "--read-only" => o.read_only = on,
                "--oom-kill-disable" => o.oom_kill_disable = on,
                _ => {} // --init: every container of berth's has an init already
            }
            continue;
        }
        let Some(v) = value else {
            return Err(format!("The Docker option {flag} needs a value"));
        };
        match flag.as_str() {
            "-v" | "--volume" => {
                if v.contains(':') {
                    o.binds.push(v);
                } else if v.starts_with('/') {
                    o.volumes.push(v);
                } else {
                    return Err(format!("-v takes HOST:CONTAINER[:ro] or an absolute CONTAINER path: {}", crate::validate::quoted(&v)));
                }
            }
            "-p" | "--publish" => o.ports.push(publish(&v)?),
            "--link" => o.links.push(if v.contains(':') { v } else { format!("{v}:{v}") }),
            "-l" | "--label" => {
                let (key, value) = pair(&flag, &v).or_else(|_| Ok::<_, String>((v.clone(), String::new())))?;
                if key.starts_with("berth.") {
                    return Err(format!("labels starting with berth. are berth's own: {}", crate::validate::quoted(&key)));
                }
                o.labels.push((key, value));
            }
            "-m" | "--memory" => o.memory = Some(size(&flag, &v)?),
            "--memory-swap" => o.memory_swap = Some(if v == "-1" { -1 } else { size(&flag, &v)? }),
            "--memory-reservation" => o.memory_reservation = Some(size(&flag, &v)?),
            "--shm-size" => o.shm_size = Some(size(&flag, &v)?),
            "--cpus" => o.nano_cpus = Some(crate::validate::cpus(&v).map_err(|_| format!("--cpus takes a number of CPUs: {}", crate::validate::quoted(&v)))?),
            "-c" | "--cpu-shares" => o.cpu_shares = Some(v.parse().map_err(|_| format!("{flag} takes a number: {}", crate::validate::quoted(&v)))?),
            "--pids-limit" => o.pids_limit = Some(v.parse().map_err(|_| format!("--pids-limit takes a number: {}", crate::validate::quoted(&v)))?),
            "--add-host" => {
                if !v.contains(':') {
                    return Err(format!("--add-host takes HOST:IP: {}", crate::validate::quoted(&v)));
                }
                o.extra_hosts.push(v);
            }
            "--dns" => o.dns.push(v),
            "--dns-search" => o.dns_search.push(v),
            "--dns-option" | "--dns-opt" => o.dns_options.push(v),
            "--cap-add" => o.cap_add.push(v),
            "--cap-drop" => o.cap_drop.push(v),
            "--security-opt" => o.security_opt.push(v),
            "--group-add" => o.group_add.push(v),
            "--device" => {
                let mut parts = v.splitn(3, ':');
                let host = parts.next().unwrap_or_default().to_string();
                let container = parts.next().map_or_else(|| host.clone(), str::to_string);
                let permissions = parts.next().unwrap_or("rwm").to_string();
                o.devices.push(DeviceMapping { path_on_host: Some(host), path_in_container: Some(container), cgroup_permissions: Some(permissions) });
            }
            "--ulimit" => {
                let (name, limits) = pair(&flag, &v)?;
                let (soft, hard) = limits.split_once(':').unwrap_or((&limits, &limits));
                let number = |n: &str| n.parse::<i64>().map_err(|_| format!("--ulimit takes NAME=SOFT[:HARD]: {}", crate::validate::quoted(&v)));
                o.ulimits.push(ResourcesUlimits { name: Some(name), soft: Some(number(soft)?), hard: Some(number(hard)?) });
            }
            "--sysctl" => o.sysctls.push(pair(&flag, &v)?),
            "--tmpfs" => {
                let (path, options) = v.split_once(':').map_or((v.as_str(), ""), |(p, o)| (p, o));
                o.tmpfs.push((path.to_string(), options.to_string()));
            }
            "-u" | "--user" => o.user = Some(v),
            "-w" | "--workdir" => o.workdir = Some(v),
            "--entrypoint" => o.entrypoint = Some(vec![v]),
            "--stop-signal" => o.stop_signal = Some(v),
            "--log-driver" => o.log_driver = Some(v),
            "--log-opt" => o.log_opts.push(pair(&flag, &v)?),
            _ => return Err(format!("berth does not pass {flag} to Docker (run `docker-options` for the options it does)")),
        }
    }
    Ok(o)
}

fn some<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

impl RunOptions {
    /// Sets what the options give on a container about to be created; the option wins over
    /// berth's own setting of the same field (as dokku passes it last).
    pub fn apply(self, body: &mut ContainerCreateBody) {
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        if !self.binds.is_empty() {
            host.binds.get_or_insert_with(Vec::new).extend(self.binds);
        }
        if !self.ports.is_empty() {
            let exposed = body.exposed_ports.get_or_insert_with(Vec::new);
            let bindings = host.port_bindings.get_or_insert_with(HashMap::new);
            for (port, binding) in self.ports {
                if !exposed.contains(&port) {
                    exposed.push(port.clone());
                }
                bindings.entry(port).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
            }
        }
        if !self.volumes.is_empty() {
            let volumes = body.volumes.get_or_insert_with(Vec::new);
            volumes.extend(self.volumes);
        }
        if !self.labels.is_empty() {
            body.labels.get_or_insert_with(HashMap::new).extend(self.labels);
        }
        host.links = some(self.links).or(host.links.take());
        host.memory = self.memory.or(host.memory);
        host.memory_swap = self.memory_swap.or(self.memory.map(|m| host.memory_swap.unwrap_or(m).max(m))).or(host.memory_swap);
        host.memory_reservation = self.memory_reservation.or(host.memory_reservation);
        host.nano_cpus = self.nano_cpus.or(host.nano_cpus);
        host.cpu_shares = self.cpu_shares.or(host.cpu_shares);
        host.shm_size = self.shm_size.or(host.shm_size);
        host.pids_limit = self.pids_limit.or(host.pids_limit);
        host.extra_hosts = some(self.extra_hosts).or(host.extra_hosts.take());
        host.dns = some(self.dns).or(host.dns.take());
        host.dns_search = some(self.dns_search).or(host.dns_search.take());
        host.dns_options = some(self.dns_options).or(host.dns_options.take());
        host.cap_add = some(self.cap_add).or(host.cap_add.take());
        host.cap_drop = some(self.cap_drop).or(host.cap_drop.take());
        host.security_opt = some(self.security_opt).or(host.security_opt.take());
        host.group_add = some(self.group_add).or(host.group_add.take());
        host.devices = some(self.devices).or(host.devices.take());
        host.ulimits = some(self.ulimits).or(host.ulimits.take());
        if !self.sysctls.is_empty() {
            host.sysctls = Some(self.sysctls.into_iter().collect());
        }
        if !self.tmpfs.is_empty() {
            host.tmpfs = Some(self.tmpfs.into_iter().collect());
        }
        if self.privileged {
            host.privileged = Some(true);
        }
        if self.read_only {
            host.readonly_rootfs = Some(true);
        }
        if self.oom_kill_disable {
            host.oom_kill_disable = Some(true);
        }
        if let Some(driver) = self.log_driver {
            host.log_config = Some(bollard::models::HostConfigLogConfig { typ: Some(driver), config: Some(self.log_opts.into_iter().collect()) });
        } else if !self.log_opts.is_empty() {
            let log = host.log_config.get_or_insert_with(Default::default);
            log.config.get_or_insert_with(HashMap::new).extend(self.log_opts);
        }
        body.user = self.user.or(body.user.take());
        body.working_dir = self.workdir.or(body.working_dir.take());
        body.entrypoint = self.entrypoint.or(body.entrypoint.take());
        body.stop_signal = self.stop_signal.or(body.stop_signal.take());
    }
}

/// What `docker build` options make of a build: its build args and extra hosts, and the
/// options that mean nothing to a build (dokku skips them too), to say so.
#[derive(Debug, Default, PartialEq)]
pub struct BuildOptions {
    pub build_args: HashMap<String, String>,
    pub extra_hosts: Vec<String>,
    pub shm_size: Option<i64>,
    pub skipped: Vec<String>,
}

/// `docker build` options; an option that is neither a build's nor a run's is the error.
pub fn build_options(options: &[String]) -> Result<BuildOptions, String> {
    let mut o = BuildOptions::default();
    for option in options {
        let (flag, value) = split_option(option)?;
        match (flag.as_str(), value) {
            ("--build-arg", Some(v)) => {
                let (key, value) = v.split_once('=').map_or((v.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string()));
                o.build_args.insert(key, value);
            }
            ("--add-host", Some(v)) => {
                // The engine takes one `extrahosts` value from berth's build request.
                if !o.extra_hosts.is_empty() {
                    return Err("berth passes one --add-host to a build".into());
                }
                o.extra_hosts.push(v);
            }
            ("--shm-size", Some(v)) => {
                let bytes = size(&flag, &v)?;
                if bytes > i64::from(i32::MAX) {
                    return Err(format!("--shm-size of a build is at most 2047m: {}", crate::validate::quoted(&v)));
                }
                o.shm_size = Some(bytes);
            }
            (_, value) => {
                // A run option (`--link`, `-v`) given to the build phase: dokku skips it there.
                let rebuilt = value.map_or_else(|| flag.clone(), |v| format!("{flag} {v}"));
                run_options(std::slice::from_ref(&rebuilt)).map_err(|e| format!("{e} (in the build phase, berth passes --build-arg, --add-host and --shm-size)"))?;
                o.skipped.push(option.clone());
            }
        }
    }
    Ok(o)
}

/// An option as `phase` accepts it (checked when added, so a stored one always applies).
pub fn check(phase: &str, option: &str) -> Result<(), String> {
    let options = [option.to_string()];
    match phase {
        "build" => build_options(&options).map(|_| ()),
        _ => run_options(&options).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn words_are_grouped_into_options_as_dokku_groups_them() {
        assert_eq!(group(&words(&["-v /tmp"])).unwrap(), (words(&["-v /tmp"]), vec![]));
        assert_eq!(group(&words(&["--build-arg", "X=Y", "--link", "foo", "--link", "bar"])).unwrap().0, words(&["--build-arg X=Y", "--link foo", "--link bar"]));
        assert_eq!(group(&words(&["--label", "com.example.description=my app"])).unwrap().0, words(&["--label 'com.example.description=my app'"]));
        assert_eq!(group(&words(&["--build-arg GITHUB_TOKEN=\"hello\""])).unwrap().0, words(&["--build-arg GITHUB_TOKEN=hello"]));
        assert_eq!(group(&words(&["--link", "foo", "--process", "web"])).unwrap(), (words(&["--link foo"]), words(&["web"])));
        assert_eq!(group(&words(&["-v /tmp", "--memory=512m"])).unwrap().0, words(&["-v /tmp", "--memory=512m"]));
        assert!(group(&words(&["tmp"])).unwrap_err().contains("starts with -"));
        assert!(group(&words(&["--link", "foo", "--process"])).is_err());
        assert_eq!(group(&words(&["--memory-swap", "-1"])).unwrap().0, words(&["--memory-swap -1"]));
        assert!(check("deploy", "-é").unwrap_err().contains("Not a Docker option"));
    }

    #[test]
    fn phases_are_dokkus_three() {
        assert_eq!(phases("build,deploy,run").unwrap(), ["build", "deploy", "run"]);
        assert_eq!(phases("deploy,deploy").unwrap(), ["deploy"]);
        assert!(phases("deploy,later").unwrap_err().contains("[build deploy run]"));
    }

    #[test]
    fn run_options_become_the_containers_fields() {
        let o = run_options(&words(&["-v /tmp", "-v /data:/data:ro", "-p 8080:5000", "--link postgres", "--memory=512m", "--shm-size 256m", "--label 'a.b=my app'", "--cap-add SYS_PTRACE", "--privileged", "--ulimit nofile=1024:2048", "--add-host db:10.0.0.1", "-m1g"])).unwrap();
        assert_eq!(o.volumes, ["/tmp"]);
        assert_eq!(o.binds, ["/data:/data:ro"]);
        assert_eq!(o.ports, [("5000/tcp".to_string(), PortBinding { host_ip: None, host_port: Some("8080".into()) })]);
        assert_eq!(o.links, ["postgres:postgres"]);
        assert_eq!(o.memory, Some(1024 * 1024 * 1024), "the last -m wins");
        assert_eq!(o.shm_size, Some(256 * 1024 * 1024));
        assert_eq!(o.labels, [("a.b".to_string(), "my app".to_string())]);
        assert!(o.privileged);
        assert_eq!(o.ulimits[0].hard, Some(2048));
        let mut body = ContainerCreateBody { host_config: Some(HostConfig { memory: Some(1), memory_swap: Some(1), ..Default::default() }), ..Default::default() };
        o.apply(&mut body);
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(1024 * 1024 * 1024));
        assert_eq!(host.memory_swap, Some(1024 * 1024 * 1024), "swap follows a raised memory limit");
        assert_eq!(body.volumes, Some(vec!["/tmp".to_string()]));
        assert_eq!(body.exposed_ports, Some(vec!["5000/tcp".to_string()]));
    }

    #[test]
    fn options_berth_owns_or_does_not_know_are_refused_saying_why() {
        for (option, why) in [
            ("-e X=1", "config:set"),
            ("--network host", "network:set"),
            ("--restart always", "restart-policy"),
            ("--frobnicate 1", "does not pass --frobnicate"),
            ("--memory lots", "takes a size"),
            ("-p 99999:5000", "CONTAINER_PORT"),
            ("--label berth.app=other", "berth's own"),
            ("-v relative", "absolute"),
            ("--privileged=maybe", "no value"),
            ("--cap-add", "needs a value"),
        ] {
            let e = check("deploy", option).unwrap_err();
            assert!(e.contains(why), "{option}: {e}");
        }
    }

    #[test]
    fn build_options_pass_build_args_and_skip_run_options() {
        let o = build_options(&words(&["--build-arg X=Y", "--link postgres", "--build-arg EMPTY"])).unwrap();
        assert_eq!(o.build_args, HashMap::from([("X".to_string(), "Y".to_string()), ("EMPTY".to_string(), String::new())]));
        assert_eq!(o.skipped, ["--link postgres"]);
        assert!(check("build", "--frobnicate 1").is_err());
        assert!(build_options(&words(&["--add-host a:1.2.3.4", "--add-host b:1.2.3.5"])).unwrap_err().contains("one --add-host"));
        assert!(check("build", "--shm-size 3g").unwrap_err().contains("at most 2047m"));
    }
}
