//! The command grammar and the dispatcher every front door calls.
//!
//! A command line arrives already split into words (shell-words rules for SSH, argv for the
//! local CLI). It is parsed by clap into a typed [`Command`], authorized against the caller's
//! role, and run by the handler of its namespace. Handlers write to [`Output`] and return a
//! [`CmdError`]; this module turns that into the ` !     message` line and the exit code.

pub mod apps;
mod build;
mod certs;
mod checks;
mod config;
mod doctor;
mod domains;
mod git;
pub mod keys;
mod letsencrypt;
mod logs;
mod nginx;
mod ports;
mod ps;
mod releases;
mod resources;
mod run;

use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};

use crate::engine::{Caller, Engine};
use crate::output::{Format, Input, Output};
use crate::store::StoreError;
use crate::validate::Invalid;

/// Exit code of a refused or failed command (never 255, which is ssh's own).
pub const EXIT_FAILURE: i32 = 1;
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

pub fn failed(msg: impl Into<String>) -> CmdError {
    CmdError::Failed(msg.into())
}

/// dokku's refusal of an `NS:set` property it does not have, naming the valid ones (sorted).
pub fn invalid_property(key: &str, valid: &[&str]) -> CmdError {
    let mut valid = valid.to_vec();
    valid.sort_unstable();
    failed(format!("Invalid property specified ({}), valid properties include: {}", crate::validate::quoted(key), valid.join(", ")))
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print berth's version
    #[command(name = "version")]
    Version,

    /// Check this server: Docker, nginx, ports, DNS of the global domain, disk, clock, certificates
    #[command(name = "doctor")]
    Doctor,

    /// Create an app
    #[command(name = "apps:create")]
    AppsCreate { app: String },
    /// Destroy an app and everything berth keeps for it
    #[command(name = "apps:destroy")]
    AppsDestroy {
        app: String,
        /// Do not ask for the app's name to confirm
        #[arg(long)]
        force: bool,
    },
    /// List apps
    #[command(name = "apps:list")]
    AppsList {
        /// Names only, without the header
        #[arg(long, short)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Exit 0 if the app exists, 1 if not
    #[command(name = "apps:exists")]
    AppsExists { app: String },
    /// Rename an app
    #[command(name = "apps:rename")]
    AppsRename { old: String, new: String },
    /// Show an app's information (all apps without APP)
    #[command(name = "apps:report")]
    AppsReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Refuse deploys of an app until unlocked
    #[command(name = "apps:lock")]
    AppsLock { app: String },
    /// Copy an app: its config, settings and git repository (not its domains, storage or
    /// certificates), then deploy the copy
    #[command(name = "apps:clone")]
    AppsClone {
        old: String,
        new: String,
        /// Do not deploy the copy
        #[arg(long)]
        skip_deploy: bool,
        /// Do nothing (and succeed) if the new app exists
        #[arg(long)]
        ignore_existing: bool,
    },
    /// Exit 0 if deploys of the app are locked, 1 if not
    #[command(name = "apps:locked")]
    AppsLocked { app: String },
    /// Allow deploys of an app again
    #[command(name = "apps:unlock")]
    AppsUnlock { app: String },

    /// Set env vars: KEY=value…
    #[command(name = "config:set")]
    ConfigSet {
        app: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Do not restart the app to apply the change
        #[arg(long)]
        no_restart: bool,
        /// Values are base64-encoded
        #[arg(long)]
        encoded: bool,
    },
    /// Unset every env var of an app
    #[command(name = "config:clear")]
    ConfigClear {
        app: String,
        /// Do not restart the app
        #[arg(long)]
        no_restart: bool,
    },
    /// Set env vars from an env file on stdin (KEY=value lines): config:import APP - < .env
    #[command(name = "config:import")]
    ConfigImport {
        app: String,
        /// `-`: stdin (the only source)
        source: Option<String>,
        /// Also unset the keys the file does not name
        #[arg(long)]
        replace: bool,
        /// Do not restart the app
        #[arg(long)]
        no_restart: bool,
    },
    /// Unset env vars
    #[command(name = "config:unset")]
    ConfigUnset {
        app: String,
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        no_restart: bool,
    },
    /// Print one env var's value
    #[command(name = "config:get")]
    ConfigGet { app: String, key: String },
    /// Show an app's env vars
    #[command(name = "config:show")]
    ConfigShow {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print an app's env vars for a shell or an env file
    #[command(name = "config:export")]
    ConfigExport {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: config::ExportFormat,
    },
    /// List the env var names of an app
    #[command(name = "config:keys")]
    ConfigKeys { app: String },

    /// Add domains to an app
    #[command(name = "domains:add")]
    DomainsAdd {
        app: String,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove domains from an app
    #[command(name = "domains:remove")]
    DomainsRemove {
        app: String,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Replace an app's domains
    #[command(name = "domains:set")]
    DomainsSet {
        app: String,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove all of an app's domains
    #[command(name = "domains:clear")]
    DomainsClear { app: String },
    /// Show an app's domains (all apps without APP)
    #[command(name = "domains:report")]
    DomainsReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// The global domains only
        #[arg(long)]
        global: bool,
    },
    /// Add global domains: new apps get APP.DOMAIN
    #[command(name = "domains:add-global")]
    DomainsAddGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove global domains (apps' default names under them go too)
    #[command(name = "domains:remove-global")]
    DomainsRemoveGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Set the global domains: new apps get APP.DOMAIN
    #[command(name = "domains:set-global")]
    DomainsSetGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove all global domains
    #[command(name = "domains:clear-global")]
    DomainsClearGlobal,

    /// List an app's port mappings
    #[command(name = "ports:list")]
    PortsList {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// One `scheme:host:container` per line, without the table
        #[arg(long, short)]
        quiet: bool,
    },
    /// Replace an app's port mappings: scheme:host-port:container-port…
    #[command(name = "ports:set")]
    PortsSet {
        app: String,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER")]
        maps: Vec<String>,
    },
    /// Add port mappings
    #[command(name = "ports:add")]
    PortsAdd {
        app: String,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER")]
        maps: Vec<String>,
    },
    /// Remove port mappings (a full mapping, or a host port)
    #[command(name = "ports:remove")]
    PortsRemove {
        app: String,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER|HOST")]
        maps: Vec<String>,
    },
    /// Go back to the default mapping, http:80:5000
    #[command(name = "ports:clear")]
    PortsClear { app: String },
    /// Show an app's port mappings (all apps without APP)
    #[command(name = "ports:report")]
    PortsReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Set a git setting: deploy-branch NAME (no NAME: back to main or master)
    #[command(name = "git:set")]
    GitSet { app: String, key: String, value: Option<String> },
    /// Show an app's git settings
    #[command(name = "git:report")]
    GitReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Deploy an image built elsewhere (on this server's engine, or pulled)
    #[command(name = "git:from-image")]
    GitFromImage { app: String, image: String },
    /// Deploy an image from a `docker save` archive on stdin: docker save IMG | ssh … git:load-image APP
    #[command(name = "git:load-image")]
    GitLoadImage { app: String, image: Option<String> },
    /// (internal) deploy a pushed commit; called by the git hook
    #[command(name = "git:receive", hide = true)]
    GitReceive {
        app: String,
        old: String,
        new: String,
        refname: String,
        /// The build context the hook wrote (a tar in `<root>/tmp`)
        #[arg(long)]
        context: std::path::PathBuf,
        /// The `git receive-pack` running the hook: the branch moves before it exits
        #[arg(long)]
        receive_pack: Option<i32>,
    },

    /// Set a readiness check setting: timeout SECONDS | wait-to-retire SECONDS | attempts N
    #[command(name = "checks:set")]
    ChecksSet { app: String, key: String, value: String },
    /// Turn readiness checks off; old containers stop as soon as new ones run
    #[command(name = "checks:disable")]
    ChecksDisable {
        app: String,
        /// dokku's process types (`web,worker`): berth's checks are for web only
        processes: Option<String>,
    },
    /// Turn readiness checks back on
    #[command(name = "checks:enable")]
    ChecksEnable {
        app: String,
        /// dokku's process types (`web,worker`): berth's checks are for web only
        processes: Option<String>,
    },
    /// Move traffic as soon as new containers run, without checks
    #[command(name = "checks:skip")]
    ChecksSkip {
        app: String,
        /// dokku's process types (`web,worker`): berth's checks are for web only
        processes: Option<String>,
    },
    /// Show an app's check settings
    #[command(name = "checks:report")]
    ChecksReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Restart an app: a new release of the running image with the current config
    #[command(name = "ps:restart")]
    PsRestart { app: String },
    /// Build the deploy branch again and deploy it
    #[command(name = "ps:rebuild")]
    PsRebuild { app: String },
    /// Set how many containers of each process type run (web=2 worker=1); none: show it
    #[command(name = "ps:scale")]
    PsScale { app: String, scale: Vec<String> },
    /// Start a stopped app's processes again
    #[command(name = "ps:start")]
    PsStart { app: String },
    /// Stop an app's processes (kept stopped across restarts until ps:start)
    #[command(name = "ps:stop")]
    PsStop { app: String },
    /// Set a process setting: restart-policy no|always|unless-stopped|on-failure[:N]
    #[command(name = "ps:set")]
    PsSet { app: String, key: String, value: String },
    /// Run a command (default /bin/sh) inside a running container (default: the first)
    #[command(name = "enter")]
    Enter {
        app: String,
        /// PROCESS.N, e.g. web.1
        target: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Mount a directory into the app's containers: NAME:/path (under the berth root) or /host/path:/path (admins), :ro for read-only
    #[command(name = "storage:mount")]
    StorageMount { app: String, mount: String },
    /// Remove a mount (the host directory and its files stay)
    #[command(name = "storage:unmount")]
    StorageUnmount { app: String, mount: String },
    /// List an app's mounts
    #[command(name = "storage:list")]
    StorageList {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Limit the memory and CPUs of an app's containers (every process type, or one)
    #[command(name = "resource:limit")]
    ResourceLimit {
        app: String,
        /// e.g. 256m, 1g
        #[arg(long)]
        memory: Option<String>,
        /// e.g. 0.5, 2
        #[arg(long = "cpu")]
        cpus: Option<String>,
        /// Only this process type
        #[arg(long, visible_alias = "process-type")]
        process: Option<String>,
    },
    /// Remove limits (of every process type, or of one)
    #[command(name = "resource:limit-clear")]
    ResourceLimitClear {
        app: String,
        #[arg(long, visible_alias = "process-type")]
        process: Option<String>,
    },
    /// Show an app's limits
    #[command(name = "resource:report")]
    ResourceReport {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show an app's output: its running containers, merged, prefixed by process
    #[command(name = "logs")]
    Logs {
        app: String,
        /// Keep following new output
        #[arg(short = 't', long = "tail")]
        follow: bool,
        /// How many lines of history
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        lines: usize,
        /// Only this process type
        #[arg(short = 'p', long = "ps")]
        process: Option<String>,
    },
    /// Run a one-off command in a new container of the app's release, with its env
    #[command(name = "run")]
    Run {
        app: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List an app's releases, newest first
    #[command(name = "releases")]
    Releases {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Serve an earlier release again (default: the one before the active one), no build
    #[command(name = "releases:rollback")]
    ReleasesRollback { app: String, version: Option<String> },
    /// Set a release setting: keep N (images kept for rollbacks, default 5)
    #[command(name = "releases:set")]
    ReleasesSet { app: String, key: String, value: String },
    /// Show an app's containers
    #[command(name = "ps:report")]
    PsReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Build the stack image buildpack builds run in (debootstrap when no registry answers)
    #[command(name = "stack:build")]
    StackBuild {
        /// Build it again even if it exists
        #[arg(long)]
        force: bool,
    },
    /// Show the stack image and the built-in buildpacks
    #[command(name = "stack:report")]
    StackReport {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Add a buildpack (a built-in name or a git URL)
    #[command(name = "buildpacks:add")]
    BuildpacksAdd {
        app: String,
        buildpack: String,
        /// Position in the list, from 1
        #[arg(long)]
        index: Option<usize>,
    },
    /// Replace an app's buildpacks
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        app: String,
        #[arg(required = true)]
        buildpacks: Vec<String>,
    },
    /// Remove a buildpack
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove { app: String, buildpack: String },
    /// Go back to detecting the buildpack
    #[command(name = "buildpacks:clear")]
    BuildpacksClear { app: String },
    /// List an app's buildpacks
    #[command(name = "buildpacks:list")]
    BuildpacksList { app: String },
    /// Choose how an app is built: dockerfile | buildpacks | detect
    #[command(name = "builder:set")]
    BuilderSet { app: String, builder: BuilderChoice },
    /// Show an app's builder
    #[command(name = "builder:report")]
    BuilderReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Add a certificate: a tar on stdin with server.crt (the chain, PEM) and server.key
    #[command(name = "certs:add")]
    CertsAdd { app: String },
    /// Serve a self-signed certificate for DOMAIN (default: every domain of the app), for testing
    #[command(name = "certs:generate")]
    CertsGenerate { app: String, domain: Option<String> },
    /// Remove an app's certificate: back to plain http
    #[command(name = "certs:remove")]
    CertsRemove { app: String },
    /// Show an app's certificate: source, issuer, subject, names, expiry
    #[command(name = "certs:report")]
    CertsReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Set a Let's Encrypt setting: email ADDRESS | server DIRECTORY_URL | graceperiod SECONDS (no value: unset)
    #[command(name = "letsencrypt:set")]
    LetsencryptSet {
        /// For every app (admins only), instead of one app
        #[arg(long)]
        global: bool,
        #[arg(value_name = "APP KEY [VALUE]", num_args = 1..=3, required = true)]
        args: Vec<String>,
    },
    /// Get a certificate for every domain of the app from Let's Encrypt and serve it at once
    #[command(name = "letsencrypt:enable")]
    LetsencryptEnable { app: String },
    /// Stop renewing and remove the app's Let's Encrypt certificate
    #[command(name = "letsencrypt:disable")]
    LetsencryptDisable { app: String },
    /// List apps with Let's Encrypt: expiry, days left, renewal status
    #[command(name = "letsencrypt:list")]
    LetsencryptList {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Renew now the certificates that are due (of every app, or of APP)
    #[command(name = "letsencrypt:auto-renew")]
    LetsencryptAutoRenew {
        app: Option<String>,
        /// Renew even if not due
        #[arg(long)]
        force: bool,
    },
    /// Show an app's Let's Encrypt settings and certificate state
    #[command(name = "letsencrypt:report")]
    LetsencryptReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Set an nginx property: hsts | hsts-include-subdomains | hsts-preload true|false, hsts-max-age SECONDS (no value: default)
    #[command(name = "nginx:set")]
    NginxSet { app: String, key: String, value: Option<String> },
    /// Show an app's nginx properties
    #[command(name = "nginx:report")]
    NginxReport {
        app: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },

    /// Add an SSH public key (read from stdin); admin unless --app is given
    #[command(name = "ssh-keys:add")]
    KeysAdd {
        name: String,
        /// Limit the key to these apps (repeatable)
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
    },
    /// List SSH keys
    #[command(name = "ssh-keys:list")]
    KeysList {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove an SSH key by name
    #[command(name = "ssh-keys:remove")]
    KeysRemove { name: String },
}

/// `builder:set` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderChoice {
    Dockerfile,
    Buildpacks,
    Detect,
}

/// Who may run a command.
enum Scope<'a> {
    /// Any authenticated caller (the handler filters what it shows).
    Anyone,
    /// Callers whose role covers this app.
    App(&'a str),
    /// Admins only.
    Admin,
    /// Root on the server only (the git hook).
    Internal,
}

impl Command {
    fn scope(&self) -> Scope<'_> {
        use Command::*;
        match self {
            Version | AppsList { .. } | LetsencryptList { .. } => Scope::Anyone,
            LetsencryptSet { global: true, .. } => Scope::Admin,
            LetsencryptSet { args, .. } => args.first().map_or(Scope::Admin, |app| Scope::App(app)),
            AppsReport { app, .. }
            | DomainsReport { app, .. }
            | PortsReport { app, .. }
            | GitReport { app, .. }
            | ChecksReport { app, .. }
            | PsReport { app, .. }
            | CertsReport { app, .. }
            | LetsencryptReport { app, .. }
            | LetsencryptAutoRenew { app, .. }
            | NginxReport { app, .. }
            | BuilderReport { app, .. } => {
                app.as_deref().map_or(Scope::Anyone, Scope::App)
            }
            AppsExists { app }
            | AppsLock { app }
            | AppsLocked { app }
            | ConfigSet { app, .. }
            | ConfigClear { app, .. }
            | ConfigImport { app, .. }
            | ConfigUnset { app, .. }
            | ConfigGet { app, .. }
            | ConfigShow { app, .. }
            | ConfigExport { app, .. }
            | ConfigKeys { app }
            | DomainsAdd { app, .. }
            | DomainsRemove { app, .. }
            | DomainsSet { app, .. }
            | DomainsClear { app }
            | PortsList { app, .. }
            | PortsSet { app, .. }
            | PortsAdd { app, .. }
            | PortsRemove { app, .. }
            | PortsClear { app }
            | GitSet { app, .. }
            | GitFromImage { app, .. }
            | GitLoadImage { app, .. }
            | ChecksSet { app, .. }
            | ChecksDisable { app, .. }
            | ChecksEnable { app, .. }
            | ChecksSkip { app, .. }
            | PsRestart { app }
            | PsRebuild { app }
            | PsScale { app, .. }
            | PsStart { app }
            | PsStop { app }
            | PsSet { app, .. }
            | Enter { app, .. }
            | StorageMount { app, .. }
            | StorageUnmount { app, .. }
            | StorageList { app, .. }
            | ResourceReport { app, .. }
            | BuildpacksAdd { app, .. }
            | BuildpacksSet { app, .. }
            | BuildpacksRemove { app, .. }
            | BuildpacksClear { app }
            | BuildpacksList { app }
            | BuilderSet { app, .. }
            | Releases { app, .. }
            | Logs { app, .. }
            | Run { app, .. }
            | ReleasesRollback { app, .. }
            | ReleasesSet { app, .. }
            | CertsAdd { app }
            | CertsGenerate { app, .. }
            | CertsRemove { app }
            | LetsencryptEnable { app }
            | LetsencryptDisable { app }
            | NginxSet { app, .. } => Scope::App(app),
            StackReport { .. } => Scope::Anyone,
            StackBuild { .. } => Scope::Admin,
            GitReceive { .. } => Scope::Internal,
            // An admin's lock and limits hold against the app's own keys.
            AppsUnlock { .. } | ResourceLimit { .. } | ResourceLimitClear { .. } => Scope::Admin,
            AppsCreate { .. } | AppsDestroy { .. } | AppsRename { .. } | AppsClone { .. } | DomainsSetGlobal { .. } | DomainsAddGlobal { .. } | DomainsRemoveGlobal { .. }
            | DomainsClearGlobal | Doctor | KeysAdd { .. } | KeysList { .. } | KeysRemove { .. } => Scope::Admin,
        }
    }
}

/// Runs one command line for `caller`, streaming to `out`; returns the exit code.
pub async fn run(engine: &Engine, caller: &Caller, argv: Vec<String>, out: Output, input: Input, terminal: Option<crate::runtime::Terminal>) -> i32 {
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
    };
    if let Err(denied) = authorize(caller, &command) {
        out.error(denied.to_string()).await;
        return EXIT_FAILURE;
    }
    let out = if globals.quiet { out.quiet() } else { out };
    let out = match globals.info {
        Some(info) => out.with_info(info),
        None => out,
    };
    let mut ctx = Ctx { engine, caller, out: out.clone(), input, terminal };
    match execute(&mut ctx, command).await {
        Ok(()) => 0,
        Err(CmdError::Exit(code)) => code,
        Err(err) => {
            out.error(err.to_string()).await;
            EXIT_FAILURE
        }
    }
}

fn authorize(caller: &Caller, command: &Command) -> CmdResult {
    match command.scope() {
        Scope::Anyone => Ok(()),
        Scope::App(app) if caller.role.may_manage(app) => Ok(()),
        Scope::App(app) => Err(CmdError::Denied(format!("key {} may not manage app {app}", caller.name))),
        Scope::Admin if caller.role.is_admin() => Ok(()),
        Scope::Admin => Err(CmdError::Denied(format!("key {} is not an admin key", caller.name))),
        Scope::Internal if caller.local => Ok(()),
        Scope::Internal => Err(CmdError::Denied("this command is run by berth itself".into())),
    }
}

async fn execute(ctx: &mut Ctx<'_>, command: Command) -> CmdResult {
    use Command::*;
    match command {
        Version => {
            ctx.out.line(format!("berth {}", env!("CARGO_PKG_VERSION"))).await;
            Ok(())
        }
        Doctor => doctor::run(ctx).await,
        AppsCreate { app } => apps::create(ctx, &app).await,
        AppsDestroy { app, force } => apps::destroy(ctx, &app, force).await,
        AppsList { quiet, format } => apps::list(ctx, quiet, format).await,
        AppsExists { app } => apps::exists(ctx, &app).await,
        AppsRename { old, new } => apps::rename(ctx, &old, &new).await,
        AppsReport { app, format } => apps::report(ctx, app.as_deref(), format).await,
        AppsLock { app } => apps::set_locked(ctx, &app, true).await,
        AppsLocked { app } => apps::locked(ctx, &app).await,
        AppsClone { old, new, skip_deploy, ignore_existing } => apps::clone(ctx, &old, &new, skip_deploy, ignore_existing).await,
        AppsUnlock { app } => apps::set_locked(ctx, &app, false).await,
        ConfigSet { app, pairs, no_restart, encoded } => config::set(ctx, &app, &pairs, encoded, no_restart).await,
        ConfigUnset { app, keys, no_restart } => config::unset(ctx, &app, &keys, no_restart).await,
        ConfigGet { app, key } => config::get(ctx, &app, &key).await,
        ConfigShow { app, format } => config::show(ctx, &app, format).await,
        ConfigExport { app, format } => config::export(ctx, &app, format).await,
        ConfigKeys { app } => config::keys(ctx, &app).await,
        ConfigClear { app, no_restart } => config::clear(ctx, &app, no_restart).await,
        ConfigImport { app, source, replace, no_restart } => config::import(ctx, &app, source.as_deref(), replace, no_restart).await,
        DomainsAdd { app, domains } => domains::change(ctx, &app, domains::Change::Add(domains)).await,
        DomainsRemove { app, domains } => domains::change(ctx, &app, domains::Change::Remove(domains)).await,
        DomainsSet { app, domains } => domains::change(ctx, &app, domains::Change::Set(domains)).await,
        DomainsClear { app } => domains::change(ctx, &app, domains::Change::Clear).await,
        DomainsReport { app, format, global } => domains::report(ctx, app.as_deref(), format, global).await,
        DomainsAddGlobal { domains } => domains::change_global(ctx, &domains, true).await,
        DomainsRemoveGlobal { domains } => domains::change_global(ctx, &domains, false).await,
        DomainsSetGlobal { domains } => domains::set_global(ctx, &domains).await,
        DomainsClearGlobal => domains::set_global(ctx, &[]).await,
        PortsList { app, format, quiet } => ports::list(ctx, &app, format, quiet).await,
        PortsSet { app, maps } => ports::change(ctx, &app, ports::Change::Set(maps)).await,
        PortsAdd { app, maps } => ports::change(ctx, &app, ports::Change::Add(maps)).await,
        PortsRemove { app, maps } => ports::change(ctx, &app, ports::Change::Remove(maps)).await,
        PortsClear { app } => ports::change(ctx, &app, ports::Change::Clear).await,
        PortsReport { app, format } => ports::report(ctx, app.as_deref(), format).await,
        GitSet { app, key, value } => git::set(ctx, &app, &key, value.as_deref()).await,
        GitReport { app, format } => git::report(ctx, app.as_deref(), format).await,
        GitFromImage { app, image } => git::from_image(ctx, &app, &image).await,
        GitLoadImage { app, image } => git::load_image(ctx, &app, image.as_deref()).await,
        GitReceive { app, old, new, refname, context, receive_pack } => git::receive(ctx, &app, &old, &new, &refname, &context, receive_pack).await,
        ChecksSet { app, key, value } => checks::set(ctx, &app, &key, &value).await,
        ChecksDisable { app, processes } => checks::set_mode(ctx, &app, checks::Mode::Disable, processes.as_deref()).await,
        ChecksEnable { app, processes } => checks::set_mode(ctx, &app, checks::Mode::Enable, processes.as_deref()).await,
        ChecksSkip { app, processes } => checks::set_mode(ctx, &app, checks::Mode::Skip, processes.as_deref()).await,
        ChecksReport { app, format } => checks::report(ctx, app.as_deref(), format).await,
        PsRestart { app } => ps::restart(ctx, &app, "ps:restart").await,
        PsRebuild { app } => ps::rebuild(ctx, &app).await,
        Run { app, command } => run::run(ctx, &app, command).await,
        Enter { app, target, command } => run::enter(ctx, &app, target.as_deref(), command).await,
        PsScale { app, scale } => ps::scale(ctx, &app, &scale).await,
        PsStart { app } => ps::start(ctx, &app).await,
        PsStop { app } => ps::stop(ctx, &app).await,
        PsSet { app, key, value } => ps::set(ctx, &app, &key, &value).await,
        StorageMount { app, mount } => resources::mount(ctx, &app, &mount).await,
        StorageUnmount { app, mount } => resources::unmount(ctx, &app, &mount).await,
        StorageList { app, format } => resources::list_mounts(ctx, &app, format).await,
        ResourceLimit { app, memory, cpus, process } => {
            resources::limit(ctx, &app, process.as_deref(), memory.as_deref(), cpus.as_deref()).await
        }
        ResourceLimitClear { app, process } => resources::clear(ctx, &app, process.as_deref()).await,
        ResourceReport { app, format } => resources::report(ctx, &app, format).await,
        Logs { app, follow, lines, process } => logs::logs(ctx, &app, follow, lines, process.as_deref()).await,
        Releases { app, format } => releases::list(ctx, &app, format).await,
        ReleasesSet { app, key, value } => releases::set(ctx, &app, &key, &value).await,
        ReleasesRollback { app, version } => releases::rollback(ctx, &app, version.as_deref()).await,
        PsReport { app, format } => ps::report(ctx, app.as_deref(), format).await,
        StackBuild { force } => build::stack_build(ctx, force).await,
        StackReport { format } => build::stack_report(ctx, format).await,
        BuildpacksAdd { app, buildpack, index } => build::buildpacks_change(ctx, &app, build::Change::Add(buildpack, index)).await,
        BuildpacksSet { app, buildpacks } => build::buildpacks_change(ctx, &app, build::Change::Set(buildpacks)).await,
        BuildpacksRemove { app, buildpack } => build::buildpacks_change(ctx, &app, build::Change::Remove(buildpack)).await,
        BuildpacksClear { app } => build::buildpacks_change(ctx, &app, build::Change::Clear).await,
        BuildpacksList { app } => build::buildpacks_list(ctx, &app).await,
        BuilderSet { app, builder } => {
            let choice = match builder {
                BuilderChoice::Dockerfile => Some(crate::store::Builder::Dockerfile),
                BuilderChoice::Buildpacks => Some(crate::store::Builder::Buildpacks),
                BuilderChoice::Detect => None,
            };
            build::builder_set(ctx, &app, choice).await
        }
        BuilderReport { app, format } => build::builder_report(ctx, app.as_deref(), format).await,
        CertsAdd { app } => certs::add(ctx, &app).await,
        CertsGenerate { app, domain } => certs::generate(ctx, &app, domain.as_deref()).await,
        CertsRemove { app } => certs::remove(ctx, &app).await,
        CertsReport { app, format } => certs::report(ctx, app.as_deref(), format).await,
        LetsencryptSet { global, args } => letsencrypt::set(ctx, global, &args).await,
        LetsencryptEnable { app } => letsencrypt::enable(ctx, &app).await,
        LetsencryptDisable { app } => letsencrypt::disable(ctx, &app).await,
        LetsencryptList { format } => letsencrypt::list(ctx, format).await,
        LetsencryptAutoRenew { app, force } => letsencrypt::auto_renew(ctx, app.as_deref(), force).await,
        LetsencryptReport { app, format } => letsencrypt::report(ctx, app.as_deref(), format).await,
        NginxSet { app, key, value } => nginx::set(ctx, &app, &key, value.as_deref()).await,
        NginxReport { app, format } => nginx::report(ctx, app.as_deref(), format).await,
        KeysAdd { name, apps } => keys::add(ctx, &name, apps).await,
        KeysList { format } => keys::list(ctx, format).await,
        KeysRemove { name } => keys::remove(ctx, &name).await,
    }
}

/// A command line that is not a command to run.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Help was asked for (or no command given): print this on stdout, exit 0.
    Help(String),
    /// The line does not parse: one line for stderr.
    Usage(String),
}

/// The full command list, as `help` and a bare `ssh host` print it.
pub fn help_text() -> String {
    Cli::command().render_help().to_string()
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
    let mut words = rest.to_vec();
    let Some(name) = rest.first() else { return words };
    let cli = Cli::command();
    let Some(sub) = cli.find_subcommand(name) else { return words };
    if let Some(app) = &globals.app {
        let first = sub.get_positionals().next().map(|a| a.get_id().as_str().to_string());
        if first.as_deref() == Some("app") && rest.get(1) != Some(app) {
            words.insert(1, app.clone());
        }
    }
    if globals.force && sub.get_arguments().any(|a| a.get_id() == "force") && !words.iter().any(|w| w == "--force") {
        words.push("--force".into());
    }
    words
}

/// Every namespace and dokku's words for it.
const NAMESPACES: &[(&str, &str)] = &[
    ("apps", "Manage apps"),
    ("builder", "Manage the builder settings for an app"),
    ("buildpacks", "Manage buildpack settings for an app"),
    ("certs", "Manage SSL (TLS) certificates"),
    ("checks", "Manage zero-downtime settings"),
    ("config", "Manage global and app-specific config vars"),
    ("doctor", "Check this server: Docker, nginx, ports, DNS, disk, clock, certificates"),
    ("domains", "Manage domains used by the proxy"),
    ("enter", "Connect to a specific app container"),
    ("git", "Manage app deploys via git"),
    ("letsencrypt", "Automated certificate management via Let's Encrypt"),
    ("logs", "Output app logs"),
    ("nginx", "Manage the nginx proxy"),
    ("ports", "Manage ports for an app"),
    ("ps", "Manage app processes"),
    ("releases", "Manage an app's releases: list them, roll back"),
    ("resource", "Manage app resource constraints"),
    ("run", "Run a one-off process inside a container"),
    ("ssh-keys", "Manage public ssh keys that are allowed to connect"),
    ("stack", "Manage the buildpack stack image"),
    ("storage", "Manage mounted volumes"),
    ("version", "Print berth's version"),
];

/// `berth help`: the namespaces, as dokku lists them.
pub fn namespaces_help() -> String {
    let width = NAMESPACES.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Usage: berth [--app APP] [--force] [--quiet] [--trace] COMMAND <app> [command-specific-options]\n\n\
         Primary help options, type \"berth COMMAND:help\" for more details, or \"berth help --all\" to see every command.\n\nCommands:\n\n",
    );
    for (name, about) in NAMESPACES {
        text.push_str(&format!("    {name:width$}  {about}\n"));
    }
    text
}

/// `berth NS`, `NS:help`, `NS --help`: the namespace's commands, each with its one-line help.
pub fn namespace_help(namespace: &str) -> Option<String> {
    let (_, about) = NAMESPACES.iter().find(|(n, _)| *n == namespace)?;
    let cli = Cli::command();
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
    let is_command = Cli::command().find_subcommand(first).is_some();
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
    // `config:* --global`: the env every app gets stands where the app would.
    if words.first().is_some_and(|w| w.starts_with("config:")) && words.iter().any(|w| w == "--global") {
        words.retain(|w| w != "--global");
        words.insert(1, config::GLOBAL.to_string());
    }
    parse_command(&words).map(|command| (globals, command))
}

/// dokku's info flag of a `NS:report` (any `--flag` the report command does not have
/// itself), taken out of the words; which flags are valid depends on the report's rows, so
/// it is checked when the report prints. Pure.
fn take_info_flag(words: &mut Vec<String>) -> Result<Option<crate::output::InfoFlag>, Parsed> {
    let Some(namespace) = words.first().and_then(|w| w.strip_suffix(":report")).map(str::to_string) else { return Ok(None) };
    let cli = Cli::command();
    let Some(sub) = cli.find_subcommand(&words[0]) else { return Ok(None) };
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
    match Cli::try_parse_from(words) {
        Ok(cli) => Ok(cli.command),
        Err(err) => Err(match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Parsed::Help(err.to_string()),
            ErrorKind::InvalidSubcommand => {
                Parsed::Usage(format!("`{}` is not a berth command.", first.escape_debug()))
            }
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
            Command::ConfigSet { app, pairs, no_restart, encoded } => {
                assert_eq!(app, "myapp");
                assert_eq!(pairs, vec!["GREETING=hello world", "PORT=5000"]);
                assert!(no_restart);
                assert!(!encoded);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&words("apps:report myapp --format json")).unwrap(),
            Command::AppsReport { format: Format::Json, .. }
        ));
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
        assert!(matches!(command, Command::ConfigShow { app, .. } if app == "myapp"));
        // The app given twice is taken once.
        assert!(matches!(parse(&words("--app=myapp config:show myapp")).unwrap(), Command::ConfigShow { app, .. } if app == "myapp"));
        // --force reaches a command that has it, and is ignored by one that does not.
        assert!(matches!(parse(&words("--force apps:destroy x")).unwrap(), Command::AppsDestroy { app, force: true } if app == "x"));
        assert!(matches!(parse(&words("--force --app x apps:destroy")).unwrap(), Command::AppsDestroy { app, force: true } if app == "x"));
        assert!(matches!(parse(&words("--force apps:list")).unwrap(), Command::AppsList { .. }));
        assert!(matches!(parse(&words("--app")).unwrap_err(), Parsed::Usage(m) if m.contains("--app needs an app name")));
        // A command whose first argument is not an app gets no app inserted.
        assert!(matches!(parse(&words("--app x ssh-keys:list")).unwrap(), Command::KeysList { .. }));
    }

    #[test]
    fn report_info_flags_are_taken_out_for_the_report() {
        let (globals, command) = parse_line(&words("ps:report myapp --ps-restart-policy")).unwrap();
        assert_eq!(globals.info, Some(crate::output::InfoFlag { prefix: "ps".into(), flag: "--ps-restart-policy".into() }));
        assert!(matches!(command, Command::PsReport { app: Some(a), .. } if a == "myapp"));
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
        assert!(matches!(parse(&words("releases x")).unwrap(), Command::Releases { .. }));
        assert!(matches!(parse(&words("nope")).unwrap_err(), Parsed::Usage(m) if m == "`nope` is not a berth command."));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let Parsed::Usage(msg) = parse(&words("config:set myapp")).unwrap_err() else { panic!() };
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("KEY=VALUE"), "{msg}");
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
