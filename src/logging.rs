//! Log output on stderr: readable text for a person, or one JSON object a line for a log
//! collector (journald, Loki, Elasticsearch), chosen with `--log-format` / `GUARDIAN_LOG_FORMAT`.

use std::{ffi::OsString, io::IsTerminal};

use clap::ValueEnum;
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, util::SubscriberInitExt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines; coloured only on a terminal, never with NO_COLOR set.
    #[default]
    Text,
    /// One JSON object a line, with the event's fields and the spans' fields.
    //
    // timestamp, level, target, the event's fields (message included) at the top level, the
    // innermost span as `span` and every entered span, root first, as `spans`, each with its fields
    // (contract, rule, incident, safeTxHash, … where the span carries them).
    Json,
}

/// Install the global subscriber: `verbose` 0 logs info and above, 1 guardian's debug lines,
/// 2 guardian's trace and its dependencies' debug lines, 3 or more everything; `RUST_LOG`
/// overrides the whole filter. Every line goes through [`Scrubbed`] first.
pub(crate) fn init(verbose: u8, format: LogFormat) {
    let colour = colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    subscriber(format, filter(verbose), colour, Scrubbed(std::io::stderr)).init();
}

/// A log writer that takes every known secret out of what it writes
/// ([`guardian_config::scrub_secrets`]): endpoint URLs with their passwords and keys, bearer
/// tokens, the webhook URL. guardian itself logs endpoints as `scheme://host:port` only, but its
/// dependencies do not know what is secret (alloy's HTTP transport puts the whole URL in a
/// debug span, reqwest errors quote it), so no verbosity, and no `RUST_LOG`, can print one.
struct Scrubbed<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbed<M> {
    type Writer = ScrubbedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter(self.0.make_writer())
    }
}

/// One [`Scrubbed`] write: the formatter hands over a whole line at once.
struct ScrubbedWriter<W>(W);

impl<W: std::io::Write> std::io::Write for ScrubbedWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.0.write_all(guardian_config::scrub_secrets(text).as_bytes())?,
            Err(_) => self.0.write_all(
                guardian_config::scrub_secrets(&String::from_utf8_lossy(bytes)).as_bytes(),
            )?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The subscriber `init` installs, writing to `writer` (stderr, or a buffer in tests).
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    colour: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(logs.with_ansi(colour).finish()),
        LogFormat::Json => Box::new(
            logs.with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

fn filter(verbose: u8) -> EnvFilter {
    // `guardian` is a prefix of every guardian crate's target (guardian_daemon, guardian_rpc, …).
    // -v is guardian's own debug lines, not the HTTP and WebSocket libraries' (a line per
    // request each).
    let levels = match verbose {
        0 => "info",
        1 => "info,guardian=debug",
        2 => "debug,guardian=trace",
        _ => "trace",
    };
    // alloy's block poller logs each failed poll at ERROR with nothing an operator can act on:
    // guardian reports RPC failures itself. RUST_LOG overrides this.
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{levels},alloy_rpc_client::poller=off")))
}

/// Colour codes only for a person at a terminal: a file, a pipe or journald gets plain text, and
/// `NO_COLOR` set to anything but the empty string turns colour off (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("0"), false), // any non-empty value, even "0"
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, expected) in cases {
            assert_eq!(
                colour(terminal, no_color.map(OsString::from)),
                expected,
                "terminal {terminal}, NO_COLOR {no_color:?}"
            );
        }
    }

    /// What the subscriber wrote, one string per line.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_in_spans(format: LogFormat, colour: bool) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            subscriber(format, EnvFilter::new("info"), colour, Scrubbed(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let incident = tracing::info_span!("incident", contract = "vault", incident = 7);
            let _incident = incident.enter();
            let proposal = tracing::info_span!("proposal", safeTxHash = "0xabc");
            let _proposal = proposal.enter();
            tracing::warn!(rule = "drain", approvals = 1, "waiting for approvals");
            tracing::debug!("filtered out at info");
        });
        let bytes = buffer.0.lock().expect("buffer lock").clone();
        String::from_utf8(bytes).expect("logs are UTF-8").lines().map(str::to_owned).collect()
    }

    #[test]
    fn json_lines_carry_the_event_and_span_fields() {
        let lines = log_in_spans(LogFormat::Json, true);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "waiting for approvals");
        assert_eq!(line["rule"], "drain");
        assert_eq!(line["approvals"], 1);
        assert_eq!(line["span"]["name"], "proposal");
        assert_eq!(line["span"]["safeTxHash"], "0xabc");
        assert_eq!(line["spans"][0]["name"], "incident");
        assert_eq!(line["spans"][0]["contract"], "vault");
        assert_eq!(line["spans"][0]["incident"], 7);
        assert!(line["timestamp"].is_string(), "{line}");
    }

    #[test]
    fn text_has_colour_codes_only_when_asked() {
        let plain = log_in_spans(LogFormat::Text, false).join("\n");
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("incident{contract=\"vault\" incident=7}"), "{plain}");
        assert!(plain.contains("waiting for approvals rule=\"drain\""), "{plain}");
        let coloured = log_in_spans(LogFormat::Text, true).join("\n");
        assert!(coloured.contains('\x1b'), "{coloured:?}");
    }
}
