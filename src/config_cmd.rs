//! `guardian config …`: work on a config file without starting anything.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use guardian_config::Config;

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print what guardian would watch.
    ///
    /// Parses the file, checks every key, address, signature, predicate and threshold by
    /// compiling the rules exactly as the daemon does, and reads the secrets it names from the
    /// environment. Opens no connection and writes nothing. Errors name file:line:column;
    /// secrets are never printed.
    Check {
        /// guardian's config file (guardian.toml; config/guardian.toml is the commented
        /// template).
        #[arg(long, short, value_name = "FILE", env = "GUARDIAN_CONFIG")]
        config: PathBuf,
    },
}

/// Exit status: 0 if valid, 1 with the located error on stderr if not.
pub(crate) fn run(args: ConfigArgs) -> ExitCode {
    match args.command {
        ConfigCommand::Check { config } => match Config::load(&config) {
            Ok(config) => {
                let _ = std::io::stdout().lock().write_all(config.summary().as_bytes());
                ExitCode::SUCCESS
            }
            Err(error) => {
                let _ = writeln!(std::io::stderr().lock(), "error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
