//! Building apps without a Dockerfile: the Heroku buildpack API v2, run in a build
//! container of the stack image.
//!
//! berth's built-in buildpacks (buildpacks/) are compiled into the binary and written to
//! `<root>/buildpacks`; third-party ones are git repositories cloned under
//! `<root>/buildpacks-custom`. The driver script runs detect, compile and release in one
//! container; berth commits that container as the release image.

use crate::validate::Invalid;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::output::Output;
use crate::runtime::{OneShot, Runtime, RuntimeError};

pub use crate::runtime::STACK_IMAGE;
/// Debian's CA bundle (update-ca-certificates writes the host's added CAs into it).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const DRIVER: &str = include_str!("../buildpacks/driver.sh");

/// Built-in buildpacks in detection order: (name, detect, compile, release).
const BUILTINS: &[(&str, &str, &str, &str)] = &[builtin!("python"), builtin!("nodejs"), builtin!("go"), builtin!("static"), builtin!("procfile")];

macro_rules! builtin {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../buildpacks/", $name, "/bin/detect")),
            include_str!(concat!("../buildpacks/", $name, "/bin/compile")),
            include_str!(concat!("../buildpacks/", $name, "/bin/release")),
        )
    };
}
use builtin;

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.0).collect()
}

/// What berth looks for, for the "nothing to build" error.
pub const LOOKED_FOR: &str =
    "a Dockerfile, requirements.txt/pyproject.toml/setup.py (python), package.json (nodejs), go.mod (go), index.html (static) or a Procfile (procfile)";

/// Files that make an app a Python app (the python buildpack's detect).
const PYTHON_MARKERS: &[&str] = &["requirements.txt", "pyproject.toml", "setup.py"];
/// Modules that may hold a WSGI app object, most conventional first.
const WSGI_MODULES: &[&str] = &["wsgi", "app", "main", "application", "server"];

/// The python buildpack declares no default process: an app says how it starts in a
/// Procfile. Before building one without a Procfile, berth guesses the command where the
/// source makes it plain, or refuses at once, saying what to add, rather than after the
/// whole build. `file` reads a file of the pushed tree; `paths` lists them all.
/// `Ok(None)`: not a Python build, nothing to guess.
pub fn python_web(chosen: &[String], file: &dyn Fn(&str) -> Option<String>, paths: &[String]) -> Result<Option<String>, String> {
    let python_first = chosen.first().is_none_or(|b| b == "python");
    let markers: Vec<String> = PYTHON_MARKERS.iter().filter_map(|m| file(m)).collect();
    if !python_first || markers.is_empty() || file("Procfile").is_some() {
        return Ok(None);
    }
    let requirements = file("requirements.txt").unwrap_or_default();
    let has_gunicorn = requirements.lines().any(|l| {
        let name = l.trim().to_ascii_lowercase();
        name == "gunicorn" || name.strip_prefix("gunicorn").is_some_and(|rest| rest.starts_with(['=', '<', '>', '~', '!', '[', ' ', ';']))
    }) || markers.iter().any(|text| text.contains("\"gunicorn") || text.contains("'gunicorn"));
    if file("manage.py").is_some() {
        let projects: Vec<&str> = paths.iter().filter_map(|p| p.strip_suffix("/wsgi.py")).filter(|dir| !dir.contains('/')).collect();
        let project = match projects.as_slice() {
            [one] => *one,
            _ => return Err("No Procfile: add one with `web: gunicorn PROJECT.wsgi` (berth found manage.py but not one PROJECT/wsgi.py)".into()),
        };
        if !has_gunicorn {
            return Err(format!("No Procfile: add gunicorn to requirements.txt (berth then runs `gunicorn {project}.wsgi`) or a Procfile with `web: COMMAND`"));
        }
        return Ok(Some(format!("gunicorn {project}.wsgi")));
    }
    let module = WSGI_MODULES.iter().find_map(|m| {
        let text = file(&format!("{m}.py"))?;
        ["application", "app"].into_iter().find(|var| text.lines().any(|l| defines(l, var))).map(|var| format!("{m}:{var}"))
    });
    match (module, has_gunicorn) {
        (Some(target), true) => Ok(Some(format!("gunicorn {target}"))),
        (Some(target), false) => Err(format!("No Procfile: add gunicorn to requirements.txt (berth then runs `gunicorn {target}`) or a Procfile with `web: COMMAND`")),
        (None, _) => Err("No Procfile: add one saying how the app starts, e.g. `web: gunicorn app:app` (berth found no wsgi.py, app.py, main.py, application.py or server.py defining `app`)".into()),
    }
}

/// `line` assigns the module-level name `var` (`app = Flask(__name__)`).
fn defines(line: &str, var: &str) -> bool {
    line.strip_prefix(var).is_some_and(|rest| {
        let rest = rest.trim_start();
        (rest.starts_with('=') && !rest.starts_with("==")) || rest.starts_with(':')
    })
}

/// Writes the built-in buildpacks and the driver under `<root>/buildpacks`.
pub fn install_builtins(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join("buildpacks");
    for (name, detect, compile, release) in BUILTINS {
        let bin = dir.join(name).join("bin");
        std::fs::create_dir_all(&bin)?;
        for (file, text) in [("detect", detect), ("compile", compile), ("release", release)] {
            write_executable(&bin.join(file), text)?;
        }
    }
    write_executable(&dir.join("driver.sh"), DRIVER)?;
    Ok(dir)
}

fn write_executable(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        crate::store::write_atomic(path, text.as_bytes(), 0o755)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Whether a `buildpacks:add` value names a third-party buildpack (a URL) rather than a
/// built-in.
pub fn is_url(value: &str) -> bool {
    value.contains("://") || value.ends_with(".git") || value.contains('@') || value.starts_with('/')
}

/// A third-party buildpack: `https://HOST[:PORT]/PATH[#REF]`.
#[derive(Debug, PartialEq, Eq)]
pub struct RemoteBuildpack {
    /// The URL without the `#ref`.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub git_ref: Option<String>,
}

impl RemoteBuildpack {
    /// Only https, no credentials in the URL, a plain host name or address, a safe ref.
    pub fn parse(value: &str) -> Result<RemoteBuildpack, Invalid> {
        let bad = |why: &str| Invalid(format!("Buildpack {}: {why}", crate::validate::quoted(value)));
        let rest = value.strip_prefix("https://").ok_or_else(|| bad("only https:// git URLs are fetched (no file, ssh, http or local paths)"))?;
        if value.len() > 500 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("too long, or it has spaces"));
        }
        let (rest, git_ref) = match rest.split_once('#') {
            Some((rest, r)) if crate::git::valid_branch(r) => (rest, Some(r.to_string())),
            Some(_) => return Err(bad("the #ref is not a valid branch or tag name")),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no repository path"))?;
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not accepted"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, crate::validate::port(p).map_err(|_| bad("bad port"))?),
            None => (authority, 443),
        };
        if crate::validate::domain(host).is_err() && host.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(bad("the host is not a domain name or IPv4 address"));
        }
        if path.is_empty() || !path.chars().all(|c| c.is_ascii_alphanumeric() || "-._~/%+".contains(c)) || path.contains("..") {
            return Err(bad("the repository path has characters berth does not take"));
        }
        Ok(RemoteBuildpack { url: format!("https://{authority}/{path}"), host: host.to_ascii_lowercase(), port, git_ref })
    }

    /// Where it is kept: a directory named by a hash of the whole value (URL and ref).
    fn dir_name(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}#{}", self.url, self.git_ref.as_deref().unwrap_or("")).as_bytes());
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }
}

/// A `buildpacks:add` value as berth keeps it: a built-in name, an https git URL, or
/// Heroku's shorthand `ORG/NAME` for `https://github.com/ORG/heroku-buildpack-NAME.git`
/// (`heroku-community/NAME` is under `heroku`), as Heroku and dokku read it.
pub fn normalize(value: &str) -> Result<String, Invalid> {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if let Some((org, name)) = value.split_once('/')
        && word(org)
        && word(name)
    {
        let org = if org == "heroku-community" { "heroku" } else { org };
        return Ok(format!("https://github.com/{org}/heroku-buildpack-{name}.git"));
    }
    validate(value)?;
    Ok(value.to_string())
}

/// Checks a `buildpacks:add` value: a built-in name or an https git URL.
pub fn validate(value: &str) -> Result<(), Invalid> {
    if builtin_names().contains(&value) {
        return Ok(());
    }
    if is_url(value) {
        return RemoteBuildpack::parse(value).map(|_| ());
    }
    Err(Invalid(format!("Unknown buildpack {}: use a built-in ({}), an https git URL or ORG/NAME", crate::validate::quoted(value), builtin_names().join(", "))))
}

/// Longest a buildpack clone may take, and the most it may weigh.
const FETCH_TIME: std::time::Duration = std::time::Duration::from_secs(120);
const FETCH_SIZE: u64 = 100 * 1024 * 1024;

/// One fetch at a time: two builds wanting the same buildpack share the first one's clone.
static FETCHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A buildpack for a build: the host directory (for a bind mount of its own: a build sees
/// only the buildpacks it uses) and the path inside the build container. Third-party ones
/// are cloned on first use, without any of the host's credentials.
async fn prepare(root: &Path, value: &str, allow_private: bool, out: &Output) -> Result<(Option<PathBuf>, String), String> {
    if builtin_names().contains(&value) {
        return Ok((None, format!("/buildpacks/{value}")));
    }
    let remote = RemoteBuildpack::parse(value).map_err(|e| e.0)?;
    let name = remote.dir_name();
    let dest = root.join("buildpacks-custom").join(&name);
    let inside = format!("/buildpacks-custom/{name}");
    let _one = FETCHING.lock().await;
    if dest.join("bin/compile").exists() {
        return Ok((Some(dest), inside));
    }
    let addrs = resolve_public(&remote, allow_private).await?;
    out.step(format!("Fetching buildpack {value}")).await;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(root.join("buildpacks-custom")).map_err(|e| e.to_string())?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let clone = |shallow| clone_command(&remote, &addrs, home.path(), &dest, shallow);
    let mut cloned = run_clone(clone(true), &dest).await;
    // Static ("dumb") git hosting cannot give a shallow clone: a whole one, still size-capped.
    if cloned.as_ref().is_err_and(|e| e.contains("does not support shallow")) {
        let _ = std::fs::remove_dir_all(&dest);
        cloned = run_clone(clone(false), &dest).await;
    }
    let fetched = match cloned {
        Err(why) => Err(format!("Cannot fetch buildpack {value}: {why}")),
        Ok(()) if dir_size(&dest) > FETCH_SIZE => Err(format!("Buildpack {value} is {}", too_large())),
        Ok(()) if !dest.join("bin/compile").exists() => Err(format!("Buildpack {value} has no bin/compile")),
        Ok(()) => Ok(()),
    };
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&dest);
        return Err(e);
    }
    Ok((Some(dest), inside))
}

/// `git clone` of a third-party buildpack into `dest`, with none of the host's credentials
/// or config, connecting only to `addrs` (checked already), bounded in speed.
fn clone_command(remote: &RemoteBuildpack, addrs: &[std::net::IpAddr], home: &Path, dest: &Path, shallow: bool) -> tokio::process::Command {
    let mut git = tokio::process::Command::new("git");
    git.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    // Which CAs to trust is not a credential: a private CA set for the daemon applies.
    for var in ["SSL_CERT_FILE", "GIT_SSL_CAINFO"] {
        if let Ok(v) = std::env::var(var) {
            git.env(var, v);
        }
    }
    git.args(["-c", "credential.helper=", "-c", "http.followRedirects=false", "-c", "http.lowSpeedLimit=1024", "-c", "http.lowSpeedTime=30"])
        // The addresses checked are the ones git connects to (no second lookup).
        .arg("-c")
        .arg(format!("http.curloptResolve={}", pinned(&remote.host, remote.port, addrs)))
        .args(["clone", "--quiet", "--no-tags"]);
    if shallow {
        git.args(["--depth", "1"]);
    }
    if let Some(r) = &remote.git_ref {
        git.args(["--branch", r]);
    }
    git.arg("--").arg(&remote.url).arg(dest).stdin(std::process::Stdio::null()).kill_on_drop(true);
    git
}

/// Runs a clone, stopped as soon as it passes the size limit (checked twice a second while
/// it runs: a huge repository never fills the disk) or the time limit.
async fn run_clone(mut git: tokio::process::Command, dest: &Path) -> Result<(), String> {
    let output = git.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).output();
    let watch = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let dest = dest.to_path_buf();
            if tokio::task::spawn_blocking(move || dir_size(&dest)).await.unwrap_or(0) > FETCH_SIZE {
                return;
            }
        }
    };
    tokio::select! {
        done = tokio::time::timeout(FETCH_TIME, output) => match done {
            Err(_) => Err(format!("no answer within {}s", FETCH_TIME.as_secs())),
            Ok(Err(e)) => Err(format!("cannot run git: {e}")),
            Ok(Ok(o)) if !o.status.success() => {
                Err(String::from_utf8_lossy(&o.stderr).lines().rfind(|l| !l.trim().is_empty()).unwrap_or("git clone failed").trim().to_string())
            }
            Ok(Ok(_)) => Ok(()),
        },
        // git is killed as its future drops (kill_on_drop).
        () = watch => Err(too_large()),
    }
}

fn too_large() -> String {
    format!("larger than {} MiB: berth does not take it", FETCH_SIZE / 1024 / 1024)
}

/// Every address a buildpack host resolves to (git tries each, as curl does), refused when
/// one is loopback, private or link-local and the admin did not allow those: a name that
/// also resolves to the server's own networks could be pointed at them later.
async fn resolve_public(remote: &RemoteBuildpack, allow_private: bool) -> Result<Vec<std::net::IpAddr>, String> {
    public_addresses(&remote.host, remote.port, allow_private).await.map_err(|why| match why {
        NotPublic::Unresolved(e) => format!("Cannot fetch buildpack {}: {} does not resolve ({e})", remote.url, remote.host),
        NotPublic::NoAddress => format!("{} has no address", remote.host),
        NotPublic::Private(ip) => {
            format!("Buildpack host {} is at {ip}, a private address: berth fetches only from public hosts (allow_private_buildpack_hosts in berth.toml)", remote.host)
        }
    })
}

/// Why a host is not to be reached from this server's network.
enum NotPublic {
    Unresolved(std::io::Error),
    NoAddress,
    /// One of its addresses is loopback, private or link-local.
    Private(std::net::IpAddr),
}

/// Every address `host` resolves to, unless one of them is one of the server's own networks
/// and the admin did not allow those (`allow_private_buildpack_hosts`).
async fn public_addresses(host: &str, port: u16, allow_private: bool) -> Result<Vec<std::net::IpAddr>, NotPublic> {
    let mut addrs: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, port)).await.map_err(NotPublic::Unresolved)?.map(|a| a.ip()).collect();
    addrs.dedup();
    match addrs.iter().find(|ip| is_private(**ip)) {
        _ if addrs.is_empty() => Err(NotPublic::NoAddress),
        Some(ip) if !allow_private => Err(NotPublic::Private(*ip)),
        _ => Ok(addrs),
    }
}

/// A Dockerfile's remote `ADD` source, which the Docker engine fetches itself, from the
/// host's network: only http(s), and only from a host whose every address is public unless
/// the admin allowed private ones (`allow_private_buildpack_hosts`, as for buildpacks). A
/// source berth cannot read for sure is refused.
pub async fn check_remote_source(source: &str, allow_private: bool) -> Result<(), String> {
    let refused = |why: String| format!("The Dockerfile fetches {}: {why}", crate::validate::quoted(source));
    if source.starts_with(crate::dockerfile::UNCLEAR) {
        return Err(refused("berth cannot read that source for sure".into()));
    }
    let url = url::Url::parse(source).map_err(|e| refused(format!("not a URL berth reads ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused("builds fetch ADD sources over http or https only".into()));
    }
    let host = url.host_str().ok_or_else(|| refused("no host".into()))?.trim_matches(['[', ']']).to_string();
    public_host(&host, url.port_or_known_default().unwrap_or(80), allow_private).await.map_err(refused)
}

/// Whether `host` resolves to public addresses only (or the admin allowed private ones):
/// what the host's own network must not be reached for. Why not, if not.
pub async fn public_host(host: &str, port: u16, allow_private: bool) -> Result<(), String> {
    public_addresses(host, port, allow_private).await.map(|_| ()).map_err(|why| match why {
        NotPublic::Unresolved(e) => format!("{host} does not resolve ({e})"),
        NotPublic::NoAddress => format!("{host} has no address"),
        NotPublic::Private(ip) => format!("{host} is at {ip}, a private address: only public hosts are reached (allow_private_buildpack_hosts in berth.toml)"),
    })
}

/// curl's `--resolve` entry (git's http.curloptResolve) pinning `host:port` to every address.
fn pinned(host: &str, port: u16, addrs: &[std::net::IpAddr]) -> String {
    let addrs: Vec<String> = addrs.iter().map(|ip| if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }).collect();
    format!("{host}:{port}:{}", addrs.join(","))
}

/// Loopback, private, link-local, shared (CGNAT), unspecified or broadcast: the server's own
/// networks. An IPv4 address inside IPv6 (`::ffff:127.0.0.1`) is judged as the IPv4 one.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(std::net::IpAddr::V4(v4)),
            None => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// One buildpack build: the app's source (a tar) becomes the image `berth/APP:TAG`.
pub struct BuildRequest<'a> {
    pub app: &'a str,
    pub tag: &'a str,
    /// The build context: a tar file.
    pub source: &'a Path,
    /// The app's config, given to compile as ENV_DIR.
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// Buildpacks in order; empty: the first built-in that detects.
    pub chosen: &'a [String],
    /// Process types berth chose (`python_web`), after the Procfile's and the buildpacks'.
    pub defaults: &'a std::collections::BTreeMap<String, String>,
    /// The build is stopped (and fails) after this long.
    pub time_limit: std::time::Duration,
    /// CPU weight and memory of the build container.
    pub limits: crate::runtime::BuildLimits,
    /// Third-party buildpacks may come from private addresses (berth.toml).
    pub allow_private: bool,
    /// The image the build runs in (berth's stack unless the app chose another).
    pub stack: &'a str,
}

/// Where the driver writes the image's process types (Procfile, then buildpack defaults).
const PROCESS_LIST: &str = "/app/.berth/processes";

/// A built image and its process types.
pub struct Built {
    pub image: String,
    pub processes: std::collections::BTreeMap<String, String>,
}

pub async fn build(runtime: &Runtime, root: &Path, request: BuildRequest<'_>, out: &Output) -> Result<Built, String> {
    let BuildRequest { app, tag, source, env, chosen, defaults, time_limit, limits, allow_private, stack } = request;
    if runtime.image_info(stack).await.is_none() {
        return Err(if stack == STACK_IMAGE {
            format!("The stack image {STACK_IMAGE} is missing: run `berth stack:build` on the server")
        } else {
            format!("The stack image {stack} (buildpacks:set-property stack) is not on the server's engine: load or build it there, or unset it")
        });
    }
    let builtins = install_builtins(root).map_err(|e| format!("cannot write the built-in buildpacks: {e}"))?;
    let app_dir = root.join("apps").join(app);
    let cache = app_dir.join("cache");
    let env_dir = app_dir.join("build-env");
    write_env_dir(&env_dir, env).map_err(|e| format!("cannot write the build env: {e}"))?;
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;

    let mut own_binds = Vec::new();
    let mut cmd = vec!["/buildpacks/driver.sh".to_string()];
    for (process, command) in defaults {
        cmd.extend(["--default".to_string(), format!("{process}: {command}")]);
    }
    if chosen.is_empty() {
        cmd.push("--detect".into());
        cmd.extend(builtin_names().iter().map(|n| format!("/buildpacks/{n}")));
    } else {
        for value in chosen {
            let (host_dir, inside) = prepare(root, value, allow_private, out).await?;
            if let Some(dir) = host_dir {
                own_binds.push(format!("{}:{inside}:ro", dir.display()));
            }
            cmd.push(inside);
        }
    }
    let mut binds = vec![format!("{}:/buildpacks:ro", builtins.display()), format!("{}:/cache", cache.display()), format!("{}:/env:ro", env_dir.display())];
    binds.extend(own_binds);
    // Builds download dependencies: they trust what the host trusts (a server behind a
    // TLS-inspecting proxy has its CA there), without rebuilding the stack.
    let mut build_env = Vec::new();
    if Path::new(HOST_CA_BUNDLE).is_file() {
        binds.push(format!("{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"));
        for var in ["SSL_CERT_FILE", "PIP_CERT", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE"] {
            build_env.push(format!("{var}={HOST_CA_BUNDLE}"));
        }
    }
    let repo = format!("berth/{app}");
    let job = OneShot {
        app: Some(app),
        image: stack,
        cmd,
        env: build_env,
        binds,
        upload: Some(("/app", source)),
        commit_as: (&repo, tag),
        commit_cmd: Some(vec![crate::store::LAUNCHER.into(), "web".into()]),
        commit_workdir: Some("/app"),
        collect: Some(PROCESS_LIST),
        time_limit: Some(time_limit),
        limits,
    };
    let result = runtime.run_and_commit(job, out).await;
    let _ = std::fs::remove_dir_all(&env_dir);
    result.map(|c| Built { image: c.image, processes: crate::process::parse_process_list(&String::from_utf8_lossy(&c.collected.unwrap_or_default())) }).map_err(
        |e| match e {
            RuntimeError::Exited(100) => format!("Nothing to build: berth looked for {LOOKED_FOR}"),
            RuntimeError::Exited(101) => "A chosen buildpack does not apply to this app (see above); buildpacks:list shows the list".into(),
            RuntimeError::Exited(code) => format!("The buildpack build failed (exit code {code})"),
            other => other.to_string(),
        },
    )
}

/// ENV_DIR of the API: one file per variable, holding its value. Secrets: 0700/0600.
fn write_env_dir(dir: &Path, env: &std::collections::BTreeMap<String, String>) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for (key, value) in env {
        crate::store::write_atomic(&dir.join(key), value.as_bytes(), 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herokus_shorthand_names_a_github_buildpack() {
        assert_eq!(normalize("heroku/nodejs").unwrap(), "https://github.com/heroku/heroku-buildpack-nodejs.git");
        assert_eq!(normalize("heroku-community/apt").unwrap(), "https://github.com/heroku/heroku-buildpack-apt.git");
        assert_eq!(normalize("acme/my_pack").unwrap(), "https://github.com/acme/heroku-buildpack-my_pack.git");
        assert_eq!(normalize("nodejs").unwrap(), "nodejs");
        assert_eq!(normalize("https://example.com/x/pack.git").unwrap(), "https://example.com/x/pack.git");
        for bad in ["/nodejs", "http://nodejs", "a/b/c", "heroku/", "he roku/x", "heroku/x;y"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    fn guess(files: &[(&str, &str)]) -> Result<Option<String>, String> {
        let map: std::collections::BTreeMap<String, String> = files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        let paths: Vec<String> = map.keys().cloned().collect();
        python_web(&[], &|p| map.get(p).cloned(), &paths)
    }

    #[test]
    fn a_flask_app_with_gunicorn_gets_a_web_command() {
        let app = "from flask import Flask\napp = Flask(__name__)\n";
        assert_eq!(guess(&[("requirements.txt", "Flask==3.0\ngunicorn==22.0\n"), ("app.py", app)]), Ok(Some("gunicorn app:app".into())));
        assert_eq!(
            guess(&[("requirements.txt", "gunicorn\n"), ("wsgi.py", "application = make()\n"), ("app.py", app)]),
            Ok(Some("gunicorn wsgi:application".into()))
        );
        let pyproject = "[project]\ndependencies = [\"flask\", \"gunicorn>=22\"]\n";
        assert_eq!(guess(&[("pyproject.toml", pyproject), ("main.py", "app: Flask = Flask(__name__)\n")]), Ok(Some("gunicorn main:app".into())));
    }

    #[test]
    fn a_django_project_gets_gunicorn_on_its_wsgi_module() {
        let files = [("requirements.txt", "Django\ngunicorn\n"), ("manage.py", ""), ("mysite/wsgi.py", ""), ("mysite/settings.py", "")];
        assert_eq!(guess(&files), Ok(Some("gunicorn mysite.wsgi".into())));
        let err = guess(&[("requirements.txt", "Django\n"), ("manage.py", ""), ("mysite/wsgi.py", "")]).unwrap_err();
        assert!(err.contains("add gunicorn to requirements.txt") && err.contains("gunicorn mysite.wsgi"), "{err}");
    }

    #[test]
    fn a_python_app_that_does_not_say_how_it_starts_is_refused_before_building() {
        let err = guess(&[("requirements.txt", "six\n"), ("run.py", "print(1)\n")]).unwrap_err();
        assert!(err.starts_with("No Procfile: add one"), "{err}");
        // `app ==` compares, it does not define; gunicorn-extras is another package.
        let err = guess(&[("requirements.txt", "gunicorn-extras\n"), ("app.py", "app = 1\n")]).unwrap_err();
        assert!(err.contains("add gunicorn to requirements.txt"), "{err}");
        assert!(guess(&[("requirements.txt", "gunicorn\n"), ("app.py", "if app == 1: pass\n")]).is_err());
    }

    #[test]
    fn a_procfile_or_another_buildpack_needs_no_guess() {
        assert_eq!(guess(&[("requirements.txt", "six\n"), ("Procfile", "worker: python w.py\n")]), Ok(None));
        assert_eq!(guess(&[("package.json", "{}")]), Ok(None));
        let files: std::collections::BTreeMap<String, String> = [("requirements.txt".to_string(), "six".to_string())].into();
        assert_eq!(python_web(&["nodejs".to_string()], &|p| files.get(p).cloned(), &[]), Ok(None));
    }

    #[test]
    fn builtins_are_written_executable() {
        let dir = tempfile::tempdir().unwrap();
        let bp = install_builtins(dir.path()).unwrap();
        for name in builtin_names() {
            for file in ["detect", "compile", "release"] {
                let meta = std::fs::metadata(bp.join(name).join("bin").join(file)).unwrap();
                assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}/{file}");
            }
        }
        assert!(bp.join("driver.sh").exists());
    }

    #[test]
    fn private_addresses_are_told_apart() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_fetch_is_pinned_to_every_address_checked() {
        let addrs = ["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        assert_eq!(pinned("example.com", 443, &addrs), "example.com:443:203.0.113.7,[2001:db8::7]");
    }

    #[test]
    fn buildpack_values() {
        assert!(validate("python").is_ok());
        assert!(validate("https://example.com/heroku-buildpack-ruby.git").is_ok());
        assert!(validate("ruby").is_err());
        assert!(validate("https://x/a b.git").is_err());
        assert!(validate("--upload-pack=evil.git").is_err());
        for refused in [
            "/var/lib/berth/apps/other/repo.git",
            "file:///etc/x.git",
            "git@github.com:heroku/heroku-buildpack-ruby.git",
            "ssh://git@example.com/bp.git",
            "http://example.com/bp.git",
            "git://example.com/bp.git",
            "https://user:token@example.com/bp.git",
            "https://example.com/../bp.git",
            "https://example.com/bp.git#--upload-pack=x",
            "https://exa mple.com/bp.git",
        ] {
            assert!(validate(refused).is_err(), "{refused}");
        }
        let bp = RemoteBuildpack::parse("https://Example.com:8443/heroku/bp.git#v1.2").unwrap();
        assert_eq!(
            (bp.url.as_str(), bp.host.as_str(), bp.port, bp.git_ref.as_deref()),
            ("https://Example.com:8443/heroku/bp.git", "example.com", 8443, Some("v1.2"))
        );
        // Two refs of one URL are two directories; the same value is always the same one.
        let other = RemoteBuildpack::parse("https://Example.com:8443/heroku/bp.git#v2").unwrap();
        assert_ne!(bp.dir_name(), other.dir_name());
        assert_eq!(bp.dir_name(), RemoteBuildpack::parse("https://Example.com:8443/heroku/bp.git#v1.2").unwrap().dir_name());
    }

    #[test]
    fn detect_scripts_detect_exactly() {
        // The scripts run from beside the test binary, not from /tmp, which a hardened
        // server mounts noexec.
        let dir = tempfile::tempdir_in(std::env::current_exe().unwrap().parent().unwrap()).unwrap();
        let bp = install_builtins(dir.path()).unwrap();
        let app = tempfile::tempdir().unwrap();
        let detect = |name: &str| {
            let script = bp.join(name).join("bin/detect");
            std::process::Command::new(&script).arg(app.path()).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
        };
        for name in builtin_names() {
            assert!(!detect(name).status.success(), "{name} detected an empty app");
        }
        std::fs::write(app.path().join("requirements.txt"), "six\n").unwrap();
        let out = detect("python");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "python");
        assert!(!detect("nodejs").status.success());
        std::fs::write(app.path().join("go.mod"), "module x\n").unwrap();
        assert!(detect("go").status.success());
    }
}
