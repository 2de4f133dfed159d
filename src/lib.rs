//! berth: a git-push PaaS for one server.
//!
//! The engine (commands, store, validation) is shared by every front door: the embedded SSH
//! server, the local unix-socket CLI, and later the git hook. See ARCHITECTURE.md.

pub mod acme;
pub mod app_json;
pub mod buildpack;
pub mod checks;
pub mod client;
pub mod commands;
pub mod cron;
pub mod daemon;
pub mod deploy;
pub mod destroy;
pub mod dns;
pub mod docker_options;
pub mod drains;
pub mod dockerfile;
pub mod engine;
pub mod front;
pub mod gates;
pub mod git;
pub mod hook;
pub mod hooks;
pub mod https;
pub mod image_archive;
pub mod metrics;
pub mod output;
pub mod plugins;
pub mod previews;
pub mod process;
pub mod proxy;
pub mod reconcile;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod session;
pub mod stack;
pub mod supervise;
pub mod store;
pub mod tls;
pub mod traffic;
pub mod validate;
pub mod wildcard;

use std::path::{Path, PathBuf};

/// The default berth root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// The daemon's local socket under the root.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join("berth.sock")
}

/// `text` with its line breaks and runs of spaces made single spaces: errors are one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `e` and each of its sources not already in its text, on one line (a library's own
/// message, "proto error" or "client error (Connect)", does not say what went wrong).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    one_line(&text)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fault injection for the crash tests: when `BERTH_CRASHPOINT` names this point, the
/// process SIGKILLs itself here, as a power cut or the OOM killer would. Points of a
/// deploy: `built`, `checks`, `release-saved`, `peers-written`, `routed`, `retire` (and `site-written` when a deploy changes the site).
pub fn crashpoint(name: &str) {
    if std::env::var_os("BERTH_CRASHPOINT").is_some_and(|v| v == name) {
        tracing::warn!("crash point {name}: killing this process");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
