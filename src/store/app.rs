//! One app's state: `apps/<app>/app.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::PortMap;

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
    /// Proxy port mappings; empty means the default, `http:80:5000`.
    #[serde(default, with = "port_strings")]
    pub ports: Vec<PortMap>,
    /// The branch whose pushes deploy; None means `main` or `master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
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

/// `checks:*` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChecksConfig {
    /// No readiness checks, and old containers stop as soon as the new ones run.
    pub disabled: bool,
    /// No readiness checks; the swap is otherwise as usual.
    pub skipped: bool,
    /// Seconds a new container has to become ready.
    pub timeout: u64,
    /// Seconds old containers keep running after traffic has moved.
    pub wait_to_retire: u64,
    /// Bad answers (HTTP ≥ 500, wrong content) tolerated once the port accepts.
    pub attempts: u32,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { disabled: false, skipped: false, timeout: 60, wait_to_retire: 10, attempts: 5 }
    }
}

impl AppConfig {
    pub fn new() -> AppConfig {
        AppConfig { created_at: crate::unix_now(), keep_releases: DEFAULT_KEEP_RELEASES, ..AppConfig::default() }
    }

    /// Whether a push to `branch` deploys.
    pub fn deploys_branch(&self, branch: &str) -> bool {
        match &self.deploy_branch {
            Some(b) => b == branch,
            None => branch == "main" || branch == "master",
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_toml_round_trips() {
        let mut app = AppConfig::new();
        app.env.insert("GREETING".into(), "hello world\nsecond line \"quoted\"".into());
        app.domains.push("www.example.com".into());
        app.ports.push(crate::validate::port_map("https:443:5000").unwrap());
        let text = toml::to_string_pretty(&app).unwrap();
        assert!(text.contains("\"https:443:5000\""), "{text}");
        let back: AppConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, app);
    }

    #[test]
    fn default_port_mapping() {
        assert_eq!(AppConfig::new().effective_ports(), vec![PortMap::DEFAULT]);
    }
}
