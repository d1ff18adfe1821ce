//! Endpoint URLs often carry credentials (`user:password@`, an API key in the path or the
//! query): what may be shown of them.

use alloy::transports::http::reqwest::Url;

/// `scheme://host:port` of a URL: enough to tell endpoints apart, nothing secret.
pub fn redact(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}://?", url.scheme()),
    }
}

/// `host:port` of a URL, the label metrics use for an endpoint.
pub fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "?".to_owned(),
    }
}

/// `text` (an error message) with `url` replaced by its [`redact`]ed form: HTTP client errors
/// quote the full URL, and a URL often carries an API key in its path or query.
pub fn scrub(text: &str, url: &Url) -> String {
    let full = url.as_str();
    let mut text = text.replace(full, &redact(url));
    if let Some(bare) = full.strip_suffix('/') {
        text = text.replace(bare, &redact(url));
    }
    text
}

/// An error and its causes, `: `-separated (what `{:#}` prints for an eyre report).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors repeat their source's message in their own: say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_scheme_host_port() {
        let url: Url =
            "https://user:pw@rpc.example.org/v1/SECRETKEY?apikey=s3cret".parse().expect("url");
        let label = redact(&url);
        assert_eq!(label, "https://rpc.example.org:443");
        assert_eq!(host_port(&url), "rpc.example.org:443");
        assert!(!label.contains("SECRET") && !label.contains("s3cret") && !label.contains("pw"));
    }

    #[test]
    fn scrubbing_replaces_the_url_with_or_without_its_trailing_slash() {
        let url: Url = "https://rpc.example.org/KEY".parse().expect("url");
        let text = "error sending request for url (https://rpc.example.org/KEY): refused";
        assert_eq!(
            scrub(text, &url),
            "error sending request for url (https://rpc.example.org:443): refused"
        );
        let root: Url = "http://10.0.0.1:8545".parse().expect("url");
        assert_eq!(scrub("url (http://10.0.0.1:8545/)", &root), "url (http://10.0.0.1:8545)");
        assert_eq!(scrub("url (http://10.0.0.1:8545)", &root), "url (http://10.0.0.1:8545)");
    }
}
