//! One app's state: `apps/<app>/app.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::settings::{ChecksConfig, DEFAULT_LOG_MAX_SIZE, DEFAULT_PROCFILE, DEFAULT_STOP_TIMEOUT, DockerLocalSettings, LogSettings, ProcessSettings};
use crate::validate::{Mount, PortMap};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppConfig {
    /// Unix time the app was created.
    pub created_at: u64,
    /// When set, deploys are refused until `apps:unlock`.
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub domains: Vec<String>,
    /// Whether the app answers to `APP.<global domain>`, following `domains:set-global`
    /// (false once `domains:clear` or a `domains:set|remove` drops those names). None in
    /// state from before berth recorded it: the domains tell (`domains::follows_global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows_global: Option<bool>,
    /// `proxy:disable`: nginx routes nothing to the app (other apps on its networks still
    /// reach it by name); its site comes back with `proxy:enable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_disabled: bool,
    /// Proxy port mappings; empty means the default, `http:80:5000`.
    #[serde(default, with = "port_strings")]
    pub ports: Vec<PortMap>,
    /// The branch whose pushes deploy; None means `main` or `master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
    /// `git:set APP keep-git-dir true`: a push's build context holds a `.git` directory
    /// with the commit (None: the global setting, else false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_git_dir: Option<bool>,
    /// `git:set APP source-image IMAGE` (and `git:from-image`): the image `ps:rebuild`
    /// deploys again; a push's deploy clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image: Option<String>,
    /// `git:set APP rev-env-var VAR`: the env var that gives the app's containers the
    /// commit they run (None: `GIT_REV`; empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev_env_var: Option<String>,
    #[serde(default)]
    pub checks: ChecksConfig,
    /// `builder:set`: None detects (a Dockerfile at the root wins, else buildpacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<Builder>,
    /// How many releases keep their image for rollbacks (`releases:set APP keep N`).
    #[serde(default = "default_keep", skip_serializing_if = "is_default_keep")]
    pub keep_releases: u32,
    /// `buildpacks:*`: built-in names or git URLs, in order; empty detects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buildpacks: Vec<String>,
    /// `ps:scale`: containers per process type; a type not named runs 1 if web, else 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scale: BTreeMap<String, u32>,
    /// `ps:stop`: nothing runs until `ps:start` (kept across daemon restarts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// `ps:set APP restart-policy`: what berth does when a process exits (None: the global
    /// policy, else the default; see `restart_policy_with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// `ps:set`: where the Procfile is and how long a process has to stop.
    #[serde(default, skip_serializing_if = "ProcessSettings::is_empty")]
    pub process: ProcessSettings,
    /// `scheduler-docker-local:set`: an init process in each container, and how many start at once.
    #[serde(default, skip_serializing_if = "DockerLocalSettings::is_empty")]
    pub docker_local: DockerLocalSettings,
    /// `logs:set`: how much output a container keeps, and the label naming its app.
    #[serde(default, skip_serializing_if = "LogSettings::is_empty")]
    pub logs: LogSettings,
    /// `storage:mount`: host directories mounted into every process container.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "mount_strings")]
    pub storage: Vec<Mount>,
    /// `resource:limit`: limits for every process type (key `_all`) or one type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Limits>,
    /// `resource:reserve`: what is reserved for every process type (key `_all`) or one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservations: BTreeMap<String, Limits>,
    /// `letsencrypt:*`: whether berth keeps a Let's Encrypt certificate for the app, and
    /// the app's own ACME settings (over the global ones).
    #[serde(default, skip_serializing_if = "LetsencryptConfig::is_empty")]
    pub letsencrypt: LetsencryptConfig,
    /// `nginx:set`: the app's proxy properties (unset means berth's default).
    #[serde(default, skip_serializing_if = "NginxConfig::is_empty")]
    pub nginx: NginxConfig,
    /// `previews:*`: whether pushed branches become preview apps, and how.
    #[serde(default, skip_serializing_if = "PreviewSettings::is_empty")]
    pub previews: PreviewSettings,
    /// Set on a preview app: whose preview it is, of which branch, last pushed when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_of: Option<PreviewOf>,
    /// `builder:set APP build-cpu-shares|build-memory`: this app's builds (over the global ones).
    #[serde(default, skip_serializing_if = "BuildSettings::is_empty")]
    pub build: BuildSettings,
    /// `network:set APP attach-post-create|attach-post-deploy NET…`: networks an admin made
    /// that the app's containers join (both before they start: from its first instant a
    /// container reaches what it will reach).
    #[serde(default, skip_serializing_if = "Networks::is_empty")]
    pub networks: Networks,
    /// `scheduler:set APP selected|constraint`: where the app runs.
    #[serde(default, skip_serializing_if = "SchedulerSettings::is_empty")]
    pub scheduler: SchedulerSettings,
    /// `docker-options:add APP PHASE OPTION…` (admins): options as written, by phase
    /// (`build`, `deploy`, `run`) or `deploy.PROCESS` for one process type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker_options: BTreeMap<String, Vec<String>>,
    /// `maintenance:*` and `http-auth:*`: what nginx answers before the app sees a request.
    #[serde(default, skip_serializing_if = "super::Gates::is_empty")]
    pub gates: super::Gates,
}

/// dokku's name for the env var holding the deployed commit.
pub const DEFAULT_REV_ENV_VAR: &str = "GIT_REV";

impl AppConfig {
    /// The env var that gives the containers their commit, if any (`git:set rev-env-var`).
    pub fn rev_env_var(&self) -> Option<&str> {
        match self.rev_env_var.as_deref() {
            None => Some(DEFAULT_REV_ENV_VAR),
            Some("") => None,
            Some(var) => Some(var),
        }
    }

    /// The Procfile's path in the pushed tree (`ps:set procfile-path`): the app's, the
    /// global one, else `Procfile`.
    pub fn procfile_path_with(&self, global: &super::GlobalConfig) -> String {
        self.process.procfile_path.clone().or_else(|| global.process.procfile_path.clone()).unwrap_or_else(|| DEFAULT_PROCFILE.to_string())
    }

    /// Whether builds stop short of deploying (`ps:set skip-deploy`): the app's, the global
    /// setting, else false.
    pub fn skip_deploy_with(&self, global: &super::GlobalConfig) -> bool {
        self.process.skip_deploy.or(global.process.skip_deploy).unwrap_or(false)
    }

    /// How long a process has between SIGTERM and SIGKILL (`ps:set stop-timeout-seconds`).
    pub fn stop_timeout_with(&self, global: &super::GlobalConfig) -> std::time::Duration {
        std::time::Duration::from_secs(self.process.stop_timeout.or(global.process.stop_timeout).unwrap_or(DEFAULT_STOP_TIMEOUT).into())
    }

    /// The web process's command set by `ps:set start-cmd|dockerfile-start-cmd`, for a
    /// release whose Procfile names no web: in place of the image's CMD (or the buildpack's
    /// default). None for another process type, or when the Procfile has a web.
    pub fn start_cmd_for(&self, release: &super::Release, process: &str) -> Option<Vec<String>> {
        if process != crate::process::WEB || release.processes.contains_key(process) {
            return None;
        }
        let dockerfile = if release.launcher { None } else { self.process.dockerfile_start_cmd.as_deref() };
        let line = dockerfile.or(self.process.start_cmd.as_deref())?;
        Some(release.one_off(shell_words::split(line).unwrap_or_else(|_| vec![line.to_string()])))
    }

    /// Whether its containers run an init process as PID 1.
    pub fn init_process_with(&self, global: &super::GlobalConfig) -> bool {
        self.docker_local.init_process.or(global.docker_local.init_process).unwrap_or(true)
    }

    /// How many of its containers a deploy starts at once.
    pub fn parallel_schedule_count_with(&self, global: &super::GlobalConfig) -> u32 {
        self.docker_local.parallel_schedule_count.or(global.docker_local.parallel_schedule_count).unwrap_or(1)
    }

    /// The size past which its containers' log files rotate; None: never (`unlimited`).
    pub fn log_max_size_with(&self, global: &super::GlobalConfig) -> Option<String> {
        let size = self.logs.max_size.clone().or_else(|| global.logs.max_size.clone()).unwrap_or_else(|| DEFAULT_LOG_MAX_SIZE.to_string());
        (size != "unlimited").then_some(size)
    }

    /// The label key its containers carry its name under (`logs:set app-label-alias`).
    pub fn app_label_alias_with(&self, global: &super::GlobalConfig) -> Option<String> {
        self.logs.app_label_alias.clone().or_else(|| global.logs.app_label_alias.clone())
    }

    /// Where its output is sent (`logs:set drain`), with the HTTP drain's token and whether
    /// it may be at a private address (an admin set it): the app's own, else the global one
    /// (which only admins set). An app's own drain takes its own token only.
    pub fn drain_with(&self, global: &super::GlobalConfig) -> Option<(String, Option<String>, bool)> {
        match &self.logs.drain {
            Some(drain) => Some((drain.clone(), self.logs.drain_token.clone(), self.logs.drain_private)),
            None => global.logs.drain.clone().map(|d| (d, global.logs.drain_token.clone(), true)),
        }
    }

    /// The directory of the pushed tree that is built (`builder:set build-dir`), if not its root.
    pub fn build_dir_with(&self, global: &super::GlobalConfig) -> Option<String> {
        self.build.dir.clone().or_else(|| global.build.dir.clone())
    }

    /// The image its buildpack builds run in: the app's, the global one, else berth's stack.
    pub fn stack_with(&self, global: &super::GlobalConfig) -> String {
        self.build.stack.clone().or_else(|| global.build.stack.clone()).unwrap_or_else(|| crate::buildpack::STACK_IMAGE.to_string())
    }

    /// The builder chosen (`builder:set selected`), the app's or the global one; None detects.
    pub fn builder_with(&self, global: &super::GlobalConfig) -> Option<Builder> {
        self.builder.or(global.builder)
    }

    /// The suffix of its containers' names on networks (`network:set tld`), the app's or
    /// the global one.
    pub fn tld_with(&self, global: &super::GlobalConfig) -> Option<String> {
        self.networks.tld.clone().or_else(|| global.tld.clone())
    }

    /// The shell of `enter APP` without a command (`scheduler:set shell`); None: `/bin/sh`.
    pub fn shell_with(&self, global: &super::GlobalConfig) -> Option<String> {
        self.scheduler.shell.clone().or_else(|| global.shell.clone())
    }

    /// The restart policy in force: the app's, else the global one (`ps:set --global`),
    /// else berth's default.
    pub fn restart_policy_with(&self, global: &super::GlobalConfig) -> RestartPolicy {
        self.restart_policy.or(global.restart_policy).unwrap_or_default()
    }

    /// The options of a phase: the phase's own, then (deploy) the process type's.
    pub fn docker_options_for(&self, phase: &str, process: Option<&str>) -> Vec<String> {
        let mut options = self.docker_options.get(phase).cloned().unwrap_or_default();
        if let Some(own) = process.and_then(|p| self.docker_options.get(&format!("{phase}.{p}"))) {
            options.extend(own.iter().cloned());
        }
        options
    }
}

/// Where apps run: dokku's scheduler names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerName {
    /// Containers on this server's Docker engine.
    #[default]
    #[serde(rename = "docker-local")]
    DockerLocal,
    /// Services on the Docker Swarm this server manages.
    #[serde(rename = "swarm")]
    Swarm,
}

impl SchedulerName {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerName::DockerLocal => "docker-local",
            SchedulerName::Swarm => "swarm",
        }
    }
}

impl std::str::FromStr for SchedulerName {
    type Err = String;
    fn from_str(name: &str) -> Result<SchedulerName, String> {
        match name {
            "docker-local" => Ok(SchedulerName::DockerLocal),
            "swarm" => Ok(SchedulerName::Swarm),
            other => Err(format!("Invalid scheduler {}: docker-local or swarm", crate::validate::quoted(other))),
        }
    }
}

/// An app's scheduler settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerSettings {
    /// None: the global choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<SchedulerName>,
    /// Swarm placement constraints (`node.labels.env==qa`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// The shell `enter APP` runs without a command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

impl SchedulerSettings {
    pub fn is_empty(&self) -> bool {
        self.selected.is_none() && self.constraints.is_empty() && self.shell.is_none()
    }
}

/// The networks an admin attached an app to, as dokku's `network:set` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Networks {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attach_post_create: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attach_post_deploy: Vec<String>,
    /// `network:set APP tld TLD`: each container's names on networks also end in `.TLD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tld: Option<String>,
}

impl Networks {
    pub fn is_empty(&self) -> bool {
        self.attach_post_create.is_empty() && self.attach_post_deploy.is_empty() && self.tld.is_none()
    }

    /// Every network the app's containers join, once each.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.attach_post_create.iter().chain(&self.attach_post_deploy).cloned().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// ACME settings: an app's (with `enabled`) or the global defaults (berth.toml).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreviewSettings {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// Seconds without a push after which a preview is destroyed (default 7 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Most previews at once (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Keys of the parent's config a preview does not get.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_exclude: Vec<String>,
    /// Config only previews get (over the parent's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Whether previews get the parent's linked services' URLs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link_services: bool,
    /// `previews:set APP http-auth true`: previews ask for the app's http-auth users.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http_auth: bool,
}

impl PreviewSettings {
    pub const DEFAULT_TTL: u64 = 7 * 86_400;
    pub const DEFAULT_MAX: u32 = 5;

    pub fn is_empty(&self) -> bool {
        *self == PreviewSettings::default()
    }
}

/// What makes an app a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewOf {
    pub parent: String,
    pub branch: String,
    /// Unix seconds of the last push of the branch.
    pub last_push: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildSettings {
    /// CPU weight of build containers (Docker's cpu-shares; apps run at 1024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
    /// Memory limit of build containers (`1g`; `0`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// `builder:set --global build-cpu-priority normal`: builds at the apps' CPU
    /// priority rather than the idle one (None: idle). Global only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_priority: Option<String>,
    /// The directory of the pushed tree that is built (`sub/dir`), if not its root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Keep a Dockerfile build's intermediate containers (to look into a failed step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_cleanup: Option<bool>,
    /// The image buildpack builds run in (`buildpacks:set-property stack`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl BuildSettings {
    pub fn is_empty(&self) -> bool {
        *self == BuildSettings::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LetsencryptConfig {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// Contact address given to the ACME server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// ACME directory URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Renew when expiry is closer than this many seconds (dokku's `graceperiod`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceperiod: Option<u64>,
    /// Whether `letsencrypt:enable` added the app's `https:443` mapping, which
    /// `letsencrypt:disable` then removes (a mapping of the user's stays). None: enabled by a
    /// berth that did not record it, which always added one when the app had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_port_added: Option<bool>,
    /// `letsencrypt:set --global auto true` (global settings only): every app gets a
    /// certificate at its first deploy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
}

impl LetsencryptConfig {
    fn is_empty(&self) -> bool {
        *self == LetsencryptConfig::default()
    }
}

/// `nginx:set` properties, with dokku's names (`hsts`, `hsts-max-age`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NginxConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts_include_subdomains: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts_max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts_preload: Option<bool>,
}

impl NginxConfig {
    fn is_empty(&self) -> bool {
        *self == NginxConfig::default()
    }

    /// The Strict-Transport-Security value, or None when HSTS is off (dokku's defaults:
    /// on, six months, subdomains included, no preload).
    pub fn hsts_header(&self) -> Option<String> {
        if !self.hsts.unwrap_or(true) {
            return None;
        }
        let mut value = format!("max-age={}", self.hsts_max_age.unwrap_or(DEFAULT_HSTS_MAX_AGE));
        if self.hsts_include_subdomains.unwrap_or(true) {
            value.push_str("; includeSubDomains");
        }
        if self.hsts_preload.unwrap_or(false) {
            value.push_str("; preload");
        }
        Some(value)
    }
}

/// dokku's default `hsts-max-age`: 15724800 s (six months).
pub const DEFAULT_HSTS_MAX_AGE: u64 = 15_724_800;

/// The `resources` key for limits that apply to every process type.
pub const ALL_PROCESSES: &str = "_all";
/// The `resources` key whose limits are the app's builds' (dokku's `--process-type build`).
pub const BUILD_PROCESS: &str = "build";

/// Resource limits as the user gave them (validated: `validate::memory`, `validate::cpus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
}

impl Limits {
    /// One process type's values in a `resource:*` map: its own, else those under
    /// `ALL_PROCESSES`, value by value. Pure.
    fn for_process(map: &BTreeMap<String, Limits>, process: &str) -> Limits {
        let all = map.get(ALL_PROCESSES).cloned().unwrap_or_default();
        let own = map.get(process).cloned().unwrap_or_default();
        Limits { memory: own.memory.or(all.memory), cpus: own.cpus.or(all.cpus) }
    }
}

/// A restart policy, written as Docker does: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// Restart after a non-zero exit, at most N times in a row (0: no limit). dokku's
    /// default is `on-failure:10`, and berth's.
    OnFailure(u32),
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::OnFailure(10)
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
            RestartPolicy::OnFailure(0) => f.write_str("on-failure"),
            RestartPolicy::OnFailure(n) => write!(f, "on-failure:{n}"),
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("Invalid restart-policy specified: {} (use no, always, unless-stopped or on-failure[:N])", crate::validate::quoted(s));
        match s {
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure(0)),
            _ => {
                let n = s.strip_prefix("on-failure:").ok_or_else(bad)?;
                let n: u32 = n.parse().map_err(|_| bad())?;
                if n == 0 || n > 1000 || !s.ends_with(|c: char| c.is_ascii_digit()) {
                    return Err(bad());
                }
                Ok(RestartPolicy::OnFailure(n))
            }
        }
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

pub const DEFAULT_KEEP_RELEASES: u32 = 5;

fn default_keep() -> u32 {
    DEFAULT_KEEP_RELEASES
}

fn is_default_keep(n: &u32) -> bool {
    *n == DEFAULT_KEEP_RELEASES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    Dockerfile,
    Buildpacks,
}

impl AppConfig {
    pub fn new() -> AppConfig {
        AppConfig { created_at: crate::unix_now(), keep_releases: DEFAULT_KEEP_RELEASES, ..AppConfig::default() }
    }

    /// The deploy branch set (`git:set deploy-branch`): the app's, else the global one.
    pub fn deploy_branch_with<'a>(&'a self, global: &'a super::GlobalConfig) -> Option<&'a str> {
        self.deploy_branch.as_deref().or(global.git.deploy_branch.as_deref())
    }

    /// The one branch a push deploys, of the branches it updates (`pushed`): the deploy
    /// branch set; without one, `main`, or `master` when the app has no `main` (neither
    /// in the repository, `has_main`, nor in this push). Never two: a push of main and
    /// master together deploys main only.
    pub fn deploy_branch_of(&self, global: &super::GlobalConfig, pushed: &[&str], has_main: bool) -> Option<String> {
        let wanted = self.wanted_branch(global, pushed, has_main);
        pushed.contains(&wanted).then(|| wanted.to_string())
    }

    /// The branches that may be the deploy branch, in the order they are looked for: the
    /// one set, or main then master.
    pub fn deploy_branches(&self, global: &super::GlobalConfig) -> Vec<String> {
        match self.deploy_branch_with(global) {
            Some(b) => vec![b.to_string()],
            None => vec!["main".into(), "master".into()],
        }
    }

    /// The branch that deploys, whether or not this push updates it (with no push, the
    /// computed deploy branch of `git:report`: `master` until the repository has `main`).
    pub fn wanted_branch<'a>(&'a self, global: &'a super::GlobalConfig, pushed: &[&str], has_main: bool) -> &'a str {
        match self.deploy_branch_with(global) {
            Some(b) => b,
            None if has_main || pushed.contains(&"main") => "main",
            None => "master",
        }
    }

    /// The networks an app's containers are attached to (`network:set attach-post-create`
    /// and `attach-post-deploy`): for each, the app's, else the global ones.
    pub fn attach_post_create_with<'a>(&'a self, global: &'a super::GlobalConfig) -> &'a [String] {
        if self.networks.attach_post_create.is_empty() { &global.attach_post_create } else { &self.networks.attach_post_create }
    }

    pub fn attach_post_deploy_with<'a>(&'a self, global: &'a super::GlobalConfig) -> &'a [String] {
        if self.networks.attach_post_deploy.is_empty() { &global.attach_post_deploy } else { &self.networks.attach_post_deploy }
    }

    /// Every network the app's containers join, once each.
    pub fn networks_with(&self, global: &super::GlobalConfig) -> Vec<String> {
        let mut all: Vec<String> = self.attach_post_create_with(global).iter().chain(self.attach_post_deploy_with(global)).cloned().collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether a push's build context holds the repository (`git:set keep-git-dir`).
    pub fn keep_git_dir_with(&self, global: &super::GlobalConfig) -> bool {
        self.keep_git_dir.or(global.git.keep_git_dir).unwrap_or(false)
    }

    /// The port the app's web containers listen on: the first mapping's container port,
    /// or PORT from the env when no mapping was set explicitly (as dokku does).
    pub fn container_port(&self) -> u16 {
        if self.ports.is_empty()
            && let Some(port) = self.env.get("PORT").and_then(|p| crate::validate::port(p).ok())
        {
            return port;
        }
        self.effective_ports()[0].container
    }

    /// How many containers of each process type run, given the release's types.
    pub fn formation(&self, types: &[String]) -> Vec<(String, u32)> {
        crate::process::formation(&self.scale, types)
    }

    /// What is reserved for one process type: its own, else what is for every type.
    pub fn reservations_for(&self, process: &str) -> Limits {
        Limits::for_process(&self.reservations, process)
    }

    /// The limits for one process type: its own, else those for every type.
    pub fn limits_for(&self, process: &str) -> Limits {
        Limits::for_process(&self.resources, process)
    }

    /// The mappings in force: the configured ones, or the default.
    pub fn effective_ports(&self) -> Vec<PortMap> {
        if self.ports.is_empty() { vec![PortMap::DEFAULT] } else { self.ports.clone() }
    }
}

/// Port mappings are kept as `http:80:5000` strings so app.toml reads like the commands.
mod port_strings {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::validate::{self, PortMap};

    pub fn serialize<S: Serializer>(ports: &[PortMap], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ports.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortMap>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| validate::port_map(s).map_err(D::Error::custom))
            .collect()
    }
}

mod mount_strings {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::validate::{self, Mount};

    pub fn serialize<S: Serializer>(mounts: &[Mount], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(mounts.iter().map(|m| m.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mount>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| validate::mount(s).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn one_push_deploys_one_branch() {
        let mut config = AppConfig::new();
        let mut global = super::super::GlobalConfig::default();
        assert_eq!(config.deploy_branch_of(&global, &["main", "master"], false).as_deref(), Some("main"));
        assert_eq!(config.deploy_branch_of(&global, &["master"], false).as_deref(), Some("master"));
        assert_eq!(config.deploy_branch_of(&global, &["master"], true), None, "an app with main deploys main");
        assert_eq!(config.deploy_branch_of(&global, &["feature"], false), None);
        assert_eq!(config.wanted_branch(&global, &[], false), "master", "before any push");
        global.git.deploy_branch = Some("trunk".into());
        assert_eq!(config.deploy_branch_of(&global, &["main", "trunk"], true).as_deref(), Some("trunk"), "the global one");
        config.deploy_branch = Some("prod".into());
        assert_eq!(config.deploy_branch_of(&global, &["main", "prod", "trunk"], true).as_deref(), Some("prod"), "the app's wins");
        assert_eq!(config.deploy_branch_of(&global, &["main"], true), None);
        assert_eq!(config.deploy_branches(&global), ["prod"]);
    }

    #[test]
    fn app_toml_round_trips() {
        let mut app = AppConfig::new();
        app.env.insert("GREETING".into(), "hello world\nsecond line \"quoted\"".into());
        app.domains.push("www.example.com".into());
        app.ports.push(crate::validate::port_map("https:443:5000").unwrap());
        app.scale.insert("worker".into(), 2);
        app.restart_policy = Some(RestartPolicy::OnFailure(5));
        app.storage.push(crate::validate::mount("data:/app/data:ro").unwrap());
        app.resources.insert(ALL_PROCESSES.into(), Limits { memory: Some("256m".into()), cpus: None });
        let text = toml::to_string_pretty(&app).unwrap();
        assert!(text.contains("\"https:443:5000\""), "{text}");
        let back: AppConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, app);
    }

    #[test]
    fn restart_policies() {
        for text in ["no", "always", "unless-stopped", "on-failure", "on-failure:5"] {
            assert_eq!(text.parse::<RestartPolicy>().unwrap().to_string(), text);
        }
        for bad in ["", "sometimes", "on-failure:", "on-failure:0", "on-failure:x", "on-failure:5000"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_per_process_fall_back_to_all() {
        let mut app = AppConfig::new();
        app.resources.insert(ALL_PROCESSES.into(), Limits { memory: Some("256m".into()), cpus: Some("1".into()) });
        app.resources.insert("web".into(), Limits { memory: Some("512m".into()), cpus: None });
        assert_eq!(app.limits_for("web"), Limits { memory: Some("512m".into()), cpus: Some("1".into()) });
        assert_eq!(app.limits_for("worker").memory.as_deref(), Some("256m"));
    }

    #[test]
    fn default_port_mapping() {
        assert_eq!(AppConfig::new().effective_ports(), vec![PortMap::DEFAULT]);
    }

    #[test]
    fn hsts_header_follows_dokkus_defaults_and_each_property() {
        let mut nginx = NginxConfig::default();
        assert_eq!(nginx.hsts_header().as_deref(), Some("max-age=15724800; includeSubDomains"));
        nginx.hsts_max_age = Some(60);
        nginx.hsts_preload = Some(true);
        assert_eq!(nginx.hsts_header().as_deref(), Some("max-age=60; includeSubDomains; preload"));
        nginx.hsts_include_subdomains = Some(false);
        assert_eq!(nginx.hsts_header().as_deref(), Some("max-age=60; preload"));
        nginx.hsts_max_age = Some(0);
        nginx.hsts_preload = None;
        assert_eq!(nginx.hsts_header().as_deref(), Some("max-age=0"));
        nginx.hsts = Some(false);
        assert_eq!(nginx.hsts_header(), None);
        nginx.hsts = Some(true);
        assert!(nginx.hsts_header().is_some());
    }

    #[test]
    fn letsencrypt_state_from_before_the_https_port_was_recorded_reads_as_unknown() {
        let old: AppConfig = toml::from_str("created_at = 1\n[letsencrypt]\nenabled = true\n").unwrap();
        assert_eq!((old.letsencrypt.enabled, old.letsencrypt.https_port_added), (true, None));
        let mut new = old.clone();
        new.letsencrypt.https_port_added = Some(false);
        let text = toml::to_string(&new).unwrap();
        assert!(text.contains("https_port_added = false"), "{text}");
        assert_eq!(toml::from_str::<AppConfig>(&text).unwrap(), new);
    }
}
