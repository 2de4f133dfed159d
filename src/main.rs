//! The `berth` binary: `berth daemon …` runs the daemon; anything else is a command sent to it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "berth", disable_help_flag = true, disable_version_flag = true)]
struct Top {
    /// The berth root (state, keys, sockets)
    #[arg(long, env = "BERTH_ROOT", default_value = berth::DEFAULT_ROOT, global = true)]
    root: PathBuf,
    /// `daemon [FLAGS]`, or a command for the running daemon (`berth help` lists them)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

#[derive(Parser)]
#[command(name = "berth daemon", about = "Run the berth daemon: SSH server, local socket, proxy")]
struct DaemonCli {
    #[command(flatten)]
    args: berth::daemon::DaemonArgs,
}

fn main() -> ExitCode {
    let top = Top::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    if top.rest.first().map(String::as_str) == Some("daemon") {
        let cli = DaemonCli::parse_from(top.rest.iter());
        init_logging();
        match runtime.block_on(berth::daemon::run(top.root, cli.args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(" !     {e:#}");
                ExitCode::FAILURE
            }
        }
    } else if top.rest.first().map(String::as_str) == Some("git-hook") && top.rest.len() == 2 {
        let code = runtime.block_on(berth::hook::run(&top.root, &top.rest[1]));
        std::process::exit(code)
    } else {
        let code = runtime.block_on(berth::client::run(&top.root, top.rest));
        // The stdin reader may still be blocked on a terminal: exit without waiting for it.
        std::process::exit(code)
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
