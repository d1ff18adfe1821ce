//! What commands print on stdout. A reader that goes away early (`guardian … --json | head`)
//! ends the command quietly, with status 0, instead of a panic: `println!` panics on a broken
//! pipe.

use std::io::{self, Write};

/// `println!` for command output (see the module docs).
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for command output (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// Write to stdout, flushing (a question before a prompt must be seen).
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        gone(&error);
    }
}

/// The reader is gone: nothing more can be said, and it was not asked to be. Any other write
/// failure (a full disk behind a redirect) is reported.
fn gone(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    #[allow(clippy::print_stderr, reason = "stdout is what failed")]
    {
        eprintln!("error: writing the output: {error}");
    }
    std::process::exit(1);
}
