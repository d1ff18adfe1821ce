//! Asking the operator before a command writes something.

#![allow(clippy::print_stdout, reason = "the question goes to the operator's terminal")]

use std::io::{BufRead, Write};

use eyre::Result;

/// Print `question` and read one line: true only for `yes`. End of input (a script without
/// `--yes`) is a no.
pub(crate) fn confirm(question: &str) -> Result<bool> {
    out!("{question} Type 'yes' to continue: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
