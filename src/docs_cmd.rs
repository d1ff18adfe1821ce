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
    #[arg(long, value_name = "DIR", conflicts_with = "markdown")]
    out: Option<PathBuf>,
    /// Print every command's flags as Markdown tables instead (the README's command
    /// reference).
    #[arg(long)]
    markdown: bool,
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
    if args.markdown {
        return to_stdout(reference(command).as_bytes()).wrap_err("writing the reference");
    }
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

/// The README's command reference: every command's flags and arguments, as `--help` has them,
/// rendered from the clap definition (a test keeps the README equal to it).
pub(crate) fn reference(mut root: clap::Command) -> String {
    root.build();
    let globals: Vec<String> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    let mut out = String::new();
    out.push_str("Every command also takes:\n\n");
    out.push_str(&table(root.get_arguments().filter(|a| a.is_global_set())));
    let mut leaves = Vec::new();
    collect(&root, String::from("guardian"), &mut leaves);
    for (path, command) in leaves {
        let about = command.get_about().map(|a| one_line(&a.to_string())).unwrap_or_default();
        out.push_str(&format!("\n#### `{path}`\n\n{about}\n\n"));
        let own: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|a| !globals.contains(&a.get_id().to_string()))
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if own.is_empty() {
            out.push_str("No options of its own.\n");
        } else {
            out.push_str(&table(own.into_iter()));
        }
    }
    out
}

/// Every runnable command under `command`, depth first, without clap's `help`.
fn collect(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    let subs: Vec<&clap::Command> =
        command.get_subcommands().filter(|s| s.get_name() != "help").collect();
    let runnable = subs.is_empty() || command.get_arguments().any(|a| a.is_positional());
    if runnable && path != "guardian" {
        out.push((path.clone(), command.clone()));
    }
    for sub in subs {
        collect(sub, format!("{path} {}", sub.get_name()), out);
    }
}

fn table<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> String {
    let mut rows = String::from("| flag | what |\n| --- | --- |\n");
    for arg in args.filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
        rows.push_str(&format!("| `{}` | {} |\n", spelling(arg), escape(&what(arg))));
    }
    rows
}

/// `-v, --verbose`, `--config <FILE>`, `<HASH>`.
fn spelling(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    if arg.is_positional() {
        return format!("<{value}>");
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
        && !matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::Count);
    let names = names.join(", ");
    if takes_value { format!("{names} <{value}>") } else { names }
}

/// The first paragraph of the help, with the env variable, default and choices as `--help`
/// lists them.
fn what(arg: &clap::Arg) -> String {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let mut text = one_line(help.split("\n\n").next().unwrap_or_default());
    if let Some(env) = arg.get_env() {
        text.push_str(&format!(" [env: {}]", env.to_string_lossy()));
    }
    let defaults: Vec<String> =
        arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
    let flag = matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::Count);
    if !defaults.is_empty() && !flag {
        text.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    let choices: Vec<String> =
        arg.get_possible_values().iter().map(|p| p.get_name().to_owned()).collect();
    if !choices.is_empty() && !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
        text.push_str(&format!(" [possible values: {}]", choices.join(", ")));
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    const BEGIN: &str = "<!-- BEGIN COMMAND REFERENCE: generated from the clap definition (`guardian man --markdown`); `GUARDIAN_BLESS=1 cargo test --bin guardian readme` rewrites it -->\n";
    const END: &str = "<!-- END COMMAND REFERENCE -->";

    fn readme_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
    }

    /// The README's flag tables are the ones `--help` prints: the command reference is
    /// generated from the same definition, and must be what the README holds.
    #[test]
    fn readme_command_reference_matches_help() {
        let expected = reference(crate::Cli::command());
        let readme = std::fs::read_to_string(readme_path()).expect("README");
        let (head, rest) =
            readme.split_once(BEGIN).expect("README has the reference's begin marker");
        let (found, tail) = rest.split_once(END).expect("README has the reference's end marker");
        if found != expected && std::env::var_os("GUARDIAN_BLESS").is_some() {
            std::fs::write(readme_path(), format!("{head}{BEGIN}{expected}{END}{tail}"))
                .expect("rewrite README");
            return;
        }
        assert!(
            found == expected,
            "README's command reference differs from --help; run GUARDIAN_BLESS=1 cargo test --bin guardian readme\n\
             first differing line: {:?}",
            found.lines().zip(expected.lines()).find(|(a, b)| a != b)
        );
    }

    /// Every `--flag` the README's hand-written tables give a `guardian` command (rows that
    /// start with "| `guardian …`", and the rehearsal's option table) exists on that command.
    #[test]
    fn readme_tables_name_only_real_flags() {
        let mut root = crate::Cli::command();
        root.build();
        let whole = std::fs::read_to_string(readme_path()).expect("README");
        // The generated reference is checked above; this is about the prose's own tables.
        let (before, rest) = whole.split_once(BEGIN).expect("begin marker");
        let readme = format!("{before}{}", rest.split_once(END).expect("end marker").1);
        let flags_of = |path: &[&str]| -> Option<Vec<String>> {
            let mut command = &root;
            for word in path {
                command = command.find_subcommand(word)?;
            }
            Some(command.get_arguments().filter_map(|a| a.get_long().map(str::to_owned)).collect())
        };
        let mut checked = 0;
        for line in readme.lines() {
            let path: Vec<&str> = if let Some(rest) = line.strip_prefix("| `guardian ") {
                rest.split(['`', ' ', '|'])
                    .take_while(|w| w.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                    .collect()
            } else if line.starts_with("| `--") {
                vec!["rehearse"] // the option table of the drill
            } else {
                continue;
            };
            let mut path = path;
            let flags = loop {
                match flags_of(&path) {
                    Some(flags) => break flags,
                    None if !path.is_empty() => {
                        path.pop();
                    }
                    None => panic!("README names an unknown command: {line}"),
                }
            };
            let cell = line.split('|').nth(1).unwrap_or_default();
            for token in cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
                if let Some(flag) = token.strip_prefix("--").filter(|f| !f.is_empty()) {
                    assert!(
                        flags.iter().any(|f| f == flag),
                        "README: `guardian {}` has no --{flag}: {line}",
                        path.join(" ")
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "the README's tables were found ({checked} flags checked)");
    }
}
