//! Config errors that point at the place in the file: `path:line:column: what was expected`.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

/// A config problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.column, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte spans of one file into [`ConfigError`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Locator<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// An error at byte offset `span.start` (or the start of the file without a span).
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError { path: self.path.to_owned(), line, column, message: message.into() }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        let at = Locator { path: Path::new("g.toml"), text };
        assert_eq!(at.error(Some(0..1), "x").to_string(), "g.toml:1:1: x");
        assert_eq!(at.error(Some(6..7), "x").to_string(), "g.toml:2:1: x");
        // Columns count characters, not bytes.
        assert_eq!(at.error(Some(10..11), "x").to_string(), "g.toml:2:4: x");
        assert_eq!(at.error(None, "x").to_string(), "g.toml:1:1: x");
    }
}
