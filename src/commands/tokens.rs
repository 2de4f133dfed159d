//! `tokens:*`: API tokens. A token is made over ssh by a key (or root on the server), shown
//! once, and can never do more than that key: a scoped key makes tokens of its apps only,
//! and no admin ones. A token dies with the key that made it.

use super::{CmdResult, Ctx, Scope, failed};
use crate::output::{Format, utc};
use crate::store::{Access, Role, Token};
use clap::Subcommand;

pub(super) const NAMESPACES: &[(&str, &str)] = &[("tokens", "Manage API tokens (shown once, stored hashed)")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make an API token: printed once, only its hash is kept
    #[command(name = "tokens:create")]
    Create {
        name: String,
        /// read: reports, lists, logs (config values hidden); deploy: also deploys, rollbacks, restarts; write: every app command; admin: everything
        #[arg(long, value_enum, default_value_t = Access::Read)]
        scope: Access,
        /// Only these apps (repeatable; a scoped key's tokens get its apps by default)
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
        /// Expires after this long (30d, 12h, 90m)
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the API tokens you made (an admin: all): scope, apps, last use, expiry
    #[command(name = "tokens:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke an API token by name
    #[command(name = "tokens:revoke")]
    Revoke { name: String },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Anyone
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Create { name, scope, apps, expires } => create(ctx, &name, scope, apps, expires).await,
            Cmd::List { format } => list(ctx, format).await,
            Cmd::Revoke { name } => revoke(ctx, &name).await,
        }
    }
}

/// Tokens are made over ssh or on the server, by a key's holder: not by another token.
fn maker(ctx: &Ctx<'_>) -> Result<(), super::CmdError> {
    if matches!(ctx.caller.door, crate::engine::Door::Api | crate::engine::Door::Dashboard) {
        return Err(super::CmdError::Denied("tokens are made and revoked over ssh, not with a token".into()));
    }
    Ok(())
}

pub async fn create(ctx: &mut Ctx<'_>, name: &str, scope: Access, apps: Vec<String>, expires: Option<String>) -> CmdResult {
    maker(ctx)?;
    crate::validate::key_name(name)?;
    let expires_in = match &expires {
        Some(text) => Some(crate::store::token::duration(text).ok_or_else(|| failed(format!("Invalid expiry {}: a duration such as 30d, 12h or 90m (at most 10 years)", crate::validate::quoted(text))))?),
        None => None,
    };
    if scope > ctx.caller.access {
        return Err(super::CmdError::Denied(format!("key {} may not make a token with scope {} (at most {})", ctx.caller.name, scope.as_str(), ctx.caller.access.as_str())));
    }
    if scope == Access::Admin && !apps.is_empty() {
        return Err(failed("An admin token is for every app: leave out --app, or choose another scope"));
    }
    for app in &apps {
        crate::validate::app_name(app)?;
        if !ctx.caller.role.may_manage(app) {
            return Err(super::CmdError::Denied(format!("key {} may not manage app {app}", ctx.caller.name)));
        }
    }
    let apps = match (&ctx.caller.role, apps.is_empty()) {
        (Role::App { apps: own }, true) => Some(own.clone()),
        (_, true) => None,
        (_, false) => Some(apps),
    };
    let now = chrono::Utc::now().timestamp();
    let secret = crate::store::token::new_secret();
    {
        let store = &ctx.engine.store;
        let _keys = store.lock_keys().await;
        let mut tokens = store.load_tokens()?;
        if tokens.tokens.iter().any(|t| t.name == name) {
            return Err(failed(format!("A token named {name} exists already (tokens:revoke it first)")));
        }
        tokens.tokens.push(Token { name: name.to_string(), hash: crate::store::token::hash(&secret), scope, apps: apps.clone(), created_by: ctx.caller.name.clone(), created_at: now, expires_at: expires_in.map(|s| now + s), last_used_at: None });
        store.save_tokens(&tokens)?;
    }
    let on = apps.map_or("every app".to_string(), |a| a.join(", "));
    ctx.out.step(format!("Token {name}: {} on {on}{}; it is shown this once", scope.as_str(), expires.map(|e| format!(", expires in {e}")).unwrap_or_default())).await;
    ctx.out.line(secret).await;
    Ok(())
}

/// The tokens a caller may see: an admin's, all; anyone else's, their own.
fn visible<'a>(ctx: &Ctx<'_>, tokens: &'a [Token]) -> Vec<&'a Token> {
    tokens.iter().filter(|t| ctx.caller.access == Access::Admin || t.created_by == ctx.caller.name).collect()
}

pub async fn list(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let tokens = ctx.engine.store.load_tokens()?;
    let shown = visible(ctx, &tokens.tokens);
    let when = |t: Option<i64>| t.and_then(|t| u64::try_from(t).ok()).map(utc);
    match format {
        Format::Json => {
            let list: Vec<_> = shown
                .iter()
                .map(|t| serde_json::json!({"name": t.name, "scope": t.scope.as_str(), "apps": t.apps, "created_by": t.created_by, "created_at": when(Some(t.created_at)), "last_used_at": when(t.last_used_at), "expires_at": when(t.expires_at)}))
                .collect();
            ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        }
        Format::Text => {
            ctx.out.header("API tokens").await;
            for t in shown {
                let apps = t.apps.as_ref().map_or("every app".to_string(), |a| a.join(","));
                let used = when(t.last_used_at).unwrap_or_else(|| "never".into());
                let expires = when(t.expires_at).unwrap_or_else(|| "never".into());
                ctx.out.detail(format!("{}  {}  {apps}  by {}  last used {used}  expires {expires}", t.name, t.scope.as_str(), t.created_by)).await;
            }
        }
    }
    Ok(())
}

pub async fn revoke(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    maker(ctx)?;
    let store = &ctx.engine.store;
    let _keys = store.lock_keys().await;
    let mut tokens = store.load_tokens()?;
    let Some(at) = tokens.tokens.iter().position(|t| t.name == name) else {
        return Err(failed(format!("Token {name} does not exist")));
    };
    if ctx.caller.access != Access::Admin && tokens.tokens[at].created_by != ctx.caller.name {
        return Err(failed(format!("Token {name} does not exist")));
    }
    tokens.tokens.remove(at);
    store.save_tokens(&tokens)?;
    ctx.out.step(format!("Token {name} revoked")).await;
    Ok(())
}
