//! `dashboard:login`: a one-time URL (5 minutes) that logs its opener into the dashboard as
//! the key that asked, seeing what that key may see.

use super::{CmdResult, Ctx, Scope};
use clap::Subcommand;

pub(super) const NAMESPACES: &[(&str, &str)] = &[("dashboard", "Log in to the web dashboard")];

/// How long a login URL may wait to be opened.
pub const LOGIN_VALID: i64 = 5 * 60;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print a one-time URL (valid 5 minutes) that logs you in to the dashboard
    #[command(name = "dashboard:login")]
    Login,
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Anyone
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Login => login(ctx).await,
        }
    }
}

pub async fn login(ctx: &mut Ctx<'_>) -> CmdResult {
    if ctx.caller.door == crate::engine::Door::Api || ctx.caller.door == crate::engine::Door::Dashboard {
        return Err(super::CmdError::Denied("a dashboard login is asked for over ssh, by a key".into()));
    }
    let code = crate::store::token::new_secret();
    let now = chrono::Utc::now().timestamp();
    {
        let store = &ctx.engine.store;
        let _keys = store.lock_keys().await;
        let mut logins = store.load_logins()?;
        logins.logins.retain(|l| l.expires_at > now);
        logins.logins.push(crate::store::Login { hash: crate::store::token::hash(&code), key: ctx.caller.name.clone(), expires_at: now + LOGIN_VALID });
        store.save_logins(&logins)?;
    }
    // berth's site when there is a global domain, else the API listener (from this host).
    let base = crate::front::url(ctx.engine).unwrap_or_else(|| format!("http://{}", ctx.engine.settings.api_listen));
    ctx.out.step("Open this within 5 minutes (once):").await;
    ctx.out.line(format!("{base}/dashboard/login?code={code}")).await;
    Ok(())
}
