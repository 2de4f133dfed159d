//! Git: each app's bare repository, its pre-receive hook, and turning a pushed commit into
//! a build context (a tar of the commit's tree).
//!
//! libgit2 has no server side: pushes are served by the real `git receive-pack`, whose
//! pre-receive hook is `berth git-hook APP`. In the hook, pushed objects are still in git's
//! quarantine, which only `Repository::open_from_env` sees.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the pushed tree is larger than {0} MiB (max_build_context_mb in berth.toml)")]
    TooLarge(u64),
    #[error("the pushed tree has no directory {0} (builder:set APP build-dir names it)")]
    NoBuildDir(String),
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

/// Writes the commit's tree as an uncompressed tar to `out`: files with their modes,
/// symlinks as symlinks; submodules are skipped (their commits are not in this
/// repository). Fails once the tar passes `limit` bytes.
fn write_tree(repo: &Repository, source: &Tree<'_>, scratch: &Path, out: impl Write, limit: u64) -> Result<(), GitError> {
    let (commit, subdir) = (source.commit, source.subdir);
    let mut tree = repo.find_commit(commit)?.tree()?;
    if let Some(dir) = subdir {
        let entry = tree.get_path(Path::new(dir)).map_err(|_| GitError::NoBuildDir(dir.to_string()))?;
        tree = entry.to_object(repo)?.into_tree().map_err(|_| GitError::NoBuildDir(dir.to_string()))?;
    }
    let mut builder = tar::Builder::new(Limited { inner: out, left: limit });
    let mut failure: Option<GitError> = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
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
    });
    // The callback's own error says more than git's "callback returned -7".
    if let Some(e) = failure {
        return Err(e);
    }
    walked?;
    if let (Some(branch), None) = (source.keep_git, subdir) {
        let kept = tempfile::Builder::new().prefix("context-git-").tempdir_in(scratch)?;
        git_dir(repo, commit, branch, kept.path())?;
        builder.append_dir_all(".git", kept.path().join(".git"))?;
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(())
}

/// A repository in `into` (its `.git`) whose branch `branch` is `commit`, checked out in
/// its index (not its work tree, which the build context is): the commit's history packed
/// from `repo`, which sees what the push brought.
fn git_dir(repo: &Repository, commit: Oid, branch: &str, into: &Path) -> Result<(), GitError> {
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head(branch).external_template(false);
    Repository::init_opts(into, &options)?;
    let mut walk = repo.revwalk()?;
    walk.push(commit)?;
    let mut pack = repo.packbuilder()?;
    pack.insert_walk(&mut walk)?;
    pack.write(&into.join(".git/objects/pack"), 0o644)?;
    // Opened again: the new pack is read when the repository is.
    let kept = Repository::open(into)?;
    kept.reference(&format!("refs/heads/{branch}"), commit, true, "berth: keep-git-dir")?;
    let mut index = kept.index()?;
    index.read_tree(&kept.find_commit(commit)?.tree()?)?;
    index.write()?;
    Ok(())
}

/// A writer that refuses to go past a size.
struct Limited<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "limit"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A build context on disk: the tar of one commit's tree, in `<root>/tmp`, removed when
/// dropped. Whatever is pushed, berth holds it in a file, never in memory.
#[derive(Debug)]
pub struct BuildContext {
    path: PathBuf,
}

/// Files a deploy reads from the context (Dockerfile, Procfile, app.json, …) are small;
/// a larger one is taken as absent.
const MAX_READ: u64 = 8 * 1024 * 1024;

/// What of a commit a build context holds: its tree, or its directory `subdir`
/// (`builder:set build-dir`); with `keep_git` (`git:set keep-git-dir true`), at the root
/// of a whole tree, a `.git` directory whose branch (the one named) is the commit.
#[derive(Debug, Clone, Copy)]
pub struct Tree<'a> {
    pub commit: Oid,
    pub subdir: Option<&'a str>,
    pub keep_git: Option<&'a str>,
}

impl Tree<'_> {
    pub fn whole(commit: Oid) -> Tree<'static> {
        Tree { commit, subdir: None, keep_git: None }
    }
}

impl BuildContext {
    /// Writes `source` to a new file in `dir`; a context over `limit_mb` MiB (the `.git`
    /// directory counts) is refused and nothing is left behind.
    pub fn write(repo: &Repository, source: &Tree<'_>, dir: &Path, limit_mb: u64) -> Result<BuildContext, GitError> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::Builder::new().prefix("context-").suffix(".tar").tempfile_in(dir)?;
        let context = BuildContext { path: file.path().to_path_buf() };
        let (handle, temp) = file.into_parts();
        temp.keep().map_err(|e| e.error)?;
        let written = write_tree(repo, source, dir, std::io::BufWriter::new(handle), limit_mb.saturating_mul(1024 * 1024));
        match written {
            Err(GitError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => Err(GitError::TooLarge(limit_mb)),
            Err(e) => Err(e),
            Ok(()) => Ok(context),
        }
    }

    /// Takes over a context file another process wrote (the hook), if it is one of berth's:
    /// a plain file directly in `dir`.
    pub fn adopt(path: &Path, dir: &Path) -> Option<BuildContext> {
        let name = path.file_name()?.to_str()?;
        let ours = path.parent() == Some(dir) && name.starts_with("context-") && name.ends_with(".tar");
        let plain = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        (ours && plain).then(|| BuildContext { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn entries<T>(&self, mut each: impl FnMut(&mut tar::Entry<'_, std::fs::File>, &str) -> Option<T>) -> Option<T> {
        let mut archive = tar::Archive::new(std::fs::File::open(&self.path).ok()?);
        for entry in archive.entries().ok()? {
            let mut entry = entry.ok()?;
            let path = entry.path().ok()?.to_string_lossy().trim_start_matches("./").to_string();
            if let Some(found) = each(&mut entry, &path) {
                return Some(found);
            }
        }
        None
    }

    /// One (small) file of the tree, if present.
    pub fn file(&self, wanted: &str) -> Option<Vec<u8>> {
        self.entries(|entry, path| {
            if path != wanted || !entry.header().entry_type().is_file() || entry.size() > MAX_READ {
                return None;
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(entry, &mut data).ok()?;
            Some(data)
        })
    }

    /// The paths of the tree's regular files.
    pub fn paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        self.entries::<()>(|entry, path| {
            if entry.header().entry_type().is_file() {
                paths.push(path.to_string());
            }
            None
        });
        paths
    }
}

impl Drop for BuildContext {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

        let tmp = tempfile::tempdir().unwrap();
        let context = BuildContext::write(&repo, &Tree::whole(commit), tmp.path(), 1).unwrap();
        assert_eq!(context.file("Dockerfile").unwrap(), b"FROM scratch\n");
        let mut paths = context.paths();
        paths.sort();
        assert_eq!(paths, vec!["Dockerfile", "bin/run"]);
        let tar = std::fs::read(context.path()).unwrap();
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
        // keep-git-dir: a .git whose branch is the commit; not under a build-dir's root;
        // nothing of the scratch repository stays behind.
        let kept = BuildContext::write(&repo, &Tree { keep_git: Some("main"), ..Tree::whole(commit) }, tmp.path(), 1).unwrap();
        assert_eq!(kept.file(".git/HEAD").unwrap(), b"ref: refs/heads/main\n");
        assert_eq!(kept.file(".git/refs/heads/main").unwrap(), format!("{commit}\n").into_bytes());
        let sub = BuildContext::write(&repo, &Tree { commit, subdir: Some("bin"), keep_git: Some("main") }, tmp.path(), 1).unwrap();
        assert_eq!(sub.paths(), vec!["run"]);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
        assert!(left.is_empty(), "{left:?}");
        drop((kept, sub));
        // Adopted only from its own directory; removed when dropped.
        let path = context.path().to_path_buf();
        assert!(BuildContext::adopt(&path, std::path::Path::new("/elsewhere")).is_none());
        drop(context);
        assert!(!path.exists());

        // Over the limit: refused, and nothing left behind.
        std::fs::write(dir.path().join("big"), vec![b'x'; 2 * 1024 * 1024]).unwrap();
        let mut index = repo.index().unwrap();
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let big = repo.commit(None, &sig, &sig, "big", &tree, &[]).unwrap();
        let refused = BuildContext::write(&repo, &Tree::whole(big), tmp.path(), 1).unwrap_err();
        assert!(matches!(refused, GitError::TooLarge(1)), "{refused}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
