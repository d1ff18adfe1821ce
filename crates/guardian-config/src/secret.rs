//! Secrets read from the environment: they never reach a log line or a `Debug` dump.
//!
//! Beyond printing as `***`, every secret is remembered (with the parts of a URL that give it
//! away: the password, the path, the query and its values) so that [`scrub_known`] can take it
//! out of any text, whoever wrote it: the binary's log writer runs every line through it, so a
//! dependency that logs an endpoint URL (alloy's HTTP transport puts it in a span) logs `***`.

use std::{
    borrow::Cow,
    fmt,
    sync::{OnceLock, RwLock},
};

/// A value that must not be printed: RPC URLs with API keys, webhook URLs with tokens.
///
/// `Debug` and `Display` print `***`; the value is only reachable through [`Secret::expose`],
/// which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value, and remember it for [`scrub_known`].
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Self(value)
    }

    /// The secret itself, for the one place that needs it (an HTTP client, a signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn known() -> &'static RwLock<Vec<String>> {
    static KNOWN: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(Vec::new()))
}

/// Remember `value` (a URL, a token, a key) so that [`scrub_known`] replaces it, and the parts
/// of it that identify it, by `***`. [`Secret::new`] calls this; call it for a secret that does
/// not come from the config (a `--fork-url`).
pub fn remember(value: &str) {
    let fragments = fragments(value);
    if fragments.is_empty() {
        return;
    }
    let mut known = known().write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for fragment in fragments {
        if !known.contains(&fragment) {
            known.push(fragment);
        }
    }
    // Longest first, so a URL goes as a whole before its parts.
    known.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// `text` with every remembered secret (and identifying part of one) replaced by `***`.
pub fn scrub_known(text: &str) -> Cow<'_, str> {
    let known = known().read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = Cow::Borrowed(text);
    for fragment in known.iter() {
        if text.contains(fragment.as_str()) {
            text = Cow::Owned(text.replace(fragment.as_str(), "***"));
        }
    }
    text
}

/// Shorter parts are not remembered on their own (a path `/v1` or a query value `1` is in many
/// harmless lines); they are covered as parts of the whole secret.
const MIN_FRAGMENT: usize = 6;

/// The strings that give `value` away: itself (with and without a trailing `/`) and, for a URL,
/// its userinfo, password, path, query and each query value and long path segment.
fn fragments(value: &str) -> Vec<String> {
    let value = value.trim();
    if value.is_empty() {
        return Vec::new();
    }
    let mut out = vec![value.to_owned()];
    if let Some(bare) = value.strip_suffix('/').filter(|b| !b.is_empty()) {
        out.push(bare.to_owned());
    }
    let mut part = |s: &str| {
        if s.len() >= MIN_FRAGMENT && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let Some((_, rest)) = value.split_once("://") else { return out };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if let Some((userinfo, _host)) = authority.rsplit_once('@') {
        part(&format!("{userinfo}@"));
        if let Some((_user, password)) = userinfo.split_once(':') {
            part(password);
        }
    }
    let tail = tail.split('#').next().unwrap_or_default();
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    if path.len() > 1 {
        part(path);
        part(path.trim_end_matches('/'));
        for segment in path.split('/') {
            part(segment);
        }
    }
    if !query.is_empty() {
        part(&format!("?{query}"));
        part(query);
        for pair in query.split('&') {
            part(pair);
            if let Some((_, value)) = pair.split_once('=') {
                part(value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_their_telling_parts_are_scrubbed_from_any_text() {
        let url = "https://alice:Pa55word-x@rpc.example.org/v3/Z8pathKEY123?apikey=QueryKEY456&x=1";
        let _secret = Secret::new(url);
        let _token = Secret::new("bearer-TOKEN-789");
        let line = format!(
            "span{{url={url}}} GET /v3/Z8pathKEY123?apikey=QueryKEY456&x=1 auth alice:Pa55word-x@ \
             key Z8pathKEY123 q QueryKEY456 token bearer-TOKEN-789 pw Pa55word-x; host rpc.example.org"
        );
        let scrubbed = scrub_known(&line);
        for secret in ["Pa55word-x", "Z8pathKEY123", "QueryKEY456", "bearer-TOKEN-789"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        // What identifies the endpoint without giving it away stays.
        assert!(scrubbed.contains("host rpc.example.org"), "{scrubbed}");
        assert_eq!(scrub_known("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("https://hooks.example/T0KEN");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
        assert_eq!(secret.expose(), "https://hooks.example/T0KEN");
    }
}
