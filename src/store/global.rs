//! Global settings: `berth.toml`. Command-line flags of `berth daemon` override them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalConfig {
    /// Address of the SSH server, e.g. `0.0.0.0:2222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_listen: Option<String>,
    /// Address nginx serves HTTP on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Address nginx serves HTTPS on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_listen: Option<String>,
    /// Address of the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_listen: Option<String>,
    /// `false`: nginx does not count requests for metrics (berth.lua's log phase); read
    /// when the daemon starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx_metrics: Option<bool>,
    /// Failed API authentications an address may make in a minute (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_auth_failures: Option<u32>,
    /// Host ports apps may map (`ports:*`); 80 and 443 always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_ports: Vec<u16>,
    /// Third-party buildpacks may be fetched from loopback and private addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_buildpack_hosts: bool,
    /// The largest pushed tree (build context) berth builds, in MiB (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_build_context_mb: Option<u64>,
    /// Seconds a build may take before it is stopped (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_timeout: Option<u64>,
    /// Seconds the release command, predeploy and postdeploy may each take (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_timeout: Option<u64>,
    /// Global domains: a new app gets `<app>.<domain>` for each.
    #[serde(default)]
    pub global_domains: Vec<String>,
    /// `letsencrypt:set --global`: defaults for every app.
    #[serde(default)]
    pub letsencrypt: super::LetsencryptConfig,
    /// `cluster:registry HOST:PORT`: where swarm apps' images go, for every node to pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_registry: Option<String>,
    /// `ps:set --global restart-policy`: the policy of apps that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<super::RestartPolicy>,
    /// `scheduler:set --global selected`: where apps run that choose none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<super::SchedulerName>,
    /// `network:set --global tld`: the suffix of container names on networks for apps that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tld: Option<String>,
    /// `network:set --global attach-post-create|attach-post-deploy`: the networks of apps
    /// that set none (on this server's engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_post_create: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_post_deploy: Vec<String>,
    /// `scheduler:set --global shell`: the shell of `enter` for apps that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// `builder:set --global selected`: the builder of apps that choose none (None: detect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<super::Builder>,
    /// `scheduler-docker-local:set --global init-process|parallel-schedule-count`.
    #[serde(default, skip_serializing_if = "super::DockerLocalSettings::is_empty")]
    pub docker_local: super::DockerLocalSettings,
    /// `logs:set --global max-size|app-label-alias`.
    #[serde(default, skip_serializing_if = "super::LogSettings::is_empty")]
    pub logs: super::LogSettings,
    /// `ps:set --global procfile-path|stop-timeout-seconds`.
    #[serde(default, skip_serializing_if = "super::ProcessSettings::is_empty")]
    pub process: super::ProcessSettings,
    /// `apps:set --global disable-autocreation true`: a push to an app that does not exist
    /// is refused rather than creating it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_autocreation: bool,
    /// `builder:set --global build-cpu-shares|build-memory`: every app's builds.
    #[serde(default, skip_serializing_if = "super::BuildSettings::is_empty")]
    pub build: super::BuildSettings,
    /// `git:set --global deploy-branch|keep-git-dir`.
    #[serde(default, skip_serializing_if = "super::GitSettings::is_empty")]
    pub git: super::GitSettings,
    /// `builder:set --global build-concurrency N`: builds at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_concurrency: Option<u32>,
}

impl GlobalConfig {
    pub fn build_context_limit_mb(&self) -> u64 {
        self.max_build_context_mb.unwrap_or(1024)
    }

    /// The host ports an app's port mappings may use.
    pub fn allowed_host_ports(&self) -> Vec<u16> {
        let mut ports = vec![80, 443];
        ports.extend(self.proxy_ports.iter().filter(|p| **p != 80 && **p != 443));
        ports
    }
}
