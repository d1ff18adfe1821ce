//! Reading and surgically rewriting address keys in a managed JSON config.
//!
//! A rollback must leave every byte it does not mean to change exactly as it was: indentation, key
//! order, number spelling, trailing newline. So the config is not re-serialised. Instead
//! jsonc-parser (in strict JSON mode) gives the byte range of the string token at each JSON
//! pointer, only those tokens are replaced, and the result is checked with serde_json: it must
//! parse, each pointer must hold the new value, and the document with the old values put back
//! must equal the original.

use std::path::Path;

use eyre::{Result, WrapErr, bail, ensure, eyre};
use jsonc_parser::{CollectOptions, ParseOptions, ast::Value, parse_to_ast};

/// The string at a JSON pointer and where its token (quotes included) sits in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedString {
    /// The decoded string.
    pub value: String,
    /// Byte range of the token, quotes included.
    pub range: std::ops::Range<usize>,
}

/// Strict JSON: no comments, no trailing commas, quoted keys.
fn strict() -> ParseOptions {
    ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
    }
}

/// Find the string at `pointer` (RFC 6901) in `text`. `origin` names the file in errors.
pub fn locate_string(text: &str, pointer: &str, origin: &Path) -> Result<LocatedString> {
    let parsed = parse_to_ast(text, &CollectOptions::default(), &strict())
        .map_err(|err| eyre!("{} is not valid JSON: {err}", origin.display()))?;
    let mut node = parsed.value.ok_or_else(|| eyre!("{} holds no JSON value", origin.display()))?;
    let Some(tokens) = pointer.strip_prefix('/') else {
        bail!("{pointer:?} is not a JSON pointer (it must start with '/')");
    };
    let mut walked = String::new();
    for raw in tokens.split('/') {
        let token = raw.replace("~1", "/").replace("~0", "~");
        walked.push('/');
        walked.push_str(raw);
        node = match node {
            Value::Object(object) => {
                let mut matches =
                    object.properties.into_iter().filter(|p| p.name.as_str() == token);
                let prop = matches.next().ok_or_else(|| {
                    eyre!("{}: no key {walked:?} (looking for {pointer:?})", origin.display())
                })?;
                ensure!(
                    matches.next().is_none(),
                    "{}: key {walked:?} appears twice; refusing to guess which one holds the \
                     address",
                    origin.display()
                );
                prop.value
            }
            Value::Array(array) => {
                let index: usize = token.parse().map_err(|_| {
                    eyre!("{}: {walked:?} indexes an array with {token:?}", origin.display())
                })?;
                array.elements.into_iter().nth(index).ok_or_else(|| {
                    eyre!("{}: {walked:?} is past the end of the array", origin.display())
                })?
            }
            _ => bail!(
                "{}: {walked:?} goes inside a value that is not an object or array",
                origin.display()
            ),
        };
    }
    match node {
        Value::StringLit(lit) => Ok(LocatedString {
            value: lit.value.into_owned(),
            range: lit.range.start..lit.range.end,
        }),
        _ => bail!("{}: {pointer:?} does not hold a string", origin.display()),
    }
}

/// `text` with the string at each pointer replaced by the paired value, every other byte kept.
///
/// Values must not need JSON escaping (addresses never do). The result is verified with
/// serde_json before it is returned.
pub fn rewrite_strings(text: &str, edits: &[(String, String)], origin: &Path) -> Result<String> {
    let mut located = Vec::with_capacity(edits.len());
    for (pointer, new) in edits {
        ensure!(
            new.chars().all(|c| c != '"' && c != '\\' && !c.is_control()),
            "refusing to write {new:?} at {pointer}: it would need JSON escaping"
        );
        located.push((locate_string(text, pointer, origin)?, new));
    }
    located.sort_by_key(|(at, _)| std::cmp::Reverse(at.range.start));
    for pair in located.windows(2) {
        ensure!(
            pair[0].0.range.start != pair[1].0.range.start,
            "{}: two configured pointers name the same key",
            origin.display()
        );
    }
    let mut out = text.to_owned();
    for (at, new) in &located {
        out.replace_range(at.range.clone(), &format!("\"{new}\""));
    }
    verify_rewrite(text, &out, edits, origin)?;
    Ok(out)
}

/// The rewrite changed exactly the intended values and nothing else a JSON reader can see.
fn verify_rewrite(
    before: &str,
    after: &str,
    edits: &[(String, String)],
    origin: &Path,
) -> Result<()> {
    let mut expected: serde_json::Value = serde_json::from_str(before)
        .wrap_err_with(|| format!("{} is not valid JSON", origin.display()))?;
    let written: serde_json::Value = serde_json::from_str(after).wrap_err_with(|| {
        format!(
            "internal error: the rewritten {} would not parse; nothing written",
            origin.display()
        )
    })?;
    for (pointer, new) in edits {
        let slot = expected
            .pointer_mut(pointer)
            .ok_or_else(|| eyre!("{}: {pointer} vanished", origin.display()))?;
        *slot = serde_json::Value::String(new.clone());
        ensure!(
            written.pointer(pointer).and_then(serde_json::Value::as_str) == Some(new.as_str()),
            "internal error: {} at {pointer} does not hold {new} after the rewrite; nothing written",
            origin.display()
        );
    }
    ensure!(
        expected == written,
        "internal error: rewriting {} changed more than the configured keys; nothing written",
        origin.display()
    );
    Ok(())
}

/// Read a managed config as UTF-8 text.
/// A symbolic link is refused rather than followed (see [`crate::atomic_file`]).
pub fn read_config(path: &Path) -> Result<String> {
    let bytes = crate::atomic_file::read_no_follow(path)
        .wrap_err_with(|| format!("reading managed config {}", path.display()))?;
    String::from_utf8(bytes).wrap_err_with(|| format!("{} is not UTF-8 text", path.display()))
}

/// A unified diff of two versions of a file, for humans.
pub fn unified_diff(label: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{label} (now)"), &format!("{label} (after)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "{\n  \"name\": \"Vault ✓ é\",\n  \"contracts\": {\n    \"vault\": { \"address\": \"0x1111111111111111111111111111111111111111\", \"gas\": 1.50 },\n    \"a/b\": {\"address\":\"0x2222222222222222222222222222222222222222\"}\n  },\n  \"watch\": [\n\t{ \"address\": \"0x1111111111111111111111111111111111111111\" }\n  ],\n  \"unicode\": \"caf\\u00e9 ✓\"\n}\n";

    fn origin() -> &'static Path {
        Path::new("config/x.json")
    }

    #[test]
    fn locates_strings_in_objects_and_arrays() {
        let vault = locate_string(CONFIG, "/contracts/vault/address", origin()).expect("vault");
        assert_eq!(vault.value, "0x1111111111111111111111111111111111111111");
        assert_eq!(&CONFIG[vault.range.clone()], "\"0x1111111111111111111111111111111111111111\"");
        let escaped = locate_string(CONFIG, "/contracts/a~1b/address", origin()).expect("a/b");
        assert_eq!(escaped.value, "0x2222222222222222222222222222222222222222");
        let watched = locate_string(CONFIG, "/watch/0/address", origin()).expect("watch");
        assert!(watched.range.start > vault.range.start);
    }

    #[test]
    fn missing_or_non_string_keys_are_named() {
        for (pointer, expect) in [
            ("/contracts/nope/address", "no key \"/contracts/nope\""),
            ("/watch/3/address", "past the end"),
            ("/watch/x", "indexes an array"),
            ("/contracts/vault/gas", "does not hold a string"),
            ("/contracts/vault/gas/x", "not an object or array"),
            ("contracts", "not a JSON pointer"),
        ] {
            let err = locate_string(CONFIG, pointer, origin()).expect_err(pointer);
            let msg = format!("{err:#}");
            assert!(msg.contains(expect), "{pointer}: {msg}");
        }
        let dup = r#"{"a": "x", "a": "y"}"#;
        let err = locate_string(dup, "/a", origin()).expect_err("duplicate");
        assert!(err.to_string().contains("twice"), "{err}");
        let err = locate_string("{\"a\": 1,}", "/a", origin()).expect_err("trailing comma");
        assert!(err.to_string().contains("config/x.json"), "{err}");
    }

    #[test]
    fn rewrite_changes_only_the_address_tokens() {
        let new = "0x3333333333333333333333333333333333333333";
        let edits = vec![
            ("/contracts/vault/address".to_owned(), new.to_owned()),
            ("/watch/0/address".to_owned(), new.to_owned()),
        ];
        let out = rewrite_strings(CONFIG, &edits, origin()).expect("rewrite");
        let expected = CONFIG.replacen("0x1111111111111111111111111111111111111111", new, 2);
        assert_eq!(out, expected, "every other byte identical");
        assert!(out.contains("1.50") && out.contains("\\u00e9 ✓") && out.ends_with("}\n"));
    }

    #[test]
    fn rewrite_refuses_values_needing_escapes_and_duplicate_targets() {
        let edits = vec![("/contracts/vault/address".to_owned(), "a\"b".to_owned())];
        assert!(rewrite_strings(CONFIG, &edits, origin()).is_err());
        let twice = vec![
            ("/contracts/vault/address".to_owned(), "0x1".to_owned()),
            ("/contracts/vault/address".to_owned(), "0x2".to_owned()),
        ];
        assert!(rewrite_strings(CONFIG, &twice, origin()).is_err());
    }

    #[test]
    fn diff_shows_old_and_new_lines() {
        let diff = unified_diff("x", "a\nb\nc\n", "a\nB\nc\n");
        assert!(diff.contains("-b\n") && diff.contains("+B\n"), "{diff}");
        assert!(unified_diff("x", "same\n", "same\n").is_empty());
    }
}
