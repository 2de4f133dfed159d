//! The command grammar and the dispatcher every front door calls.
//!
//! A command line arrives already split into words (shell-words rules for SSH, argv for the
//! local CLI). It is parsed by clap into a typed [`Command`], authorized against the caller's
//! role, and run by the handler of its namespace. Handlers write to [`Output`] and return a
//! [`CmdError`]; this module turns that into the ` !     message` line and the exit code.

mod access;
pub mod apps;
mod build;
mod certs;
mod checks;
mod cluster;
mod config;
mod cron;
mod dashboard;
mod docker_options;
mod doctor;
mod domains;
mod gates;
pub mod events;
mod git;
mod images;
pub mod keys;
mod letsencrypt;
mod logs;
mod metrics;
mod network;
mod nginx;
mod plugin;
mod ports;
mod postgres;
mod previews;
mod property;
mod proxy;
mod ps;
mod redis;
mod releases;
mod repo;
mod report;
mod resources;
mod run;
mod scheduler;
mod services;
mod tokens;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, error::ErrorKind};

use crate::engine::{Caller, Engine};
use crate::output::{Input, Output};
use crate::store::StoreError;
use crate::validate::{AppName, Invalid};

pub use crate::output::EXIT_FAILURE;
/// Exit code of a command line that does not parse.
pub const EXIT_USAGE: i32 = 2;

/// The longest command line berth takes (all words): room for one environment variable of
/// the largest size a container can start with, well under SSH's 256 KiB packet.
pub const MAX_COMMAND_LINE: usize = 192 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("Permission denied: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
    /// Exit with this code; the handler has already said why.
    #[error("")]
    Exit(i32),
}

pub type CmdResult = Result<(), CmdError>;

/// A deploy's error, at the door: the state's as the state's, the rest in its words.
impl From<crate::deploy::Error> for CmdError {
    fn from(e: crate::deploy::Error) -> CmdError {
        match e {
            crate::deploy::Error::State(e) => CmdError::Store(e),
            e => CmdError::Failed(e.to_string()),
        }
    }
}

pub fn failed(msg: impl Into<String>) -> CmdError {
    CmdError::Failed(msg.into())
}

/// dokku's confirmation of a destructive command: the name typed back. Over SSH it must be
/// typed on a terminal (`ssh -t`): a script that pipes the name in says `--force` instead.
/// On the server, the local CLI's stdin is the root user's.
pub async fn confirm(ctx: &mut Ctx<'_>, command: &str, what: &str, name: &str) -> CmdResult {
    if ctx.terminal.is_none() && !ctx.caller.local {
        return Err(failed(format!("{command} {name} destroys {what}: confirm on a terminal (ssh -t) or run it with --force")));
    }
    ctx.out.error("WARNING: Potentially Destructive Action").await;
    ctx.out.error(format!("This command will destroy {what}.")).await;
    ctx.out.error(format!("To proceed, type \"{name}\" (or run {command} {name} --force)")).await;
    let answer = ctx.input.read_line(256).await.unwrap_or_default();
    if answer.trim() != name {
        return Err(failed(format!("Confirmation did not match {name}. Aborted.")));
    }
    Ok(())
}

/// Everything a handler needs: the engine, who is asking, and the caller's streams.
pub struct Ctx<'a> {
    pub engine: &'a Engine,
    pub caller: &'a Caller,
    pub out: Output,
    pub input: Input,
    /// The client's pty (`ssh -t`), for `run` and `enter`.
    pub terminal: Option<crate::runtime::Terminal>,
}

impl Ctx<'_> {
    /// A release made by this command, for `what`, by this caller.
    pub fn cause(&self, what: impl Into<String>) -> crate::deploy::Cause {
        crate::deploy::Cause::new(what, self.caller.name.clone())
    }

    /// Who made the push the git hook hands over (`--push TOKEN`, the token berth gave that
    /// push's `git receive-pack`), held to the rule every command of theirs is; without a
    /// token (a push made on the server itself, to the repository's path), the hook's caller.
    pub fn pusher(&self, app: &str, token: Option<&str>) -> Result<Caller, CmdError> {
        let Some(token) = token else { return Ok(self.caller.clone()) };
        let pusher = self.engine.pusher(token).ok_or_else(|| failed("this push is not one berth is serving: its token is unknown"))?;
        may_manage(&pusher, app)?;
        Ok(pusher)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    bin_name = "berth",
    about = "berth: git push to deploy, on your own server",
    version,
    disable_version_flag = true,
    subcommand_required = true,
    disable_help_subcommand = true,
    color = clap::ColorChoice::Never,
    help_template = "{about}\n\nUsage: {usage}\n\nCommands:\n{subcommands}\n\nRun `berth COMMAND --help` for a command's arguments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every namespace module, each owning its clap subcommands (`Cmd`, flattened into the
/// top level), who may run each (`Cmd::scope`), its handlers (`Cmd::run`) and the help line
/// of each namespace it serves (`NAMESPACES`). Adding a command is one place: its module.
macro_rules! namespaces {
    ($($variant:ident => $module:ident),* $(,)?) => {
        #[derive(Debug, Subcommand)]
        pub enum Command {
            $(#[command(flatten)] $variant($module::Cmd),)*
        }

        impl Command {
            fn scope(&self) -> Scope<'_> {
                match self {
                    $(Command::$variant(c) => c.scope(),)*
                }
            }

            async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
                match self {
                    $(Command::$variant(c) => c.run(ctx).await,)*
                }
            }
        }

        /// Every namespace and dokku's words for it, sorted.
        fn namespaces() -> Vec<(&'static str, &'static str)> {
            let mut all: Vec<(&'static str, &'static str)> = [$($module::NAMESPACES),*].concat();
            all.sort_unstable();
            all
        }
    };
}

namespaces! {
    Apps => apps,
    Config => config,
    Domains => domains,
    Ports => ports,
    Git => git,
    Checks => checks,
    Ps => ps,
    Run => run,
    Resources => resources,
    Logs => logs,
    Releases => releases,
    Build => build,
    Certs => certs,
    Letsencrypt => letsencrypt,
    Nginx => nginx,
    Keys => keys,
    Cron => cron,
    Network => network,
    Repo => repo,
    Proxy => proxy,
    DockerOptions => docker_options,
    Scheduler => scheduler,
    Cluster => cluster,
    Plugin => plugin,
    Previews => previews,
    Postgres => postgres,
    Redis => redis,
    Doctor => doctor,
    Tokens => tokens,
    Events => events,
    Dashboard => dashboard,
    Gates => gates,
    Metrics => metrics,
}

/// Who may run a command.
pub enum Scope<'a> {
    /// Any authenticated caller (the handler filters what it shows).
    Anyone,
    /// Callers whose role covers this app.
    App(&'a str),
    /// Admins only.
    Admin,
    /// Root on the server only (the git hook).
    Internal,
}

/// What a command that also takes `--global` acts on: one app, or the settings every app
/// gets. `--global` is written where the app would be; [`parse_line`] puts [`GLOBAL`] there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Global,
    App(AppName),
}

/// The word `--global` becomes in a command line, in the place of the app (no app name can
/// start with `@`).
pub const GLOBAL: &str = "@global";

impl std::str::FromStr for Target {
    type Err = Invalid;
    fn from_str(word: &str) -> Result<Target, Invalid> {
        if word == GLOBAL { Ok(Target::Global) } else { word.parse().map(Target::App) }
    }
}

impl Target {
    /// The global settings are an admin's; an app's are its keys' too.
    pub fn scope(&self) -> Scope<'_> {
        match self {
            Target::Global => Scope::Admin,
            Target::App(app) => Scope::App(app),
        }
    }

    pub fn app(&self) -> Option<&AppName> {
        match self {
            Target::Global => None,
            Target::App(app) => Some(app),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Global => f.write_str("--global"),
            Target::App(app) => app.fmt(f),
        }
    }
}

/// Runs one command line for `caller`, streaming to `out`; returns the exit code.
pub async fn run(engine: &Engine, caller: &Caller, argv: Vec<String>, out: Output, input: Input, terminal: Option<crate::runtime::Terminal>) -> i32 {
    // A plugin's command (`notify:set`): a namespace berth does not have, served by an
    // enabled plugin's `commands`. Admins only: it runs as root.
    if let Ok((_, words)) = take_globals(&argv)
        && let Some(first) = words.first()
        && grammar().find_subcommand(first).is_none()
        && let Some(plugin) = crate::plugins::command_plugin(engine, first)
    {
        if !caller.role.is_admin() {
            out.error(format!("Permission denied: key {} is not an admin key (plugin commands are admins')", caller.name)).await;
            return EXIT_FAILURE;
        }
        // dokku's --app reaches a plugin's command as its first argument, as berth's own.
        let (globals, _) = take_globals(&argv).unwrap_or_default();
        let mut words = words.to_vec();
        if let Some(app) = globals.app.filter(|app| words.get(1) != Some(app)) {
            words.insert(1, app);
        }
        if globals.force {
            words.push("--force".into());
        }
        return crate::plugins::run_command(engine, &plugin, &words, &caller.name, &out, input).await;
    }
    let (globals, command) = match parse_line(&argv) {
        Ok(parsed) => parsed,
        Err(Parsed::Help(text)) => {
            out.stdout(text).await;
            return 0;
        }
        Err(Parsed::Usage(message)) => {
            out.error(message).await;
            return EXIT_USAGE;
        }
        Err(Parsed::Refused(message)) => {
            out.error(message).await;
            return EXIT_FAILURE;
        }
    };
    let name = command_name(&argv);
    let app = match command.scope() {
        Scope::App(app) => Some(app.to_string()),
        _ => None,
    };
    let code = execute(engine, caller, command, &name, globals, out, input, terminal).await;
    // The hook's own commands are the push's, recorded as `git-receive-pack`.
    if name != "git:receive" {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        events::record(engine.store.root(), &events::Event { at, caller: caller.name.clone(), door: caller.door.as_str().into(), command: name, app, code });
    }
    code
}

/// dokku's `-v` and `--version` alone: the `version` command.
fn is_version_flag(rest: &[String]) -> bool {
    matches!(rest, [flag] if flag == "-v" || flag == "--version")
}

/// The canonical name of the command a line runs (an alias's command's).
fn command_name(argv: &[String]) -> String {
    let first = take_globals(argv).ok().and_then(|(_, words)| if is_version_flag(words) { Some("version".to_string()) } else { words.first().cloned() }).unwrap_or_default();
    grammar().find_subcommand(&first).map(|c| c.get_name().to_string()).unwrap_or(first)
}

#[allow(clippy::too_many_arguments)]
async fn execute(engine: &Engine, caller: &Caller, command: Command, name: &str, globals: Globals, out: Output, input: Input, terminal: Option<crate::runtime::Terminal>) -> i32 {
    if let Err(denied) = authorize(caller, &command, name) {
        out.error(denied.to_string()).await;
        return EXIT_FAILURE;
    }
    let out = if globals.quiet { out.quiet() } else { out };
    let out = match globals.info {
        Some(info) => out.with_info(info),
        None => out,
    };
    let mut ctx = Ctx { engine, caller, out: out.clone(), input, terminal };
    match command.run(&mut ctx).await {
        Ok(()) => 0,
        Err(CmdError::Exit(code)) => code,
        Err(err) => {
            out.error(err.to_string()).await;
            EXIT_FAILURE
        }
    }
}

fn may_manage(caller: &Caller, app: &str) -> CmdResult {
    if caller.role.may_manage(app) { Ok(()) } else { Err(CmdError::Denied(format!("key {} may not manage app {app}", caller.name))) }
}

fn authorize(caller: &Caller, command: &Command, name: &str) -> CmdResult {
    let needed = access::needed(name);
    if needed > caller.access {
        return Err(CmdError::Denied(format!("{} has {} access, and {name} needs {}", caller.name, caller.access.as_str(), needed.as_str())));
    }
    match command.scope() {
        Scope::Anyone => Ok(()),
        Scope::App(app) => may_manage(caller, app),
        Scope::Admin if caller.role.is_admin() && caller.access == crate::store::Access::Admin => Ok(()),
        Scope::Admin => Err(CmdError::Denied(format!("key {} is not an admin key", caller.name))),
        Scope::Internal if caller.local => Ok(()),
        Scope::Internal => Err(CmdError::Denied("this command is run by berth itself".into())),
    }
}

/// A command line that is not a command to run.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Help was asked for (or no command given): print this on stdout, exit 0.
    Help(String),
    /// The line does not parse: one line for stderr.
    Usage(String),
    /// A value was refused by its check (an app name): one line for stderr, exit 1 as any
    /// refused command.
    Refused(String),
}

/// The command grammar, built once: every lookup of a line (its command, its positionals,
/// its flags) reads it; a parse works on a copy (clap parses with a mutable command).
fn grammar() -> &'static clap::Command {
    static GRAMMAR: std::sync::OnceLock<clap::Command> = std::sync::OnceLock::new();
    GRAMMAR.get_or_init(|| {
        let mut cli = Cli::command();
        cli.build();
        cli
    })
}

/// The full command list, as `help` and a bare `ssh host` print it.
pub fn help_text() -> String {
    grammar().clone().render_help().to_string()
}

/// dokku's global flags, written before the command: `--app APP` (the command's app
/// argument may then be left out), `--force` (no confirmation), `--quiet` (no `=====>` and
/// `----->` lines), `--trace` (accepted; berth's log level is the daemon's).
#[derive(Debug, Default, PartialEq)]
pub struct Globals {
    pub app: Option<String>,
    pub force: bool,
    pub quiet: bool,
    pub trace: bool,
    /// A `NS:report`'s info flag (`--ps-restart-policy`): print that value only.
    pub info: Option<crate::output::InfoFlag>,
}

/// Splits the global flags off the front of a command line. Pure.
pub fn take_globals(argv: &[String]) -> Result<(Globals, &[String]), Parsed> {
    let mut globals = Globals::default();
    let mut rest = argv;
    while let Some(word) = rest.first() {
        match word.as_str() {
            "--force" => globals.force = true,
            "--quiet" => globals.quiet = true,
            "--trace" => globals.trace = true,
            "--app" => {
                let Some(app) = rest.get(1) else {
                    return Err(Parsed::Usage("--app needs an app name: berth --app APP COMMAND".into()));
                };
                globals.app = Some(app.clone());
                rest = &rest[1..];
            }
            w if w.starts_with("--app=") => globals.app = Some(w["--app=".len()..].to_string()),
            _ => break,
        }
        rest = &rest[1..];
    }
    Ok((globals, rest))
}

/// The command line with the global flags applied to the command's own arguments: the
/// app after the command name when it takes one first and it was left out, `--force` when
/// the command has that flag. Pure.
fn apply_globals(globals: &Globals, rest: &[String]) -> Vec<String> {
    if is_version_flag(rest) {
        return vec!["version".to_string()];
    }
    let mut words = rest.to_vec();
    let Some(name) = rest.first() else {
        return words;
    };
    let cli = grammar();
    let Some(sub) = cli.find_subcommand(name) else {
        return words;
    };
    if let Some(app) = &globals.app
        && matches!(first_positional(rest).as_deref(), Some("app" | "target"))
        && rest.get(1) != Some(app)
    {
        words.insert(1, app.clone());
    }
    if globals.force && sub.get_arguments().any(|a| a.get_id() == "force") && !words.iter().any(|w| w == "--force") {
        words.push("--force".into());
    }
    words
}

/// The name of the first positional argument of the command `words` start with: `app` for
/// a command whose app comes first, `target` for one that also takes `--global`.
fn first_positional(words: &[String]) -> Option<String> {
    let cli = grammar();
    let sub = cli.find_subcommand(words.first()?)?;
    sub.get_positionals().next().map(|a| a.get_id().as_str().to_string())
}

/// `berth help`: the namespaces, as dokku lists them.
pub fn namespaces_help() -> String {
    let all = namespaces();
    let width = all.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Usage: berth [--app APP] [--force] [--quiet] [--trace] COMMAND <app> [command-specific-options]\n\n\
         Primary help options, type \"berth COMMAND:help\" for more details, or \"berth help --all\" to see every command.\n\nCommands:\n\n",
    );
    for (name, about) in all {
        text.push_str(&format!("    {name:width$}  {about}\n"));
    }
    text
}

/// `berth NS`, `NS:help`, `NS --help`: the namespace's commands, each with its one-line help.
pub fn namespace_help(namespace: &str) -> Option<String> {
    let (_, about) = namespaces().into_iter().find(|(n, _)| *n == namespace)?;
    let cli = grammar();
    let prefix = format!("{namespace}:");
    let rows: Vec<(String, String)> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && (c.get_name() == namespace || c.get_name().starts_with(&prefix)))
        .map(|c| {
            let mut c = c.clone().bin_name(c.get_name().to_string());
            let usage = c.render_usage().to_string();
            let usage = usage.trim_start_matches("Usage: ").trim().replace(" [OPTIONS]", "").to_string();
            (usage, c.get_about().map(|a| a.to_string()).unwrap_or_default())
        })
        .collect();
    let width = rows.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut text = format!("Usage: berth {namespace}[:COMMAND]\n\n{about}\n\nAdditional commands:\n");
    for (usage, about) in rows {
        text.push_str(&format!("    {usage:width$}  {about}\n"));
    }
    Some(text)
}

/// What the first words ask for when they ask for help, not a command.
fn help_asked(words: &[String]) -> Option<String> {
    let first = words.first()?.as_str();
    let is_command = grammar().find_subcommand(first).is_some();
    let second = words.get(1).map(String::as_str);
    if first == "help" {
        return Some(if second == Some("--all") { help_text() } else { namespaces_help() });
    }
    if let Some(namespace) = first.strip_suffix(":help") {
        return namespace_help(namespace);
    }
    if !is_command && (words.len() == 1 || matches!(second, Some("--help" | "-h"))) {
        return namespace_help(first);
    }
    None
}

/// The command an argv names (pure: also what the fuzz targets drive).
pub fn parse(argv: &[String]) -> Result<Command, Parsed> {
    parse_line(argv).map(|(_, command)| command)
}

/// The global flags and the command an argv names. Pure.
pub fn parse_line(argv: &[String]) -> Result<(Globals, Command), Parsed> {
    let (mut globals, rest) = take_globals(argv)?;
    let mut words = apply_globals(&globals, rest);
    globals.info = take_info_flag(&mut words)?;
    // `--global` stands where the app would, for a command that takes either.
    if first_positional(&words).as_deref() == Some("target") && words.iter().any(|w| w == "--global") {
        words.retain(|w| w != "--global");
        words.insert(1, GLOBAL.to_string());
    }
    parse_command(&words).map(|command| (globals, command))
}

/// dokku's info flag of a `NS:report` (any `--flag` the report command does not have
/// itself), taken out of the words; which flags are valid depends on the report's rows, so
/// it is checked when the report prints. Pure.
fn take_info_flag(words: &mut Vec<String>) -> Result<Option<crate::output::InfoFlag>, Parsed> {
    let Some(namespace) = words.first().and_then(|w| w.strip_suffix(":report")).map(str::to_string) else {
        return Ok(None);
    };
    let cli = grammar();
    let Some(sub) = cli.find_subcommand(&words[0]) else {
        return Ok(None);
    };
    let own: Vec<String> = sub.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).chain(["help".to_string()]).collect();
    let is_info = |w: &String| w.starts_with("--") && !own.iter().any(|o| w[2..].split('=').next() == Some(o.as_str()));
    let flags: Vec<String> = words.iter().filter(|w| is_info(w)).cloned().collect();
    if flags.len() > 1 {
        return Err(Parsed::Usage(format!("Only one info flag at a time: {}", flags.join(" "))));
    }
    words.retain(|w| !is_info(w));
    let prefix = if namespace == "apps" { "app" } else { namespace.as_str() };
    Ok(flags.into_iter().next().map(|flag| crate::output::InfoFlag { prefix: prefix.to_string(), flag }))
}

fn parse_command(argv: &[String]) -> Result<Command, Parsed> {
    let Some(first) = argv.first() else {
        return Err(Parsed::Help(namespaces_help()));
    };
    let size: usize = argv.iter().map(|w| w.len() + 1).sum();
    if size > MAX_COMMAND_LINE {
        return Err(Parsed::Usage(format!("The command line is {} KiB: berth takes at most {} KiB", size / 1024, MAX_COMMAND_LINE / 1024)));
    }
    // What the user typed is echoed back short: a name, not a 100 KB blob.
    let first = &shortened(first, 60);
    if matches!(first.as_str(), "--help" | "-h") {
        return Err(Parsed::Help(help_text()));
    }
    if let Some(help) = help_asked(argv) {
        return Err(Parsed::Help(help));
    }
    let words = std::iter::once("berth".to_string()).chain(argv.iter().cloned());
    match grammar().clone().try_get_matches_from(words).and_then(|matches| Cli::from_arg_matches(&matches)) {
        Ok(cli) => Ok(cli.command),
        Err(err) => Err(match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Parsed::Help(err.to_string()),
            ErrorKind::ValueValidation if let Some(invalid) = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<Invalid>()) => {
                Parsed::Refused(invalid.to_string())
            }
            ErrorKind::InvalidSubcommand => Parsed::Usage(format!("`{}` is not a berth command.", first.escape_debug())),
            _ => Parsed::Usage(format!("{} (see `berth {} --help`)", shortened(&one_line(&err.to_string()), 300), first)),
        }),
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

/// Clap's message, reduced to one line: the part before the usage, whitespace collapsed.
fn one_line(message: &str) -> String {
    let body = message.split("\n\n").next().unwrap_or(message);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        shell_words::split(line).unwrap()
    }

    #[test]
    fn parses_dokku_style_commands() {
        match parse(&words("config:set myapp 'GREETING=hello world' PORT=5000 --no-restart")).unwrap() {
            Command::Config(config::Cmd::Set { target, pairs, no_restart, encoded, .. }) => {
                assert_eq!(target, Target::App("myapp".parse().unwrap()));
                assert_eq!(pairs, vec!["GREETING=hello world", "PORT=5000"]);
                assert!(no_restart);
                assert!(!encoded);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&words("apps:report myapp --format json")).unwrap(), Command::Apps(apps::Cmd::Report(report::ReportArgs { format: crate::output::Format::Json, .. }))));
    }

    #[test]
    fn oversized_input_is_refused_and_echoed_short() {
        let huge = "x".repeat(100_000);
        let Err(Parsed::Usage(message)) = parse(std::slice::from_ref(&huge)) else { panic!() };
        assert!(message.len() < 200, "{message}");
        let Err(Parsed::Usage(message)) = parse(&["config:set".into(), "app".into(), format!("A={}", "y".repeat(MAX_COMMAND_LINE))]) else { panic!() };
        assert!(message.starts_with("The command line is 192 KiB"), "{message}");
        let Err(Parsed::Usage(message)) = parse(&["logs".into(), "app".into(), "-n".into(), huge.clone()]) else { panic!() };
        assert!(message.len() < 500, "{message}");
    }

    #[test]
    fn unknown_commands_are_named() {
        assert_eq!(parse(&words("nope:x a")).unwrap_err(), Parsed::Usage("`nope:x` is not a berth command.".into()));
    }

    #[test]
    fn dokku_global_flags_come_before_the_command() {
        let (globals, command) = parse_line(&words("--app myapp --quiet --trace config:show")).unwrap();
        assert_eq!(globals, Globals { app: Some("myapp".into()), force: false, quiet: true, trace: true, info: None });
        assert!(matches!(command, Command::Config(config::Cmd::Show { target: Target::App(app), .. }) if app == *"myapp"));
        // The app given twice is taken once.
        assert!(matches!(parse(&words("--app=myapp config:show myapp")).unwrap(), Command::Config(config::Cmd::Show { target: Target::App(app), .. }) if app == *"myapp"));
        // --force reaches a command that has it, and is ignored by one that does not.
        assert!(matches!(parse(&words("--force apps:destroy x")).unwrap(), Command::Apps(apps::Cmd::Destroy { app, force: true }) if app == *"x"));
        assert!(matches!(parse(&words("--force --app x apps:destroy")).unwrap(), Command::Apps(apps::Cmd::Destroy { app, force: true }) if app == *"x"));
        assert!(matches!(parse(&words("--force apps:list")).unwrap(), Command::Apps(apps::Cmd::List { .. })));
        assert!(matches!(parse(&words("--app")).unwrap_err(), Parsed::Usage(m) if m.contains("--app needs an app name")));
        // A command whose first argument is not an app gets no app inserted.
        assert!(matches!(parse(&words("--app x ssh-keys:list")).unwrap(), Command::Keys(keys::Cmd::List { .. })));
    }

    #[test]
    fn report_info_flags_are_taken_out_for_the_report() {
        let (globals, command) = parse_line(&words("ps:report myapp --ps-restart-policy")).unwrap();
        assert_eq!(globals.info, Some(crate::output::InfoFlag { prefix: "ps".into(), flag: "--ps-restart-policy".into() }));
        assert!(matches!(command, Command::Ps(ps::Cmd::Report(report::ReportArgs { app: Some(a), .. })) if a == *"myapp"));
        let (globals, _) = parse_line(&words("apps:report x --app-locked --format json")).unwrap();
        assert_eq!(globals.info.unwrap().flag, "--app-locked");
        assert!(parse_line(&words("apps:report x --format json")).unwrap().0.info.is_none());
        assert!(matches!(parse_line(&words("ps:report x --a --b")).unwrap_err(), Parsed::Usage(m) if m.contains("one info flag")));
        assert_eq!(crate::output::info_flag("app", "App locked"), "--app-locked");
        assert_eq!(crate::output::info_flag("ps", "Restart policy"), "--ps-restart-policy");
    }

    #[test]
    fn namespace_help_is_the_same_three_ways() {
        let help = |line: &str| match parse(&words(line)).unwrap_err() {
            Parsed::Help(text) => text,
            other => panic!("{line}: {other:?}"),
        };
        let apps = help("apps");
        assert!(apps.starts_with("Usage: berth apps[:COMMAND]\n\nManage apps\n"), "{apps}");
        assert!(apps.contains("apps:create <APP>") && apps.contains("Create an app"), "{apps}");
        assert!(!apps.contains("config:"), "{apps}");
        assert_eq!(help("apps:help"), apps);
        assert_eq!(help("apps --help"), apps);
        // git:receive is berth's own: not listed.
        assert!(!help("git").contains("git:receive"));
        let all = help("help");
        assert!(all.contains("    apps ") && all.contains("Manage apps") && all.contains("letsencrypt"), "{all}");
        assert!(help("help --all").contains("config:set"));
        // A namespace that is also a command runs as the command.
        assert!(matches!(parse(&words("releases x")).unwrap(), Command::Releases(releases::Cmd::List { .. })));
        assert!(matches!(parse(&words("nope")).unwrap_err(), Parsed::Usage(m) if m == "`nope` is not a berth command."));
    }

    #[test]
    fn app_names_are_checked_once_when_parsed() {
        let refused = |line: &str| match parse(&words(line)).unwrap_err() {
            Parsed::Refused(message) => message,
            other => panic!("{line}: {other:?}"),
        };
        assert!(refused("config:show Ghost").starts_with("Invalid app name \"Ghost\""));
        assert!(refused("apps:report ../etc").starts_with("Invalid app name"));
        // Creating (or renaming to) a name also checks what Docker and DNS can carry.
        assert!(refused("apps:create web-").contains("cannot end with a dash"));
        assert!(refused("apps:rename ok web.-x").contains("a dot cannot touch a dash"));
        assert!(matches!(parse(&words("apps:rename web- ok")).unwrap(), Command::Apps(apps::Cmd::Rename { .. })));
        // A git path names one app, however the client spells it.
        for path in ["myapp", "/myapp", "myapp.git", "~/myapp/"] {
            assert!(matches!(parse(&["git-receive-pack".into(), path.into()]).unwrap(), Command::Git(git::Cmd::ReceivePack { app }) if app == *"myapp"), "{path}");
        }
        assert!(refused("git-upload-pack /etc/passwd").starts_with("Invalid app name"));
    }

    #[test]
    fn global_stands_where_the_app_would() {
        let target = |line: &str| match parse(&words(line)).unwrap() {
            Command::Config(config::Cmd::Set { target, .. } | config::Cmd::Show { target, .. }) => target,
            Command::Letsencrypt(letsencrypt::Cmd::Set(args)) => args.target,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(target("config:set --global A=1"), Target::Global);
        assert_eq!(target("config:set A=1 --global --no-restart"), Target::Global);
        assert_eq!(target("config:show --global"), Target::Global);
        assert_eq!(target("config:show myapp"), Target::App("myapp".parse().unwrap()));
        assert_eq!(target("letsencrypt:set --global email a@b.c"), Target::Global);
        assert!(matches!(Target::Global.scope(), Scope::Admin));
        // A report's --global is its own flag, not an app.
        assert!(matches!(parse(&words("domains:report --global")).unwrap(), Command::Domains(domains::Cmd::Report(report::ReportArgs { global: true, app: None, .. }))));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let Parsed::Usage(msg) = parse(&words("domains:add myapp")).unwrap_err() else { panic!() };
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("DOMAINS"), "{msg}");
        let Parsed::Usage(msg) = parse(&words("apps:report x --format yaml")).unwrap_err() else { panic!() };
        assert!(!msg.contains('\n') && msg.contains("yaml"), "{msg}");
    }

    #[test]
    fn help_lists_every_command() {
        let Parsed::Help(text) = parse(&words("help --all")).unwrap_err() else { panic!() };
        for name in ["apps:create", "config:set", "domains:set-global", "ports:list", "ssh-keys:add"] {
            assert!(text.contains(name), "{name} missing from help");
        }
        assert!(matches!(parse(&words("help")).unwrap_err(), Parsed::Help(_)));
        let Parsed::Help(text) = parse(&words("apps:create --help")).unwrap_err() else { panic!() };
        assert!(text.contains("<APP>"), "{text}");
    }
}
