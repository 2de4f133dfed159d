//! The audit log: every command through every door (ssh, the API, the server's own socket),
//! who ran it, on which app, how it ended. `<root>/events.log`, one JSON object per line
//! (the command's name and app only: never its arguments, which may be secrets), the older
//! half kept in `events.log.1` once it passes a few megabytes. `events` shows it.

use std::io::Write;

use super::{CmdResult, Ctx, Scope};
use crate::output::Format;
use crate::store::Access;
use clap::Subcommand;

pub(super) const NAMESPACES: &[(&str, &str)] = &[("events", "Manage event logging: the audit log, who ran which command, on which app, how it ended")];

/// Past this, the log moves to `events.log.1` (one generation kept).
const ROTATE_AT: u64 = 4 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show the audit log, newest last (an admin: every app; a key or token: its apps)
    #[command(name = "events")]
    Events {
        /// Only this app
        #[arg(long)]
        app: Option<String>,
        /// How many (the last N)
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        num: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Anyone
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Events { app, num, format } => show(ctx, app.as_deref(), num, format).await,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub at: String,
    pub caller: String,
    pub door: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub code: i32,
}

/// Appends one event (a failure to write is logged, never the command's failure).
pub fn record(root: &std::path::Path, event: &Event) {
    let path = root.join("events.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let _ = std::fs::rename(&path, root.join("events.log.1"));
    }
    let line = serde_json::to_string(event).unwrap_or_default();
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot write the audit log {}: {e}", path.display());
    }
}

fn read(root: &std::path::Path) -> Vec<Event> {
    let text = [root.join("events.log.1"), root.join("events.log")].iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect::<String>();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub async fn show(ctx: &mut Ctx<'_>, app: Option<&str>, num: usize, format: Format) -> CmdResult {
    let caller = ctx.caller;
    let mine = |e: &Event| match &e.app {
        Some(a) => caller.role.may_manage(a),
        None => caller.access == Access::Admin || e.caller == caller.name,
    };
    let events: Vec<Event> = read(ctx.engine.store.root()).into_iter().filter(|e| mine(e) && app.is_none_or(|a| e.app.as_deref() == Some(a))).collect();
    let last = &events[events.len().saturating_sub(num)..];
    match format {
        Format::Json => ctx.out.line(serde_json::to_string(last).unwrap_or_default()).await,
        Format::Text => {
            for e in last {
                let app = e.app.as_deref().map(|a| format!(" {a}")).unwrap_or_default();
                ctx.out.line(format!("{}  {} ({})  {}{app}  exit {}", e.at, e.caller, e.door, e.command, e.code)).await;
            }
        }
    }
    Ok(())
}
