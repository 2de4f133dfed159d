//! An app's release history: `apps/<app>/releases.toml`.
//!
//! A release is what runs: an image, the env it runs with, and where it came from. Every
//! deploy, config change and restart makes a new one; at most one is `active`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checks::CheckSpec;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Releases {
    #[serde(default, rename = "release")]
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub version: u32,
    /// Image id (`sha256:…`) and the tag berth gave it.
    pub image: String,
    pub image_tag: String,
    pub git_sha: String,
    /// Why it was made: `git push`, `config:set`, `ps:restart`, `ps:rebuild`.
    pub cause: String,
    pub created_at: u64,
    pub status: Status,
    /// The env the containers get (config snapshot; PORT is added at start).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Readiness checks from the app's app.json at that commit.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Process types and their commands: the Procfile's, plus buildpack defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, String>,
    /// The image starts processes through `berth-launch TYPE` (buildpack builds).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub launcher: bool,
    /// app.json `scripts.dokku.predeploy` / `postdeploy` at that commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predeploy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postdeploy: Option<String>,
    /// Containers per process type it was released with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formation: BTreeMap<String, u32>,
    /// A push's release that serves while git has not yet moved the branch to `git_sha`
    /// (git moves it only after the pre-receive hook succeeds). Cleared once the branch
    /// points at it; a crash in between is resolved at start: the branch is the truth.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ref_pending: bool,
}

/// What buildpack-built images start with: berth's launcher (sources .profile.d first).
pub const LAUNCHER: &str = "/usr/local/bin/berth-launch";

impl Release {
    /// The process types it can run. An image not built by buildpacks always has `web`
    /// (its own CMD) even without a Procfile entry.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.processes.keys().filter(|t| *t != crate::process::RELEASE_TYPE).cloned().collect();
        if !self.launcher && !types.iter().any(|t| t == crate::process::WEB) {
            types.push(crate::process::WEB.into());
        }
        types
    }

    /// The containers per type it runs: its own formation, or for a release recorded before
    /// formations were, what `scale` makes of its types.
    pub fn formation_or(&self, scale: &BTreeMap<String, u32>) -> Vec<(String, u32)> {
        if self.formation.is_empty() {
            crate::process::formation(scale, &self.types())
        } else {
            self.formation.iter().map(|(t, n)| (t.clone(), *n)).collect()
        }
    }

    /// The command a container of `process` runs; None: the image's own CMD. Procfile
    /// commands of Dockerfile images are split into words, as dokku does (no shell).
    pub fn command(&self, process: &str) -> Option<Vec<String>> {
        if self.launcher {
            return Some(vec![LAUNCHER.into(), process.into()]);
        }
        self.processes.get(process).map(|line| shell_words::split(line).unwrap_or_else(|_| vec![line.clone()]))
    }

    /// A one-off command in this release's image, as `run` and the deploy scripts run it:
    /// through the launcher for buildpack images, so .profile.d applies.
    pub fn one_off(&self, command: Vec<String>) -> Vec<String> {
        if self.launcher {
            let mut wrapped = vec![LAUNCHER.to_string(), "--run".to_string()];
            wrapped.extend(command);
            wrapped
        } else {
            command
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Serving traffic.
    Active,
    /// Served before; replaced by a newer release.
    Superseded,
    /// Never served: the build, start or checks failed.
    Failed,
}

impl Releases {
    pub fn active(&self) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.status == Status::Active)
    }

    pub fn next_version(&self) -> u32 {
        self.releases.iter().map(|r| r.version).max().unwrap_or(0) + 1
    }

    /// Image tags no longer needed: failed releases', and those of serving releases beyond
    /// the newest `keep` (the active one always stays). Pure.
    pub fn images_to_prune(&self, keep: u32) -> Vec<String> {
        let mut kept = 0;
        let mut prune = Vec::new();
        let mut keep_tags = Vec::new();
        for r in self.releases.iter().rev() {
            let keep_it = r.status == Status::Active || (r.status == Status::Superseded && kept < keep.max(1));
            if r.status != Status::Failed && keep_it {
                // Images are counted, not releases: a restart reuses its release's image.
                if !keep_tags.contains(&r.image_tag) {
                    kept += 1;
                    keep_tags.push(r.image_tag.clone());
                }
            } else {
                prune.push(r.image_tag.clone());
            }
        }
        // Restarts and rollbacks share a tag with the release they reuse.
        prune.retain(|t| !keep_tags.contains(t));
        prune.sort();
        prune.dedup();
        prune
    }

    /// Marks `version` active and the previous active release superseded.
    pub fn activate(&mut self, version: u32) {
        for r in &mut self.releases {
            if r.version == version {
                r.status = Status::Active;
            } else if r.status == Status::Active {
                r.status = Status::Superseded;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: u32, status: Status) -> Release {
        Release {
            version,
            image: format!("sha256:{version}"),
            image_tag: format!("berth/app:v{version}"),
            git_sha: "abc".into(),
            cause: "git push".into(),
            created_at: 1,
            status,
            env: BTreeMap::new(),
            checks: Vec::new(),
            processes: BTreeMap::new(),
            launcher: false,
            predeploy: None,
            postdeploy: None,
            formation: BTreeMap::new(),
            ref_pending: false,
        }
    }

    #[test]
    fn prunes_failed_and_old_images_but_keeps_shared_tags() {
        let mut releases: Vec<Release> = (1..=8).map(|v| release(v, Status::Superseded)).collect();
        releases[7].status = Status::Active;
        releases[6].status = Status::Failed;
        // v6 was a restart of v5: same image tag.
        releases[5].image_tag = releases[4].image_tag.clone();
        let r = Releases { releases };
        let prune = r.images_to_prune(3);
        // Kept: v8 (active), v6, v5 (shared tag), v4. Pruned: v7 (failed), v3, v2, v1.
        assert_eq!(prune, vec!["berth/app:v1", "berth/app:v2", "berth/app:v3", "berth/app:v7"]);
    }

    #[test]
    fn process_commands() {
        let mut r = release(1, Status::Active);
        assert_eq!(r.types(), vec!["web"]);
        assert_eq!(r.command("web"), None);
        r.processes.insert("worker".into(), "python worker.py --queue 'a b'".into());
        r.processes.insert("release".into(), "./migrate".into());
        assert_eq!(r.types(), vec!["worker", "web"]);
        assert_eq!(r.command("worker").unwrap(), vec!["python", "worker.py", "--queue", "a b"]);
        assert_eq!(r.one_off(vec!["ls".into()]), vec!["ls"]);
        r.launcher = true;
        r.processes.remove("release");
        assert_eq!(r.types(), vec!["worker"]);
        assert_eq!(r.command("worker").unwrap(), vec![LAUNCHER, "worker"]);
        assert_eq!(r.one_off(vec!["ls".into()]), vec![LAUNCHER, "--run", "ls"]);
    }

    #[test]
    fn a_recorded_formation_wins_over_the_scale_setting() {
        let mut r = release(1, Status::Active);
        r.processes.insert("worker".into(), "w".into());
        let scale = BTreeMap::from([("worker".to_string(), 2)]);
        assert_eq!(r.formation_or(&scale), vec![("web".into(), 1), ("worker".into(), 2)]);
        r.formation = BTreeMap::from([("web".to_string(), 3)]);
        assert_eq!(r.formation_or(&scale), vec![("web".into(), 3)]);
    }

    #[test]
    fn activation_supersedes_the_previous_release() {
        let mut r = Releases { releases: vec![release(1, Status::Active), release(2, Status::Failed), release(3, Status::Failed)] };
        assert_eq!(r.active().unwrap().version, 1);
        assert_eq!(r.next_version(), 4);
        r.activate(3);
        assert_eq!(r.active().unwrap().version, 3);
        assert_eq!(r.releases[0].status, Status::Superseded);
        assert_eq!(r.releases[1].status, Status::Failed);
        let text = toml::to_string_pretty(&r).unwrap();
        assert_eq!(toml::from_str::<Releases>(&text).unwrap(), r);
    }
}
