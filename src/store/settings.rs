//! Settings an app and the global settings share, namespace by namespace (`ps:set`,
//! `logs:set`, `scheduler-docker-local:set`), and an app's readiness checks (`checks:*`).

use serde::{Deserialize, Serialize};

/// Where a process's Procfile is, and how long a process has to stop, unless set.
pub const DEFAULT_PROCFILE: &str = "Procfile";
pub const DEFAULT_STOP_TIMEOUT: u32 = 30;

/// `scheduler-docker-local:set` properties an app and the global settings share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerLocalSettings {
    /// An init process (tini) as each container's PID 1, reaping zombies and passing
    /// signals on (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_process: Option<bool>,
    /// How many of an app's containers a deploy starts at once (default 1, as dokku).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_schedule_count: Option<u32>,
}

impl DockerLocalSettings {
    pub fn is_empty(&self) -> bool {
        *self == DockerLocalSettings::default()
    }
}

/// `git:set --global` properties (an app's are its own fields, older than these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitSettings {
    /// The branch whose pushes deploy, for apps that set none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
    /// Build contexts hold the repository (`.git`), for apps that set nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_git_dir: Option<bool>,
}

impl GitSettings {
    pub fn is_empty(&self) -> bool {
        *self == GitSettings::default()
    }
}

/// How much output a container keeps (the engine's json-file log, rotated), unless set.
pub const DEFAULT_LOG_MAX_SIZE: &str = "10m";

/// `logs:set` properties an app and the global settings share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// The size past which a container's log file rotates (`10m`; `unlimited`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    /// A label key each container gets with its app's name, for log collectors that
    /// read labels (`com.example.app`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_label_alias: Option<String>,
    /// Where the app's output is sent as well (`syslog+tcp://`, `syslog+tls://`, `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
    /// The bearer token an HTTP drain is sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_token: Option<String>,
    /// An admin set the drain: it may be at a private address (this server's networks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain_private: bool,
}

impl LogSettings {
    pub fn is_empty(&self) -> bool {
        *self == LogSettings::default()
    }
}

/// `ps:set` properties an app and the global settings share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSettings {
    /// The Procfile's path in the pushed tree (or the image's working directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procfile_path: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when a container stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// A build (push, `ps:rebuild`, an image) is recorded as a release and not deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_deploy: Option<bool>,
    /// The web process's command when the release's Procfile names no web (an app's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_cmd: Option<String>,
    /// The same for Dockerfile builds and images only, over `start_cmd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_start_cmd: Option<String>,
}

impl ProcessSettings {
    pub fn is_empty(&self) -> bool {
        *self == ProcessSettings::default()
    }
}

/// `checks:*` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChecksConfig {
    /// No readiness checks for any process type, and old containers stop as soon as the
    /// new ones run (dokku's `_all_`).
    pub disabled: bool,
    /// No readiness checks for any process type; the swap is otherwise as usual.
    pub skipped: bool,
    /// The process types whose checks are disabled (`checks:disable APP web,worker`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disabled_processes: Vec<String>,
    /// The process types whose checks are skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_processes: Vec<String>,
    /// Seconds a new container has to become ready.
    pub timeout: u64,
    /// Seconds old containers keep running after traffic has moved.
    pub wait_to_retire: u64,
    /// Bad answers (HTTP ≥ 500, wrong content) tolerated once the port accepts.
    pub attempts: u32,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { disabled: false, skipped: false, disabled_processes: Vec::new(), skipped_processes: Vec::new(), timeout: 60, wait_to_retire: 10, attempts: 5 }
    }
}

/// What `checks:enable|disable|skip` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksMode {
    Enable,
    Disable,
    Skip,
}

impl ChecksConfig {
    /// Whether a process type's containers start without checks, their predecessors
    /// stopping as soon as they run.
    pub fn disabled_for(&self, process: &str) -> bool {
        self.disabled || self.disabled_processes.iter().any(|p| p == process)
    }

    /// Whether a process type's containers take traffic as soon as they run.
    pub fn skipped_for(&self, process: &str) -> bool {
        self.skipped || self.skipped_processes.iter().any(|p| p == process)
    }

    /// `checks:enable|disable|skip APP [TYPES]` (None: every type): a type is in one list
    /// at most, so disabling one takes it off the skipped list and the other way round.
    /// Pure.
    pub fn set_mode(&mut self, mode: ChecksMode, processes: Option<&[String]>) {
        match processes {
            None => {
                self.disabled = mode == ChecksMode::Disable;
                self.skipped = mode == ChecksMode::Skip;
                self.disabled_processes.clear();
                self.skipped_processes.clear();
            }
            Some(types) => {
                self.disabled_processes.retain(|p| !types.contains(p));
                self.skipped_processes.retain(|p| !types.contains(p));
                let list = match mode {
                    ChecksMode::Enable => return,
                    ChecksMode::Disable => &mut self.disabled_processes,
                    ChecksMode::Skip => &mut self.skipped_processes,
                };
                list.extend(types.iter().cloned());
            }
        }
    }

    /// dokku's `--checks-disabled-list` / `--checks-skipped-list`: `_all_`, the types, or `none`.
    pub fn shown_list(all: bool, processes: &[String]) -> String {
        if all {
            "_all_".into()
        } else if processes.is_empty() {
            "none".into()
        } else {
            processes.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_types_checks_are_disabled_or_skipped_never_both() {
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut checks = ChecksConfig::default();
        checks.set_mode(ChecksMode::Disable, Some(&types(&["web", "worker", "urgent", "mail"])));
        checks.set_mode(ChecksMode::Skip, Some(&types(&["urgent", "worker"])));
        assert_eq!(ChecksConfig::shown_list(checks.disabled, &checks.disabled_processes), "web,mail");
        assert_eq!(ChecksConfig::shown_list(checks.skipped, &checks.skipped_processes), "urgent,worker");
        assert!(checks.disabled_for("web") && !checks.skipped_for("web") && checks.skipped_for("worker") && !checks.disabled_for("clock"));
        checks.set_mode(ChecksMode::Enable, Some(&types(&["web"])));
        assert!(!checks.disabled_for("web") && checks.disabled_for("mail"));
        checks.set_mode(ChecksMode::Skip, None);
        assert_eq!(ChecksConfig::shown_list(checks.skipped, &checks.skipped_processes), "_all_");
        assert_eq!(ChecksConfig::shown_list(checks.disabled, &checks.disabled_processes), "none");
        checks.set_mode(ChecksMode::Enable, None);
        assert!(!checks.skipped_for("web") && !checks.disabled_for("web"));
    }
}
