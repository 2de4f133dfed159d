//! How much access each command needs (`store::Access`), by its name: reading (reports,
//! lists, logs), deploying (deploys, rollbacks, restarts, stops, starts), or writing
//! (everything else on an app). Admin commands are the ones whose `Scope` says so.

use crate::store::Access;

/// Read-only commands beyond the `:report` and `:list` ones.
const READ: &[&str] = &["apps:exists", "apps:locked", "config:show", "config:keys", "version", "logs", "previews", "releases", "events", "metrics", "network:exists", "network:info", "help"];

/// Commands that deploy or run what is deployed, and change no setting (and a deploy's
/// output, which can show what a build printed of the config).
const DEPLOY: &[&str] = &["releases:output", "git:from-image", "git:load-image", "ps:rebuild", "ps:restart", "ps:start", "ps:stop", "releases:rollback"];

/// The access a command needs, by its name as the grammar gives it. Pure.
pub fn needed(command: &str) -> Access {
    if READ.contains(&command) || command.ends_with(":report") || command.ends_with(":list") {
        Access::Read
    } else if DEPLOY.contains(&command) {
        Access::Deploy
    } else {
        Access::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_command_exists() {
        let grammar = super::super::grammar();
        for name in READ.iter().chain(DEPLOY).filter(|n| **n != "help") {
            assert!(grammar.find_subcommand(name).is_some(), "{name} is not a command");
        }
    }

    #[test]
    fn secrets_and_changes_need_write() {
        assert_eq!(needed("ps:report"), Access::Read);
        assert_eq!(needed("postgres:list"), Access::Read);
        assert_eq!(needed("releases:rollback"), Access::Deploy);
        for write in ["config:get", "config:export", "config:set", "postgres:info", "run", "enter", "ps:scale", "apps:destroy", "domains:add"] {
            assert_eq!(needed(write), Access::Write, "{write}");
        }
    }
}
