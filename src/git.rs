//! Git: each app's bare repository, its pre-receive hook, and turning a pushed commit into
//! a build context (a tar of the commit's tree).
//!
//! libgit2 has no server side: pushes are served by the real `git receive-pack`, whose
//! pre-receive hook is `berth git-hook APP`. In the hook, pushed objects are still in git's
//! quarantine, which only `Repository::open_from_env` sees.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Creates the bare repository if needed and (re)writes its hook to call this binary.
pub fn ensure_repo(repo_dir: &Path, berth_exe: &Path, root: &Path, app: &str) -> Result<(), GitError> {
    if !repo_dir.join("HEAD").exists() {
        let mut options = git2::RepositoryInitOptions::new();
        options.bare(true).initial_head("main");
        Repository::init_opts(repo_dir, &options)?;
    }
    let hook = format!(
        "#!/bin/sh\n# berth: deploys pushes to the deploy branch. Written by berth.\nexec {} --root {} git-hook {}\n",
        shell_words::quote(&berth_exe.to_string_lossy()),
        shell_words::quote(&root.to_string_lossy()),
        shell_words::quote(app),
    );
    let path = repo_dir.join("hooks").join("pre-receive");
    std::fs::create_dir_all(repo_dir.join("hooks"))?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(hook.as_str()) {
        crate::store::write_atomic(&path, hook.as_bytes(), 0o755)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The commit's tree as an uncompressed tar: files with their modes, symlinks as symlinks.
/// Submodules are skipped (their commits are not in this repository).
pub fn tar_commit(repo: &Repository, commit: Oid) -> Result<Vec<u8>, GitError> {
    let tree = repo.find_commit(commit)?.tree()?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut failure: Option<GitError> = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = match entry.name() {
            Ok(name) => format!("{dir}{name}"),
            Err(_) => return TreeWalkResult::Skip,
        };
        let result = (|| -> Result<(), GitError> {
            match entry.kind() {
                Some(ObjectType::Blob) => {
                    let blob = repo.find_blob(entry.id())?;
                    let mut header = tar::Header::new_gnu();
                    header.set_mtime(0);
                    match entry.filemode() {
                        0o120000 => {
                            header.set_entry_type(tar::EntryType::Symlink);
                            header.set_size(0);
                            header.set_mode(0o777);
                            let target = String::from_utf8_lossy(blob.content()).into_owned();
                            builder.append_link(&mut header, &name, target)?;
                        }
                        mode => {
                            header.set_entry_type(tar::EntryType::Regular);
                            header.set_size(blob.content().len() as u64);
                            header.set_mode(if mode == 0o100755 { 0o755 } else { 0o644 });
                            builder.append_data(&mut header, &name, blob.content())?;
                        }
                    }
                }
                Some(ObjectType::Tree) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_mtime(0);
                    builder.append_data(&mut header, format!("{name}/"), std::io::empty())?;
                }
                _ => {} // 0o160000 submodule: a commit of another repository
            }
            Ok(())
        })();
        match result {
            Ok(()) => TreeWalkResult::Ok,
            Err(e) => {
                failure = Some(e);
                TreeWalkResult::Abort
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut bytes = builder.into_inner()?;
    bytes.flush()?;
    Ok(bytes)
}

/// One file from a build context tar, if present.
pub fn file_in_tar(tar: &[u8], wanted: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().trim_start_matches("./").to_string();
        if path == wanted && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).ok()?;
            return Some(data);
        }
    }
    None
}

/// The paths of the regular files in a build context tar.
pub fn paths_in_tar(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.header().entry_type().is_file())
        .filter_map(|e| e.path().ok().map(|p| p.to_string_lossy().trim_start_matches("./").to_string()))
        .collect()
}

/// The commit a branch points to in the app's repository (outside any push).
pub fn branch_head(repo_dir: &Path, branch: &str) -> Result<Option<Oid>, GitError> {
    let repo = Repository::open_bare(repo_dir)?;
    match repo.find_reference(&format!("refs/heads/{branch}")) {
        Ok(reference) => Ok(reference.target()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether nothing was ever pushed to the repository (it has no refs).
pub fn is_empty_repo(repo_dir: &Path) -> Result<bool, GitError> {
    let repo = Repository::open_bare(repo_dir)?;
    Ok(repo.references()?.next().is_none())
}

/// Branch names `git:set deploy-branch` accepts: a safe subset of git's ref rules.
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with(".lock")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["main", "master", "release/v1", "feature-x", "v1.2"] {
            assert!(valid_branch(ok), "{ok}");
        }
        for bad in ["", "-x", "a..b", "a b", "/x", "x/", "x.lock", "a;b", "refs//x"] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }

    #[test]
    fn tars_a_commit_with_modes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.path().join("bin/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("bin/run", dir.path().join("start")).unwrap();
        let mut index = repo.index().unwrap();
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let commit = repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &[]).unwrap();

        let tar = tar_commit(&repo, commit).unwrap();
        assert_eq!(file_in_tar(&tar, "Dockerfile").unwrap(), b"FROM scratch\n");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            seen.push((path, mode, link));
        }
        assert!(seen.contains(&("bin/run".into(), 0o755, None)), "{seen:?}");
        assert!(seen.contains(&("Dockerfile".into(), 0o644, None)), "{seen:?}");
        assert!(seen.contains(&("start".into(), 0o777, Some("bin/run".into()))), "{seen:?}");
    }
}
