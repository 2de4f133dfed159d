//! An app's release history: `apps/<app>/releases.toml`.
//!
//! A release is what runs: an image, the env it runs with, and where it came from. Every
//! deploy, config change and restart makes a new one; at most one is `active`. The history
//! is bounded ([`Releases::compact`]): releases whose image is gone keep only what they were
//! (version, image, commit, cause, status), and at most [`MAX_RELEASES`] stay in the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::app_json::{CheckSpec, CronJob};

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
    /// The key whose push or command made it (`root` on the server itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deployed_by: String,
    pub created_at: u64,
    pub status: Status,
    /// The env the containers get (config snapshot; PORT is added at start).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Readiness checks from the app's app.json at that commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// app.json's `cron` entries: the jobs the scheduler runs while this release is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cron: Vec<CronJob>,
    /// Containers per process type it was released with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formation: BTreeMap<String, u32>,
    /// A push's release that serves while git has not yet moved the branch to `git_sha`
    /// (git moves it only after the pre-receive hook succeeds). Cleared once the branch
    /// points at it; a crash in between is resolved at start: the branch is the truth.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ref_pending: bool,
    /// History only: its image is no longer kept, and its env, checks, processes, scripts
    /// and formation were dropped to keep the file small. It cannot be rolled back to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

/// The most releases an app's `releases.toml` holds; older ones are dropped by
/// [`Releases::compact`]. Versions are never reused: the newest release always stays.
pub const MAX_RELEASES: usize = 100;

/// A release history that cannot be true: the file was damaged or edited by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Implausible {
    #[error("a release has version 0 (versions start at 1)")]
    VersionZero,
    #[error("v{0} is listed more than once")]
    Duplicate(u32),
    #[error("v{0} and v{1} are both active (one release serves at a time)")]
    TwoActive(u32, u32),
    #[error("v{0} names no image")]
    NoImage(u32),
    #[error("v{0} names no image tag")]
    NoImageTag(u32),
}

/// Why a release cannot be rolled back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRollback {
    /// No target given and no release served before the active one.
    NoEarlier,
    Missing(u32),
    /// It never served.
    Failed(u32),
    /// Its image and env are no longer kept.
    Compacted(u32),
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
    /// Built and not deployed (`ps:set skip-deploy true`): `releases:rollback APP vN`
    /// deploys it.
    Built,
}

impl Releases {
    pub fn active(&self) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.status == Status::Active)
    }

    /// One more than the highest version ever kept. [`Releases::compact`] never drops the
    /// newest release, so a version is never given twice.
    pub fn next_version(&self) -> u32 {
        self.releases.iter().map(|r| r.version).max().unwrap_or(0) + 1
    }

    /// What makes a history impossible: a version 0 or twice, two active releases, a release
    /// without its image. Pure: the store runs it on every read and write.
    pub fn check(&self) -> Result<(), Implausible> {
        let mut seen = std::collections::BTreeSet::new();
        let mut active = None;
        for r in &self.releases {
            if r.version == 0 {
                return Err(Implausible::VersionZero);
            }
            if !seen.insert(r.version) {
                return Err(Implausible::Duplicate(r.version));
            }
            if r.image.trim().is_empty() {
                return Err(Implausible::NoImage(r.version));
            }
            if r.image_tag.trim().is_empty() {
                return Err(Implausible::NoImageTag(r.version));
            }
            if r.status == Status::Active {
                if let Some(first) = active {
                    return Err(Implausible::TwoActive(first, r.version));
                }
                active = Some(r.version);
            }
        }
        Ok(())
    }

    /// Image tags kept for rollbacks: the active release's, and those of the newest `keep`
    /// served (or built, not yet deployed) images (at least the active one). Images are counted, not releases: a restart
    /// or config change reuses its release's image.
    fn kept_tags(&self, keep: u32) -> Vec<&str> {
        let mut kept: Vec<&str> = Vec::new();
        for r in self.releases.iter().rev() {
            let keep_it = r.status == Status::Active || (matches!(r.status, Status::Superseded | Status::Built) && kept.len() < keep.max(1) as usize);
            if keep_it && !kept.contains(&r.image_tag.as_str()) {
                kept.push(&r.image_tag);
            }
        }
        kept
    }

    /// Image tags no longer needed: failed releases', and those of serving releases beyond
    /// the newest `keep` (the active one always stays). Pure.
    pub fn images_to_prune(&self, keep: u32) -> Vec<String> {
        let kept = self.kept_tags(keep);
        // By tag: restarts and rollbacks share one with the release they reuse.
        let mut prune: Vec<String> = self.releases.iter().filter(|r| !kept.contains(&r.image_tag.as_str())).map(|r| r.image_tag.clone()).collect();
        prune.sort();
        prune.dedup();
        prune
    }

    /// Keeps the history bounded. A release that is not active and whose image is not kept
    /// (the rule of [`Releases::images_to_prune`]), or that failed, keeps only what it was: its
    /// env, checks, processes, scripts and formation go and it is marked `compacted`. Then at
    /// most [`MAX_RELEASES`] stay: the oldest compacted ones go first, then the oldest others;
    /// never the active one, never the newest (so no version is given twice).
    ///
    /// Returns the image tags of dropped releases that no release left names: remove them
    /// with `images_to_prune`'s, or nothing would ever remove them. Most are pruned anyway; a
    /// kept image is among them only when the newest 100 releases are all kept ones (many
    /// restarts or config changes of newer images). Pure.
    #[must_use = "images of dropped releases must be removed with the pruned ones"]
    pub fn compact(&mut self, keep: u32) -> Vec<String> {
        let kept: Vec<String> = self.kept_tags(keep).into_iter().map(String::from).collect();
        for r in &mut self.releases {
            if r.status != Status::Active && (r.status == Status::Failed || !kept.contains(&r.image_tag)) {
                r.compacted = true;
                r.env.clear();
                r.checks.clear();
                r.processes.clear();
                r.predeploy = None;
                r.postdeploy = None;
                r.formation.clear();
            }
        }
        let excess = self.releases.len().saturating_sub(MAX_RELEASES);
        if excess == 0 {
            return Vec::new();
        }
        let newest = self.releases.iter().map(|r| r.version).max().unwrap_or(0);
        // Compacted before kept (false sorts first), oldest first within each.
        let mut candidates: Vec<(bool, u32)> =
            self.releases.iter().filter(|r| r.status != Status::Active && r.version != newest).map(|r| (!r.compacted, r.version)).collect();
        candidates.sort_unstable();
        let dropped: Vec<u32> = candidates.into_iter().take(excess).map(|(_, v)| v).collect();
        let mut gone: Vec<String> = Vec::new();
        self.releases.retain(|r| {
            let drop = dropped.contains(&r.version);
            if drop {
                gone.push(r.image_tag.clone());
            }
            !drop
        });
        gone.retain(|t| !self.releases.iter().any(|r| &r.image_tag == t));
        gone.sort();
        gone.dedup();
        gone
    }

    /// The release `releases:rollback` serves again: `version`, or without one the release
    /// that served before the active one. Pure.
    pub fn rollback_target(&self, version: Option<u32>) -> Result<&Release, NoRollback> {
        let release = match version {
            Some(v) => self.releases.iter().find(|r| r.version == v).ok_or(NoRollback::Missing(v))?,
            None => {
                let active = self.active().map(|r| r.version).unwrap_or(0);
                self.releases.iter().rev().find(|r| r.status == Status::Superseded && r.version < active).ok_or(NoRollback::NoEarlier)?
            }
        };
        if release.status == Status::Failed {
            return Err(NoRollback::Failed(release.version));
        }
        if release.compacted {
            return Err(NoRollback::Compacted(release.version));
        }
        Ok(release)
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
            deployed_by: "admin".into(),
            created_at: 1,
            status,
            env: BTreeMap::new(),
            checks: Vec::new(),
            processes: BTreeMap::new(),
            launcher: false,
            predeploy: None,
            postdeploy: None,
            cron: Vec::new(),
            formation: BTreeMap::new(),
            ref_pending: false,
            compacted: false,
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

    fn full(mut r: Release) -> Release {
        r.env.insert("SECRET".into(), "x".repeat(100));
        r.processes.insert("worker".into(), "w".into());
        r.formation.insert("web".into(), 1);
        r.predeploy = Some("./pre".into());
        r
    }

    #[test]
    fn an_implausible_history_is_named() {
        let ok = Releases { releases: vec![release(1, Status::Superseded), release(2, Status::Active)] };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(Releases::default().check(), Ok(()));
        let dup = Releases { releases: vec![release(1, Status::Superseded), release(2, Status::Failed), release(2, Status::Active)] };
        assert_eq!(dup.check(), Err(Implausible::Duplicate(2)));
        let two = Releases { releases: vec![release(1, Status::Active), release(2, Status::Superseded), release(3, Status::Active)] };
        assert_eq!(two.check(), Err(Implausible::TwoActive(1, 3)));
        assert_eq!(two.check().unwrap_err().to_string(), "v1 and v3 are both active (one release serves at a time)");
        let zero = Releases { releases: vec![release(0, Status::Active)] };
        assert_eq!(zero.check(), Err(Implausible::VersionZero));
        let mut no_image = Releases { releases: vec![release(1, Status::Active)] };
        no_image.releases[0].image = String::new();
        assert_eq!(no_image.check(), Err(Implausible::NoImage(1)));
        let mut no_tag = Releases { releases: vec![release(1, Status::Active)] };
        no_tag.releases[0].image_tag = " ".into();
        assert_eq!(no_tag.check(), Err(Implausible::NoImageTag(1)));
    }

    #[test]
    fn compaction_keeps_what_rollback_needs() {
        // v1..v8 pushes (v7 failed), v9 a config change of v8 (same image), active.
        let mut releases: Vec<Release> = (1..=9).map(|v| full(release(v, Status::Superseded))).collect();
        releases[6].status = Status::Failed;
        releases[8].image_tag = releases[7].image_tag.clone();
        releases[8].status = Status::Active;
        let mut r = Releases { releases };
        let prune = r.images_to_prune(3);
        assert!(r.compact(3).is_empty());
        let compacted: Vec<u32> = r.releases.iter().filter(|r| r.compacted).map(|r| r.version).collect();
        // Kept images: v9/v8's, v6's, v5's. Everything else, and the failed v7, is history.
        assert_eq!(compacted, vec![1, 2, 3, 4, 7]);
        for release in &r.releases {
            assert_eq!(release.compacted, prune.contains(&release.image_tag) || release.status == Status::Failed, "v{}", release.version);
            if release.compacted {
                assert!(release.env.is_empty() && release.processes.is_empty() && release.formation.is_empty() && release.predeploy.is_none());
                assert!(!release.image.is_empty() && !release.git_sha.is_empty(), "what it was stays");
            } else {
                assert_eq!(release.env["SECRET"].len(), 100, "v{} keeps its env", release.version);
                assert_eq!(release.processes.len(), 1);
            }
        }
        // The release before the active one is a rollback target; a compacted one is refused.
        assert_eq!(r.rollback_target(None).unwrap().version, 8);
        assert_eq!(r.rollback_target(Some(5)).unwrap().env["SECRET"].len(), 100);
        assert_eq!(r.rollback_target(Some(4)).unwrap_err(), NoRollback::Compacted(4));
        assert_eq!(r.rollback_target(Some(7)).unwrap_err(), NoRollback::Failed(7));
        assert_eq!(r.rollback_target(Some(42)).unwrap_err(), NoRollback::Missing(42));
        assert_eq!(r.active().unwrap().version, 9);
        assert_eq!(r.next_version(), 10);
        // It survives the file, and again compaction changes nothing.
        let text = toml::to_string_pretty(&r).unwrap();
        assert_eq!(text.matches("compacted = true").count(), 5, "{text}");
        let back: Releases = toml::from_str(&text).unwrap();
        assert_eq!(back, r);
        let small = toml::to_string_pretty(&Releases { releases: vec![r.releases[0].clone()] }).unwrap();
        assert!(!small.contains("env") && !small.contains("checks") && !small.contains("formation"), "{small}");
        let mut again = back.clone();
        assert!(again.compact(3).is_empty());
        assert_eq!(again, back);
    }

    #[test]
    fn the_active_release_is_never_compacted_even_when_old() {
        // v1 serves; v2..v4 failed pushes after it.
        let mut r = Releases { releases: vec![full(release(1, Status::Active))] };
        r.releases.extend((2..=4).map(|v| full(release(v, Status::Failed))));
        assert!(r.compact(1).is_empty());
        assert!(!r.releases[0].compacted && !r.releases[0].env.is_empty());
        assert!(r.releases[1..].iter().all(|r| r.compacted));
        assert_eq!(r.rollback_target(None).unwrap_err(), NoRollback::NoEarlier);
    }

    #[test]
    fn at_most_a_hundred_releases_stay_and_versions_are_not_reused() {
        // v1 served long ago and is kept (its image is one of the newest 5); 150 failed pushes
        // since, then v152 served: the previous active, v1, is a rollback target.
        let mut releases = vec![full(release(1, Status::Superseded))];
        releases.extend((2..=151).map(|v| full(release(v, Status::Failed))));
        releases.push(full(release(152, Status::Active)));
        let mut r = Releases { releases };
        let prune = r.images_to_prune(5);
        let gone = r.compact(5);
        assert_eq!(gone.len(), 52);
        assert!(gone.iter().all(|t| prune.contains(t)), "only compacted releases went: their images are pruned anyway");
        assert_eq!(r.releases.len(), MAX_RELEASES);
        assert_eq!(r.releases[0].version, 1, "the rollback target stays");
        assert_eq!(r.releases[1].version, 54, "the oldest failed ones went");
        assert_eq!(r.next_version(), 153);
        assert_eq!(r.rollback_target(None).unwrap().version, 1);
        assert_eq!(r.check(), Ok(()));

        // The newest is kept even when it is a compacted failure: its version is not given again.
        let mut releases: Vec<Release> = (1..=120).map(|v| full(release(v, Status::Superseded))).collect();
        for r in &mut releases {
            r.image_tag = "berth/app:v1".into(); // restarts of one image: all kept
        }
        releases[0].status = Status::Active;
        releases.push(full(release(121, Status::Failed)));
        let mut r = Releases { releases };
        let gone = r.compact(5);
        assert_eq!(r.releases.len(), MAX_RELEASES);
        assert!(gone.is_empty(), "the image is still named: {gone:?}");
        assert_eq!(r.releases[0].version, 1, "the active release stays");
        assert_eq!(r.releases[1].version, 23, "the oldest others went");
        assert_eq!(r.releases.last().unwrap().version, 121);
        assert_eq!(r.next_version(), 122);
    }

    #[test]
    fn dropped_releases_hand_back_the_images_no_one_names() {
        // v1 (own image, kept) and 110 restarts of v2's image, the last one active.
        let mut releases = vec![release(1, Status::Superseded)];
        releases.extend((2..=111).map(|v| {
            let mut r = release(v, Status::Superseded);
            r.image_tag = "berth/app:v2".into();
            r
        }));
        releases.last_mut().unwrap().status = Status::Active;
        let mut r = Releases { releases };
        assert!(r.images_to_prune(5).is_empty());
        assert_eq!(r.compact(5), vec!["berth/app:v1".to_string()]);
        assert_eq!(r.releases.len(), MAX_RELEASES);
        assert_eq!(r.releases[0].version, 12);
        assert_eq!(r.next_version(), 112);
    }
}
