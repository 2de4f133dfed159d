//! `metrics`: berth's metrics in Prometheus' text format (what GET /metrics on the API
//! serves): the apps the caller may manage, and the server's own figures for admins.

use super::{CmdResult, Ctx, Scope};
use clap::Subcommand;

pub(super) const NAMESPACES: &[(&str, &str)] = &[("metrics", "Print metrics in Prometheus' text format: requests, latency, containers, deploys, certificates")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print metrics in Prometheus' text format (an admin: every app and the server; a key or token: its apps)
    #[command(name = "metrics")]
    Metrics,
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Anyone
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Metrics => {
                let text = crate::metrics::text(ctx.engine, ctx.caller).await;
                ctx.out.stdout(text.into_bytes()).await;
                Ok(())
            }
        }
    }
}
