//! `guardian completions` and `guardian man`: shell completion scripts and man pages, generated
//! from the command-line definition itself (clap_complete, clap_mangen) so they never drift from
//! `--help`.

#![allow(clippy::print_stdout, reason = "the command reports to the operator's terminal")]

use std::{
    io::{self, Write},
    path::PathBuf,
};

use clap::Args;
use clap_complete::{Generator, Shell};
use eyre::{Result, WrapErr};

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for: bash, zsh, fish (or elvish, powershell).
    shell: Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command and subcommand into DIR (guardian.1, guardian-run.1,
    /// guardian-backup-restore.1, …) instead of printing guardian(1) to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Print the completion script for `args.shell` to stdout.
pub(crate) fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<()> {
    let name = command.get_name().to_owned();
    command.set_bin_name(name);
    command.build();
    // Rendered in memory first: some generators panic on a failed write, e.g. to a closed pipe.
    let mut script = Vec::new();
    args.shell.try_generate(&command, &mut script).wrap_err("generating the completion script")?;
    to_stdout(&script).wrap_err("writing the completion script")
}

/// Print guardian(1) as roff to stdout, or write every command's page into `--out`.
pub(crate) fn man(args: ManArgs, command: clap::Command) -> Result<()> {
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page).wrap_err("generating the man page")?;
        return to_stdout(&page).wrap_err("writing the man page");
    };
    std::fs::create_dir_all(&dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command, &dir)
        .wrap_err_with(|| format!("writing the man pages into {}", dir.display()))?;
    outln!("man pages written to {}", dir.display());
    Ok(())
}

/// Write `bytes` to stdout. A reader that stops early (`guardian man | head`) is not an error.
fn to_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}
