//! What every `NS:set` shares: `NS:set (APP|--global) KEY [VALUE]` (no VALUE unsets), and
//! dokku's refusals of a missing, unknown or app-only property.

use super::{CmdError, CmdResult, Ctx, Target, failed};
use crate::store::{AppConfig, GlobalConfig};
use crate::validate::AppName;

/// Properties whose values are secrets: saved, never printed.
const SECRETS: &[&str] = &["drain-token"];

/// `NS:set (APP|--global) [KEY] [VALUE]`: KEY is optional to clap so that its absence gets
/// dokku's message, not a usage error.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// The app, or --global for every app (where the property can be global)
    pub target: Target,
    pub key: Option<String>,
    /// No value: back to the default
    pub value: Option<String>,
}

/// A property of a namespace: its name, and whether `--global` and an app may set it.
pub struct Property {
    pub name: &'static str,
    pub global: bool,
    pub app: bool,
}

impl SetArgs {
    /// The property named, checked as dokku checks it: given, known, and settable
    /// globally when `--global` was given.
    pub fn property(&self, properties: &[Property]) -> Result<&'static str, CmdError> {
        let Some(key) = self.key.as_deref() else {
            return Err(failed("No property specified"));
        };
        let Some(property) = properties.iter().find(|p| p.name == key) else {
            let mut valid: Vec<&str> = properties.iter().map(|p| p.name).collect();
            valid.sort_unstable();
            return Err(failed(format!("Invalid property specified, valid properties include: {}", valid.join(", "))));
        };
        if self.target == Target::Global && !property.global {
            return Err(failed("Property cannot be specified globally"));
        }
        if self.target != Target::Global && !property.app {
            return Err(failed(format!("Property can only be specified globally: {key} is a setting of the server (--global)")));
        }
        Ok(property.name)
    }

    /// The app, for a property that cannot be global (checked by [`SetArgs::property`]).
    pub fn app(&self) -> Result<&AppName, CmdError> {
        self.target.app().ok_or_else(|| failed("Property cannot be specified globally"))
    }

    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Saves the property where the target says, the app's settings (`app` sets it there)
    /// or the global ones (`global`), and says so as dokku does. Read when next used: at
    /// the next deploy, build, start or stop. A secret's value is never printed.
    pub async fn save(&self, ctx: &Ctx<'_>, key: &str, app: impl FnOnce(&mut AppConfig), global: impl FnOnce(&mut GlobalConfig)) -> CmdResult {
        let whose = match &self.target {
            Target::Global => {
                ctx.engine
                    .update_global(|g| {
                        global(g);
                        Ok::<_, CmdError>(())
                    })
                    .await?;
                "apps that set none".to_string()
            }
            Target::App(name) => {
                ctx.engine
                    .update_app(name, |c| {
                        app(c);
                        Ok::<_, CmdError>(())
                    })
                    .await?;
                name.to_string()
            }
        };
        match self.value() {
            Some(_) if SECRETS.contains(&key) => ctx.out.step(format!("Setting {key} to **** for {whose}")).await,
            Some(v) => ctx.out.step(format!("Setting {key} to {v} for {whose}")).await,
            None => ctx.out.step(format!("Unsetting {key} for {whose}")).await,
        }
        Ok(())
    }
}

/// Properties an app has but the global settings do not.
pub const fn app_only(name: &'static str) -> Property {
    Property { name, global: false, app: true }
}

/// Properties of the global settings that an app may override.
pub const fn app_or_global(name: &'static str) -> Property {
    Property { name, global: true, app: true }
}

/// Properties of the server, not of any app.
pub const fn global_only(name: &'static str) -> Property {
    Property { name, global: true, app: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: Target, key: Option<&str>) -> SetArgs {
        SetArgs { target, key: key.map(str::to_string), value: None }
    }

    #[test]
    fn properties_are_refused_with_dokkus_messages() {
        let app = Target::App("x".parse().unwrap());
        let props = [app_only("b"), app_or_global("a"), global_only("c")];
        assert_eq!(args(app.clone(), None).property(&props).unwrap_err().to_string(), "No property specified");
        assert_eq!(args(app.clone(), Some("d")).property(&props).unwrap_err().to_string(), "Invalid property specified, valid properties include: a, b, c");
        assert_eq!(args(Target::Global, Some("c")).property(&props).unwrap(), "c");
        assert!(args(app.clone(), Some("c")).property(&props).unwrap_err().to_string().starts_with("Property can only be specified globally"));
        assert_eq!(args(Target::Global, Some("b")).property(&props).unwrap_err().to_string(), "Property cannot be specified globally");
        assert_eq!(args(Target::Global, Some("a")).property(&props).unwrap(), "a");
        assert_eq!(args(app, Some("b")).property(&props).unwrap(), "b");
    }
}
