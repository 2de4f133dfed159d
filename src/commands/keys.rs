//! `ssh-keys:*`: who may connect over SSH, and to which apps.

use russh::keys::ssh_key::PublicKey;

use super::Scope;
use super::{CmdResult, Ctx, failed};
use crate::output::Format;
use crate::store::{AuthorizedKey, Role, fingerprint};
use crate::validate;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("ssh-keys", "Manage public ssh keys used for deployment")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add an SSH public key (read from stdin); admin unless --app is given
    #[command(name = "ssh-keys:add")]
    Add {
        name: String,
        /// Limit the key to these apps (repeatable)
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
        /// Let the scoped key create its apps with a first push
        #[arg(long)]
        may_create: bool,
    },
    /// List SSH keys
    #[command(name = "ssh-keys:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove an SSH key by name
    #[command(name = "ssh-keys:remove")]
    Remove { name: String },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Add { .. } | Cmd::List { .. } | Cmd::Remove { .. } => Scope::Admin,
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Add { name, apps, may_create } => add(ctx, &name, apps, may_create).await,
            Cmd::List { format } => list(ctx, format).await,
            Cmd::Remove { name } => remove(ctx, &name).await,
        }
    }
}

/// A public key line is short; anything larger on stdin is not one.
const MAX_KEY_INPUT: usize = 16 * 1024;

pub async fn add(ctx: &mut Ctx<'_>, name: &str, apps: Vec<String>, may_create: bool) -> CmdResult {
    validate::key_name(name)?;
    if may_create && apps.is_empty() {
        return Err(failed("--may-create is for a key scoped with --app (an admin key creates apps anyway)"));
    }
    for app in &apps {
        validate::app_name(app)?;
    }
    let input =
        ctx.input.read_to_end(MAX_KEY_INPUT).await.map_err(|_| failed("Input is too long for a public key: send one line like `ssh-ed25519 AAAA… comment`"))?;
    let key = parse_public_key(&String::from_utf8_lossy(&input))?;
    let store = &ctx.engine.store;
    let _keys = store.lock_keys().await;
    let mut keys = store.load_keys()?;
    if keys.keys.iter().any(|k| k.name == name) {
        return Err(failed(format!("A key named {name} already exists; remove it first with ssh-keys:remove {name}")));
    }
    if let Some(existing) = keys.find(&key) {
        return Err(failed(format!("This key is already added as {}", existing.name)));
    }
    let role = if apps.is_empty() { Role::Admin } else { Role::App { apps } };
    let fp = fingerprint(&key);
    let shown_role = describe(&role);
    keys.keys.push(AuthorizedKey {
        name: name.to_string(),
        public_key: key.to_openssh().map_err(|e| failed(format!("Cannot encode the key: {e}")))?,
        fingerprint: fp.clone(),
        role,
        added_at: crate::unix_now(),
        may_create,
    });
    store.save_keys(&keys)?;
    ctx.out.step(format!("Added key {name} ({fp}) as {shown_role}")).await;
    Ok(())
}

pub async fn list(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let keys = ctx.engine.store.load_keys()?;
    match format {
        Format::Json => {
            let list: Vec<_> = keys
                .keys
                .iter()
                .map(|k| {
                    let apps = match &k.role {
                        Role::Admin => serde_json::Value::Null,
                        Role::App { apps } => apps.clone().into(),
                    };
                    let role = if k.role.is_admin() { "admin" } else { "app" };
                    serde_json::json!({"name": k.name, "fingerprint": k.fingerprint, "role": role, "apps": apps, "may_create": k.may_create || k.role.is_admin()})
                })
                .collect();
            ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        }
        Format::Text => {
            ctx.out.header("SSH keys").await;
            let width = keys.keys.iter().map(|k| k.name.len()).max().unwrap_or(0) + 2;
            for k in &keys.keys {
                let creates = if k.may_create { " (may create them)" } else { "" };
                ctx.out.detail(format!("{:<width$}{}  {}{creates}", k.name, k.fingerprint, describe(&k.role))).await;
            }
        }
    }
    Ok(())
}

pub async fn remove(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    validate::key_name(name)?;
    let store = &ctx.engine.store;
    let _keys = store.lock_keys().await;
    let mut keys = store.load_keys()?;
    let before = keys.keys.len();
    keys.keys.retain(|k| k.name != name);
    if keys.keys.len() == before {
        return Err(failed(format!("No key named {name}")));
    }
    store.save_keys(&keys)?;
    ctx.out.step(format!("Removed key {name}")).await;
    Ok(())
}

fn describe(role: &Role) -> String {
    match role {
        Role::Admin => "admin".into(),
        Role::App { apps } => format!("app key for {}", apps.join(", ")),
    }
}

/// Exactly one OpenSSH public key line (blank lines and `#` comments aside).
pub fn parse_public_key(text: &str) -> Result<PublicKey, super::CmdError> {
    if text.contains("PRIVATE KEY") {
        return Err(failed("That is a private key: send the public key (the .pub file) instead"));
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let [line] = lines[..] else {
        return Err(failed(format!("Expected one public key line on stdin (like `ssh-ed25519 AAAA… comment`), got {}", lines.len())));
    };
    PublicKey::from_openssh(line).map_err(|e| failed(format!("Invalid public key on stdin: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPbGSi5/4PlIu/ydLwzL8yK7ZjYbIixS4y6dJX9Ixr4E me@laptop";

    #[test]
    fn parses_one_public_key_line() {
        let key = parse_public_key(&format!("# mine\n\n{KEY}\n")).unwrap();
        assert!(fingerprint(&key).starts_with("SHA256:"));
    }

    #[test]
    fn refuses_what_is_not_one_public_key() {
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key(&format!("{KEY}\n{KEY}")).is_err());
        assert!(parse_public_key("ssh-ed25519 notbase64").is_err());
        assert!(parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n").is_err());
    }
}
