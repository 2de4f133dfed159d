//! A container's CPU and memory, read from its cgroup's files (what `docker stats` reads,
//! without asking the engine: one scrape reads a few small files per container). cgroup v2
//! and v1, with the engine's cgroupfs driver (`docker/ID`) or systemd's
//! (`system.slice/docker-ID.scope`).

use std::path::{Path, PathBuf};

/// What a container has used: CPU seconds since it started, and memory now (its usage less
/// the page cache it could drop at once, as `docker stats` shows it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a container's cgroup may be, under one hierarchy's directory.
fn places(hierarchy: &Path, id: &str) -> [PathBuf; 2] {
    [hierarchy.join("docker").join(id), hierarchy.join("system.slice").join(format!("docker-{id}.scope"))]
}

/// The container's usage, or None when its cgroup is not found (it stopped, or the engine
/// keeps its cgroups elsewhere).
pub fn usage(id: &str) -> Option<Usage> {
    usage_under(Path::new(CGROUP_ROOT), id)
}

fn usage_under(root: &Path, id: &str) -> Option<Usage> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.is_empty() {
        return None;
    }
    // cgroup v2: one directory with both.
    for dir in places(root, id) {
        if let Ok(stat) = std::fs::read_to_string(dir.join("cpu.stat")) {
            let cpu_seconds = field(&stat, "usage_usec")? as f64 / 1e6;
            let current: u64 = std::fs::read_to_string(dir.join("memory.current")).ok()?.trim().parse().ok()?;
            let inactive = std::fs::read_to_string(dir.join("memory.stat")).ok().and_then(|s| field(&s, "inactive_file")).unwrap_or(0);
            return Some(Usage { cpu_seconds, memory_bytes: current.saturating_sub(inactive) });
        }
    }
    // cgroup v1: a hierarchy per controller.
    let cpu = places(&root.join("cpuacct"), id).into_iter().find_map(|d| std::fs::read_to_string(d.join("cpuacct.usage")).ok())?;
    let memory = places(&root.join("memory"), id).into_iter().find(|d| d.join("memory.usage_in_bytes").exists())?;
    let usage: u64 = std::fs::read_to_string(memory.join("memory.usage_in_bytes")).ok()?.trim().parse().ok()?;
    let inactive = std::fs::read_to_string(memory.join("memory.stat")).ok().and_then(|s| field(&s, "total_inactive_file")).unwrap_or(0);
    Some(Usage { cpu_seconds: cpu.trim().parse::<u64>().ok()? as f64 / 1e9, memory_bytes: usage.saturating_sub(inactive) })
}

/// The value of `key` in a `KEY VALUE` per line file (cpu.stat, memory.stat).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_cgroup_v2_under_systemd() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system.slice/docker-abc123.scope");
        write(&dir.join("cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\n");
        write(&dir.join("memory.current"), "10485760\n");
        write(&dir.join("memory.stat"), "anon 1\ninactive_file 4194304\nactive_file 2\n");
        assert_eq!(usage_under(root.path(), "abc123"), Some(Usage { cpu_seconds: 2.5, memory_bytes: 6 * 1024 * 1024 }));
    }

    #[test]
    fn reads_cgroup_v1_with_cgroupfs() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("cpuacct/docker/abc/cpuacct.usage"), "1500000000\n");
        write(&root.path().join("memory/docker/abc/memory.usage_in_bytes"), "3000\n");
        write(&root.path().join("memory/docker/abc/memory.stat"), "cache 5\ntotal_inactive_file 1000\n");
        assert_eq!(usage_under(root.path(), "abc"), Some(Usage { cpu_seconds: 1.5, memory_bytes: 2000 }));
    }

    #[test]
    fn a_missing_cgroup_or_an_id_that_is_not_one_is_none() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(usage_under(root.path(), "abc"), None);
        write(&root.path().join("cpuacct/docker/x/cpuacct.usage"), "1\n");
        assert_eq!(usage_under(root.path(), "../x"), None);
        assert_eq!(usage_under(root.path(), ""), None);
    }
}
