//! `guardian`: the operators' binary. Parses the command line and hands off to the library
//! crates; no logic of its own lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod config_cmd;
mod drill;

/// Rollback-and-pause guardian for chain 138 (Defi Oracle Meta).
///
/// guardian watches the contracts you name, pauses them through the operators' Safe multisig
/// when a rule fires, and rolls deployment configs back to the previous contract versions.
/// Start with `guardian rehearse` to see the whole flow on a local chain.
#[derive(Debug, Parser)]
#[command(name = "guardian", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides this.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fire drill on a local Anvil chain with chain id 138.
    ///
    /// Starts Anvil from the project's toolchain, compiles contracts/, deploys Safe 1.4.1 owned
    /// by three operator keys (threshold 2) and the pausable contracts owned by that Safe, then
    /// pauses the vault through the Safe and checks that it is paused. Nothing leaves this
    /// machine: the chain is a child process that stops with the drill.
    Rehearse(drill::DrillArgs),

    /// Work with config files: `guardian config check --config FILE`.
    Config(config_cmd::ConfigArgs),
}

fn main() -> eyre::Result<ExitCode> {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cli.command {
        // Pure: no runtime, no network.
        Command::Config(args) => Ok(config_cmd::run(args)),
        Command::Rehearse(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(drill::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
