//! Validation of everything a user types: app names, env keys, domains, port specs, key names.
//!
//! Pure functions only. Every value that later reaches a file name, a container's environment
//! or an nginx template passes through here first, so nothing a user sends can escape its slot.

use std::fmt;

/// A refused input: one line saying what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// App names, as dokku takes them: a lowercase letter or digit, then lowercase letters,
/// digits, dots and dashes, 63 at most (they become directory, container, image and nginx
/// names, and the first label of the app's default domain).
pub fn app_name(name: &str) -> Result<&str, Invalid> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.contains("..");
    if ok {
        Ok(name)
    } else {
        Err(invalid(format!(
            "Invalid app name {}: use a lowercase letter or digit, then up to 62 lowercase letters, digits, dots or dashes",
            quoted(name)
        )))
    }
}

/// An app name from a command line, checked once by [`app_name`] when it is parsed; every
/// handler takes this instead of a string it would have to check again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

impl AppName {
    /// The name of an app to be created: also checked by [`new_app_name`].
    pub fn new_app(name: &str) -> Result<AppName, Invalid> {
        new_app_name(name).map(|n| AppName(n.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AppName {
    type Err = Invalid;
    fn from_str(name: &str) -> Result<AppName, Invalid> {
        app_name(name).map(|n| AppName(n.to_string()))
    }
}

impl std::ops::Deref for AppName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for AppName {
    fn as_ref(&self) -> &std::path::Path {
        self.0.as_ref()
    }
}

impl PartialEq<str> for AppName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<AppName> for str {
    fn eq(&self, other: &AppName) -> bool {
        self == other.0
    }
}

impl PartialEq<AppName> for String {
    fn eq(&self, other: &AppName) -> bool {
        *self == other.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of berth's own site (its API and dashboard at `berth.<global domain>`): no app
/// may be called this.
pub const BERTH_SITE: &str = "berth";

/// The name of an app being created (or renamed to): also what Docker's image names and
/// DNS can carry.
pub fn new_app_name(name: &str) -> Result<&str, Invalid> {
    app_name(name)?;
    if name.ends_with(['-', '.']) {
        return Err(invalid(format!("Invalid app name {}: it cannot end with a dash or a dot (Docker image names and DNS names cannot)", quoted(name))));
    }
    if name == BERTH_SITE {
        return Err(invalid(format!("Invalid app name {}: berth.DOMAIN is where berth serves its API and dashboard", quoted(name))));
    }
    if name.contains("--") {
        return Err(invalid(format!("Invalid app name {}: `--` is reserved for previews (APP--BRANCH)", quoted(name))));
    }
    if name.contains(".-") || name.contains("-.") {
        return Err(invalid(format!("Invalid app name {}: a dot cannot touch a dash (Docker image names and DNS labels cannot)", quoted(name))));
    }
    Ok(name)
}

/// Environment variable keys: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn env_key(key: &str) -> Result<&str, Invalid> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 255;
    if ok {
        Ok(key)
    } else {
        Err(invalid(format!(
            "Invalid env key {}: use a letter or _ followed by letters, digits or _",
            quoted(key)
        )))
    }
}

/// Linux's limit on one string of a process's environment (`KEY=value` and its NUL):
/// MAX_ARG_STRLEN. A longer variable is stored fine but no container could start with it.
pub const MAX_ENV_VAR: usize = 128 * 1024;
/// The whole environment of an app's containers (Linux takes about 2 MiB of arguments and
/// environment together; half is left for the rest).
pub const MAX_ENV_TOTAL: usize = 1024 * 1024;

/// Environment values: anything but NUL, which no process environment can hold, and no
/// longer than a process environment can hold.
pub fn env_value<'a>(key: &str, value: &'a str) -> Result<&'a str, Invalid> {
    if value.contains('\0') {
        return Err(invalid(format!("Invalid value for {key}: it contains a NUL byte")));
    }
    if key.len() + 1 + value.len() + 1 > MAX_ENV_VAR {
        return Err(invalid(format!(
            "The value of {key} is {} KiB: a container's environment takes at most 128 KiB per variable (put large data in a file: storage:mount)",
            value.len() / 1024
        )));
    }
    Ok(value)
}

/// The whole environment must fit in what a container can start with.
pub fn env_total(env: &std::collections::BTreeMap<String, String>) -> Result<(), Invalid> {
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > MAX_ENV_TOTAL {
        return Err(invalid(format!("The config would be {} KiB: an app's environment takes at most 1 MiB in all", total / 1024)));
    }
    Ok(())
}

/// Splits `KEY=value` at the first `=`, validating both halves.
pub fn env_pair(pair: &str) -> Result<(String, String), Invalid> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(invalid(format!(
            "Invalid env pair {}: expected KEY=value",
            quoted(pair)
        )));
    };
    env_key(key)?;
    env_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Domain names per RFC 1123, lowercased; `*.` is allowed as the first label (nginx wildcard).
/// Only `[a-z0-9.-]` survive, so a domain can never carry nginx syntax (`;`, `{`, spaces…).
pub fn domain(raw: &str) -> Result<String, Invalid> {
    let name = raw.to_ascii_lowercase();
    let bad = |why: &str| invalid(format!("Invalid domain {}: {why}", quoted(raw)));
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    for label in rest.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad("use only letters, digits, dashes and dots"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with a dash"));
        }
    }
    Ok(name)
}

/// Names of SSH keys: short, printable, no spaces.
pub fn key_name(name: &str) -> Result<&str, Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(invalid(format!(
            "Invalid key name {}: use up to 64 letters, digits, '.', '_', '@' or '-'",
            quoted(name)
        )))
    }
}

/// Process types (Procfile names): `^[a-z0-9][a-z0-9_-]{0,29}$`, lowercased as Heroku does
/// not; they become container names and labels.
pub fn process_type(name: &str) -> Result<&str, Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(name)
    } else {
        Err(invalid(format!(
            "Invalid process type {}: use up to 30 lowercase letters, digits, '_' or '-'",
            quoted(name)
        )))
    }
}

/// A storage mount, `HOST:CONTAINER[:ro]`. HOST is a name (a directory under the berth
/// root's storage/) or an absolute path; CONTAINER is an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mount {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

impl Mount {
    /// Whether HOST is a path on the host rather than a name under the berth root.
    pub fn host_is_path(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.host, self.container, if self.read_only { ":ro" } else { "" })
    }
}

pub fn mount(spec: &str) -> Result<Mount, Invalid> {
    let bad = |why: &str| {
        invalid(format!(
            "Invalid mount {}: {why} (expected HOST:CONTAINER[:ro], e.g. uploads:/app/uploads)",
            quoted(spec)
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, read_only) = match parts[..] {
        [h, c] => (h, c, false),
        [h, c, "ro"] => (h, c, true),
        [_, _, _] => return Err(bad("the only option is ro")),
        _ => return Err(bad("wrong number of fields")),
    };
    let clean_path = |p: &str| {
        p.starts_with('/')
            && p.len() <= 255
            && !p.chars().any(|c| c.is_control() || c == ',')
            && !p.split('/').any(|part| part == "..")
    };
    if host.starts_with('/') {
        if !clean_path(host) || host == "/" {
            return Err(bad("the host path must be absolute, not /, without '..' or ','"));
        }
    } else {
        let ok = !host.is_empty()
            && host.len() <= 64
            && host.starts_with(|c: char| c.is_ascii_alphanumeric())
            && host.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(bad("the host side is a name (letters, digits, '.', '_', '-') or an absolute path"));
        }
    }
    if !clean_path(container) || container == "/" {
        return Err(bad("the container path must be absolute, not /, without '..' or ','"));
    }
    Ok(Mount { host: host.into(), container: container.trim_end_matches('/').into(), read_only })
}

/// A memory size as Docker takes it (`256m`, `1g`, `512k`, bytes), at least 6 MiB
/// (Docker's minimum). Returns bytes.
pub fn memory(raw: &str) -> Result<i64, Invalid> {
    let bad = || invalid(format!("Invalid memory size {}: use a number with k, m or g, at least 6m (e.g. 256m)", quoted(raw)));
    let lower = raw.to_ascii_lowercase();
    let trimmed = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match trimmed.char_indices().last() {
        Some((i, 'k')) => (&trimmed[..i], 1i64 << 10),
        Some((i, 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) || number.len() > 12 {
        return Err(bad());
    }
    let bytes = number.parse::<i64>().map_err(|_| bad())?.checked_mul(unit).ok_or_else(bad)?;
    if bytes < 6 << 20 {
        return Err(bad());
    }
    Ok(bytes)
}

/// A CPU share (`0.5`, `2`): more than 0, at most 1024. Returns nano-CPUs as Docker takes them.
pub fn cpus(raw: &str) -> Result<i64, Invalid> {
    let bad = || invalid(format!("Invalid CPU count {}: use a number above 0 such as 0.5 or 2", quoted(raw)));
    if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = raw.parse().map_err(|_| bad())?;
    let nanos = (value * 1e9).round();
    if !(nanos >= 1e7 && value <= 1024.0) {
        return Err(bad());
    }
    Ok(nanos as i64)
}

/// The protocol a port mapping serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// `scheme:host-port:container-port`, as dokku writes it (`http:80:5000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PortMap {
    pub scheme: Scheme,
    pub host: u16,
    pub container: u16,
}

impl PortMap {
    pub const DEFAULT: PortMap = PortMap { scheme: Scheme::Http, host: 80, container: 5000 };
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.scheme, self.host, self.container)
    }
}

pub fn port_map(spec: &str) -> Result<PortMap, Invalid> {
    let bad = |why: &str| {
        invalid(format!(
            "Invalid port mapping {}: {why} (expected scheme:host-port:container-port, e.g. http:80:5000)",
            quoted(spec)
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let [scheme, host, container] = parts[..] else {
        return Err(bad("wrong number of fields"));
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad("the scheme must be http or https")),
    };
    Ok(PortMap { scheme, host: port(host).map_err(|_| bad("bad host port"))?, container: port(container).map_err(|_| bad("bad container port"))? })
}

/// A TCP port, 1 to 65535.
pub fn port(raw: &str) -> Result<u16, Invalid> {
    match raw.parse::<u16>() {
        Ok(p) if p > 0 && raw.chars().all(|c| c.is_ascii_digit()) => Ok(p),
        _ => Err(invalid(format!("Invalid port {}: expected a number from 1 to 65535", quoted(raw)))),
    }
}

/// An email address for an ACME account: `local@domain`, no spaces or control characters.
pub fn email(raw: &str) -> Result<&str, Invalid> {
    let ok = raw.len() <= 254
        && raw.split_once('@').is_some_and(|(local, host)| !local.is_empty() && domain(host).is_ok() && host.contains('.'))
        && raw.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ',' | ';' | '\\'));
    if ok { Ok(raw) } else { Err(invalid(format!("Invalid email {}: expected name@example.com", quoted(raw)))) }
}

/// An ACME directory URL: `https://host[:port]/path`, printable ASCII only.
pub fn acme_server(raw: &str) -> Result<&str, Invalid> {
    let rest = raw.strip_prefix("https://").unwrap_or("");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    let ok = raw.len() <= 2048 && !host.is_empty() && domain(host).is_ok() && raw.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(raw)
    } else {
        Err(invalid(format!(
            "Invalid ACME server {}: expected an https:// directory URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory",
            quoted(raw)
        )))
    }
}

/// Quotes a user value for an error message, escaping control characters so that the
/// message stays on one line whatever was sent.
/// A relative path inside a pushed tree (`sub/dir`, `.dokku/Procfile`): no `..`, no
/// leading `/`, printable, at most 200 bytes. Trailing slashes are dropped. Pure.
pub fn tree_path(text: &str) -> Result<String, String> {
    let path = text.trim_end_matches('/');
    let parts_ok = path.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    let chars_ok = path.chars().all(|c| c.is_ascii_alphanumeric() || "._-+@ ".contains(c) || c == '/');
    if path.is_empty() || path.len() > 200 || path.starts_with('/') || !parts_ok || !chars_ok {
        return Err(format!("{} is not a relative path inside the app's tree (like sub/dir, without .. or a leading /)", quoted(text)));
    }
    Ok(path.to_string())
}

pub fn quoted(value: &str) -> String {
    let shown: String = value.chars().take(80).collect();
    let ellipsis = if value.chars().count() > 80 { "…" } else { "" };
    format!("{:?}{ellipsis}", shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = mount("uploads:/app/uploads/").unwrap();
        assert_eq!((m.host.as_str(), m.container.as_str(), m.read_only, m.host_is_path()), ("uploads", "/app/uploads", false, false));
        assert!(mount("/srv/data:/data:ro").unwrap().read_only);
        assert!(mount("/srv/data:/data").unwrap().host_is_path());
        for bad in ["", "a", "a:b", "a:/b:rw", "../x:/b", "/:/b", "a:/", "/srv/../etc:/x", "a:/b,c", "a b:/c", "a:/b:ro:x", "-a:/b"] {
            assert!(mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_and_cpus() {
        assert_eq!(memory("256m").unwrap(), 256 << 20);
        assert_eq!(memory("1G").unwrap(), 1 << 30);
        assert_eq!(memory("7340032").unwrap(), 7340032);
        for bad in ["", "m", "5m", "-1m", "1.5g", "12t", "99999999999999g"] {
            assert!(memory(bad).is_err(), "{bad}");
        }
        assert_eq!(cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(cpus("2").unwrap(), 2_000_000_000);
        for bad in ["", "0", "-1", "abc", "0.001", "2000", "1e3", "."] {
            assert!(cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn process_types() {
        assert!(process_type("web").is_ok());
        assert!(process_type("worker_2").is_ok());
        for bad in ["", "Web", "-x", "a.b", "a b", &"x".repeat(31)] {
            assert!(process_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_names_follow_the_pattern() {
        for ok in ["a", "myapp", "my-app-2", "1994app", "my.app", "api.v2", &"a".repeat(63)] {
            assert!(new_app_name(ok).is_ok(), "{ok}");
        }
        // `--` is made by berth for previews only; such an app is known by its name.
        assert!(new_app_name("myapp--feature").is_err() && app_name("myapp--feature").is_ok());
        for bad in ["", "-app", ".app", "My", "my_app", "my..app", "../x", "a b", &"a".repeat(64), "app;rm", "a/b"] {
            assert!(app_name(bad).is_err(), "{bad}");
        }
        // Known names stay readable; new ones must also suit Docker and DNS.
        for legacy in ["app-", "app.", "a.-b"] {
            assert!(app_name(legacy).is_ok() && new_app_name(legacy).is_err(), "{legacy}");
        }
    }

    #[test]
    fn env_keys_follow_the_pattern() {
        for ok in ["A", "_", "DATABASE_URL", "a1", "_x9"] {
            assert!(env_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "ÄB", "A$"] {
            assert!(env_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_pairs_split_at_the_first_equals() {
        assert_eq!(env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(env_pair("A=").unwrap(), ("A".into(), "".into()));
        assert_eq!(env_pair("G=hello world").unwrap(), ("G".into(), "hello world".into()));
        assert!(env_pair("NOEQUALS").is_err());
        assert!(env_pair("=value").is_err());
        assert!(env_pair("A=x\0y").is_err());
    }

    #[test]
    fn domains_are_rfc1123_and_cannot_inject_nginx() {
        assert_eq!(domain("WWW.Example.com").unwrap(), "www.example.com");
        for ok in ["localhost", "a.b.c", "x-1.example.org", "*.example.com", "123.example"] {
            assert!(domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-a.com", "a-.com", "a..com", ".a.com", "a.com.", "a_b.com", "a.com;", "a.com{",
            "evil.com; return 200", "a b.com", "a.*.com", "*", "a.com\n", &"a".repeat(64),
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
        let long = ["abcdefghij"; 26].join(".");
        assert!(domain(&long).is_err());
    }

    #[test]
    fn port_maps_parse_and_print() {
        let p = port_map("http:80:5000").unwrap();
        assert_eq!(p, PortMap::DEFAULT);
        assert_eq!(p.to_string(), "http:80:5000");
        assert_eq!(port_map("https:443:8080").unwrap().scheme, Scheme::Https);
        for bad in ["", "http:80", "tcp:80:5000", "http:0:5000", "http:80:70000", "http:+80:5000", "http:80:5000:1", "http: 80:5000"] {
            assert!(port_map(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        assert!(key_name("me").is_ok());
        assert!(key_name("alice@laptop").is_ok());
        assert!(key_name("").is_err());
        assert!(key_name("a b").is_err());
        assert!(key_name("-x").is_err());
    }

    #[test]
    fn quoted_values_stay_on_one_line() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        assert!(quoted(&"x".repeat(200)).ends_with('…'));
    }

    #[test]
    fn emails_and_acme_servers() {
        assert!(email("me@example.com").is_ok());
        for bad in ["", "me", "@example.com", "me@", "me@localhost", "a b@example.com", "me@exa;mple.com", "x@y.com\n"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(acme_server("https://acme-v02.api.letsencrypt.org/directory").is_ok());
        assert!(acme_server("https://localhost:14000/dir").is_ok());
        for bad in ["http://acme.example/dir", "https://", "https://a b/dir", "ftp://x", "https://x.com/\u{7f}"] {
            assert!(acme_server(bad).is_err(), "{bad:?}");
        }
    }
}
