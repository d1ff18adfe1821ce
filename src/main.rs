//! `guardian`: the operators' binary. Parses the command line and hands off to the library
//! crates; no logic of its own lives here.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use guardian_core::proposal::ProposalKind;

#[macro_use]
mod output;
#[macro_use]
mod exit;

mod audit_cmd;
mod build_info;
mod config_cmd;
mod docs_cmd;
mod incidents_cmd;
mod logging;
mod module_cmd;
mod multisig_cmd;
mod prompt;
mod rehearse_cmd;
mod rollback_cmd;
mod run_cmd;
mod status_cmd;

/// The exit statuses, as `--help` ends.
const EXIT_STATUS: &str = "Exit status:
  0  done
  1  failed: I/O, the chain, the database, a config that does not load
  2  usage: the command line is wrong
  3  refused by a safety check: a proposal that is not pending or does not recompute, a
     signature or key the Safe would not accept, a rollback target that does not verify, a
     backup that is corrupted or unknown to the ledger, a confirmation answered no";

/// Rollback-and-pause guardian for chain 138 (Defi Oracle Meta).
///
/// guardian watches the contracts you name, pauses them through the operators' Safe multisig
/// when a rule fires, and rolls deployment configs back to the previous contract versions.
/// Start with `guardian rehearse` to see the whole flow on a local chain.
#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version = build_info::VERSION_LINE.as_str(),
    propagate_version = true,
    max_term_width = 100,
    after_help = EXIT_STATUS
)]
struct Cli {
    /// More log output: -v guardian's debug lines, -vv its trace and its libraries' debug
    /// lines, -vvv everything. RUST_LOG overrides this. Secrets never appear at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Log lines on stderr as text (coloured only on a terminal, never with NO_COLOR set) or as
    /// json: one object a line with the event's and the spans' fields, for a log collector.
    #[arg(long, global = true, value_enum, env = "GUARDIAN_LOG_FORMAT", default_value_t)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fire drill: incident scenarios on a local Anvil chain 138, with a report.
    ///
    /// For each scenario (drain, drain-multisig, frontrun, upgrade, revert-storm, quiet, restart,
    /// levers; --scenario all by default) starts Anvil mining a block a second, deploys Safe 1.4.1
    /// owned by three operator keys (threshold 2), the contracts it owns and an enabled pause
    /// module, writes a rehearsal config, runs the daemon, plays the incident, approves as the
    /// owners would where the matrix asks for owners, and checks every outcome. Writes
    /// report.json, report.md and timeline.svg to --report-dir; exits 1 naming the first failed
    /// check. Each chain is a child process that stops with its scenario; with --fork-url it is a
    /// fork of that endpoint, which is only read from, with the configured Safe's owners
    /// impersonated.
    Rehearse(rehearse_cmd::RehearseArgs),

    /// Run the daemon: follow the chain, evaluate the rules, record findings, notify.
    ///
    /// Refuses to start when an RPC endpoint serves another chain than [chain] id. Follows new
    /// heads over WebSocket (or polls over HTTP), fails over between endpoints, catches up with
    /// eth_getLogs after downtime, and survives restarts and reorgs without losing or repeating a
    /// finding. Stop it with Ctrl-C or SIGTERM.
    Run(run_cmd::RunArgs),

    /// One screen of where guardian stands: chain head, cursor and lag, each endpoint, open
    /// incidents with their deadlines, proposals waiting for owners (approvals x/y and the
    /// command), the executor's balance, each contract (paused, its version and the verified one
    /// it would roll back to), the last backup, notifications per channel.
    Status(status_cmd::StatusArgs),

    /// Work with config files: `guardian config check --config FILE`.
    Config(config_cmd::ConfigArgs),
    /// Show a watched contract's recorded versions and which config keys point at each, or
    /// record a new deployment (`versions add`).
    Versions(rollback_cmd::VersionsArgs),
    /// Repoint a contract's config keys to a previous, verified version.
    ///
    /// Checks the target on chain (code present, runtime code hash equal to the recorded one,
    /// optional health view), shows the diff, backs the configs up, and rewrites only the
    /// configured keys, atomically and under guardian's write lock. --dry-run changes nothing.
    Rollback(rollback_cmd::RollbackArgs),
    /// Timestamped, checksummed backups of the managed configs: create, list, show, verify,
    /// prune, restore.
    ///
    /// Backups are backups/<config>_<UTC timestamp>.json (e.g.
    /// smart-accounts-config_20260126T101500Z.json; a second one in the same second gets -1),
    /// each with a sha256sum sidecar.
    Backup(rollback_cmd::BackupArgs),
    /// Incidents: one per watched contract at a time, from the first finding (or an operator's
    /// pause) to resolution: `incidents list|show|resolve|cancel|reopen`.
    Incidents(incidents_cmd::IncidentsArgs),
    /// Findings, with their incident and occurrences: `findings list [--open] [--contract X]`.
    Findings(incidents_cmd::FindingsArgs),
    /// Pause and unpause proposals through the Safe: `proposals list`, `proposals show <hash>`
    /// (locally, or from the daemon with --api).
    Proposals(multisig_cmd::ProposalsArgs),
    /// Approve a proposal as a Safe owner: shows what is signed, asks, then signs (EIP-712) or
    /// calls approveHash on chain (--onchain); with --api, through the daemon's HTTP API.
    Approve(multisig_cmd::ApproveArgs),
    /// Propose pausing a configured contract through the Safe (simulated as the Safe first).
    Pause(multisig_cmd::PauseArgs),
    /// Propose unpausing a configured contract through the Safe; needs the full threshold.
    Unpause(multisig_cmd::PauseArgs),
    /// Deploy a Safe 1.4.1 (`safe deploy`) or show the configured one (`safe info`).
    Safe(multisig_cmd::SafeArgs),
    /// The pause-only Safe module: `module deploy` (and propose enabling it), `module info`,
    /// `module disable`. Critical findings pause through it at once; unpausing stays a Safe
    /// transaction at the full threshold.
    Module(module_cmd::ModuleArgs),

    /// The hash-chained audit log: `audit verify` (both copies, and with --onchain the published
    /// heads), `audit show`, `audit export --incident N` for an auditor, `audit deploy-anchor`.
    Audit(audit_cmd::AuditArgs),

    /// Print a shell completion script: `guardian completions bash >
    /// /usr/share/bash-completion/completions/guardian`.
    Completions(docs_cmd::CompletionsArgs),
    /// Print the man page guardian(1) as roff (`guardian man | man -l -`), or write one page per
    /// command with --out DIR.
    Man(docs_cmd::ManArgs),
}

fn main() -> ExitCode {
    // Before any command builds an HTTP or WebSocket client.
    guardian_rpc::tls::install_crypto_provider();
    match run() {
        Ok(code) => code,
        Err(error) => {
            // An operator needs the message and its causes, not a backtrace.
            #[allow(clippy::print_stderr, reason = "the binary reports its own failure")]
            {
                eprintln!("error: {error}");
                for cause in error.chain().skip(1) {
                    eprintln!("  caused by: {cause}");
                }
            }
            exit::status(&error)
        }
    }
}

fn run() -> eyre::Result<ExitCode> {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.log_format);
    match cli.command {
        // Pure: no runtime, no network.
        Command::Config(args) => Ok(config_cmd::run(args)),
        Command::Backup(args) => block_on(rollback_cmd::backup(args)),
        Command::Rehearse(args) => block_on(rehearse_cmd::run(args)),
        Command::Run(args) => block_on(run_cmd::run(args)),
        Command::Status(args) => block_on(status_cmd::run(args)),
        Command::Versions(args) => block_on(rollback_cmd::versions(args)),
        Command::Rollback(args) => block_on(rollback_cmd::rollback(args)),
        Command::Incidents(args) => block_on(incidents_cmd::incidents(args)),
        Command::Findings(args) => block_on(incidents_cmd::findings(args)),
        Command::Proposals(args) => block_on(multisig_cmd::proposals(args)),
        Command::Approve(args) => block_on(multisig_cmd::approve(args)),
        Command::Pause(args) => block_on(multisig_cmd::propose(args, ProposalKind::Pause)),
        Command::Unpause(args) => block_on(multisig_cmd::propose(args, ProposalKind::Unpause)),
        Command::Safe(args) => block_on(multisig_cmd::safe(args)),
        Command::Module(args) => block_on(module_cmd::module(args)),
        Command::Audit(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(audit_cmd::audit(args)),
        Command::Completions(args) => {
            docs_cmd::completions(args, Cli::command()).map(|()| ExitCode::SUCCESS)
        }
        Command::Man(args) => docs_cmd::man(args, Cli::command()).map(|()| ExitCode::SUCCESS),
    }
}

/// Run an async command on a multi-threaded runtime.
fn block_on(command: impl Future<Output = eyre::Result<()>>) -> eyre::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(command)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command that reads guardian's config takes it as `--config`, described as
    /// guardian.toml; the global flags and `--config` are accepted after the subcommand.
    #[test]
    fn config_and_global_flags_work_after_every_subcommand() {
        let hash = format!("0x{}", "11".repeat(32));
        let cases: &[&[&str]] = &[
            &["run"],
            &["config", "check"],
            &["versions", "vault"],
            &[
                "versions",
                "add",
                "vault",
                "--label",
                "v3",
                "--address",
                "0x0000000000000000000000000000000000000001",
                "--block",
                "1",
            ],
            &["rollback", "vault"],
            &["backup", "create"],
            &["backup", "list"],
            &["backup", "show", "20260126T101500Z"],
            &["backup", "verify"],
            &["backup", "prune", "--keep", "3"],
            &["backup", "restore", "20260126T101500Z"],
            &["backup", "incidents"],
            &["incidents", "list"],
            &["incidents", "show", "1"],
            &["incidents", "resolve", "1", "--note", "x"],
            &["incidents", "cancel", "1", "--reason", "x"],
            &["incidents", "reopen", "1", "--note", "x"],
            &["findings", "list"],
            &["proposals", "list"],
            &["proposals", "show", &hash],
            &["approve", &hash, "--private-key-env", "K"],
            &["pause", "vault", "--reason", "x"],
            &["unpause", "vault", "--reason", "x"],
            &["safe", "info"],
            &["rehearse", "--fork-url", "http://127.0.0.1:1"],
        ];
        for case in cases {
            let mut argv = vec!["guardian"];
            argv.extend_from_slice(case);
            argv.extend_from_slice(&[
                "--config",
                "/etc/guardian/guardian.toml",
                "-v",
                "--log-format",
                "json",
            ]);
            let cli =
                Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{}: {e}", case.join(" ")));
            assert_eq!((cli.verbose, cli.log_format), (1, logging::LogFormat::Json), "{case:?}");
            let debug = format!("{:?}", cli.command);
            assert!(
                debug.contains("/etc/guardian/guardian.toml"),
                "{case:?} keeps --config: {debug}"
            );
        }

        // And every leaf command with a --config describes it as guardian.toml.
        fn leaves(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
            if command.get_subcommands().next().is_none() {
                out.push((path.clone(), command.clone()));
            }
            for sub in command.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut all = Vec::new();
        let mut root = Cli::command();
        root.build();
        leaves(&root, "guardian".into(), &mut all);
        let without = ["guardian completions", "guardian man", "guardian safe deploy"];
        for (path, command) in all.into_iter().filter(|(p, _)| !p.split(' ').any(|w| w == "help")) {
            let config = command.get_arguments().find(|a| a.get_long() == Some("config"));
            match config {
                Some(arg) => {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    assert!(help.contains("guardian.toml"), "{path}: --config says {help:?}");
                }
                None => assert!(without.contains(&path.as_str()), "{path} has no --config"),
            }
        }
    }
}
