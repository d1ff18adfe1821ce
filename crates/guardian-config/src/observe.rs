//! The tables that make guardian observable and operable: `[metrics]` (where `/metrics`,
//! `/ready` and the status page are served), `[ready]` (readiness thresholds), `[[notify]]`
//! (notification channels) and `[storage] keep_occurrences` (retention).

use std::{net::SocketAddr, time::Duration};

use guardian_core::{backup::RetentionPeriod, severity::Severity};

use crate::{
    ConfigError, Loader, Secret,
    raw::{self, S},
    span,
};

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/ready`, `/health` and the status page here instead of on `[api] bind`.
    pub bind: Option<SocketAddr>,
}

/// `[ready]`: when `/ready` answers 503 (and `guardian_ready` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyConfig {
    /// The chain's block period.
    pub block_time: Duration,
    /// Not ready when the cursor has not moved for this many block times while the chain has
    /// (or while no endpoint tells the head).
    pub stall_blocks: u64,
    /// Not ready when a notification has been failing for longer than this.
    pub notifications_failing: Duration,
    /// The gas one pause execution is budgeted at: the executor needs this times the fee per
    /// gas it would pay now.
    pub execution_gas: u64,
    /// How often the chain facts behind readiness, metrics and the status page (executor
    /// balance, `paused()`, rollback targets, backups) are read.
    pub check_every: Duration,
}

impl ReadyConfig {
    /// How long the cursor may stand still while the chain moves.
    pub fn stall_after(&self) -> Duration {
        self.block_time.saturating_mul(u32::try_from(self.stall_blocks).unwrap_or(u32::MAX))
    }
}

impl Default for ReadyConfig {
    /// For 1–2 s blocks: stalled after 15 blocks of 2 s (30 s), notifications failing for
    /// 5 minutes, 200 000 gas per execution, chain facts read every 30 s.
    fn default() -> Self {
        Self {
            block_time: Duration::from_secs(2),
            stall_blocks: 15,
            notifications_failing: Duration::from_secs(300),
            execution_gas: 200_000,
            check_every: Duration::from_secs(30),
        }
    }
}

/// What a notification channel speaks. Exhaustive on purpose: a new kind must be taught to
/// every place that formats for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// A Discord webhook: `{"content": …, "embeds": […]}`.
    Discord,
    /// Telegram's Bot API `sendMessage` (the URL, with the bot token, from the environment).
    Telegram {
        /// The chat to post to.
        chat_id: String,
    },
    /// PagerDuty Events API v2: trigger, acknowledge when contained, resolve when closed.
    PagerDuty {
        /// The integration's routing key.
        routing_key: Secret,
    },
    /// guardian's own JSON, optionally signed (`X-Guardian-Signature`).
    Webhook {
        /// The HMAC-SHA256 key of the signature header.
        secret: Option<Secret>,
    },
}

impl ChannelKind {
    /// `slack`, `discord`, `telegram`, `pagerduty` or `webhook`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Telegram { .. } => "telegram",
            Self::PagerDuty { .. } => "pagerduty",
            Self::Webhook { .. } => "webhook",
        }
    }
}

/// PagerDuty's Events API v2 endpoint, used when a `pagerduty` channel names no `url_env`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One notification channel: `[[notify]]`, or `[webhook]` (a `webhook` channel named
/// `webhook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Unique name: the `channel` label of the metrics, and what `incidents show` lists
    /// deliveries under. Defaults to the kind.
    pub name: String,
    /// What it speaks.
    pub kind: ChannelKind,
    /// Where to POST (from the environment: it usually carries a token).
    pub url: Secret,
    /// The variable it came from, for messages (`None`: PagerDuty's public endpoint).
    pub url_env: Option<String>,
    /// Incidents below this severity are not sent to this channel.
    pub min_severity: Severity,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// The longest wait between two attempts (failed deliveries are retried without limit).
    pub max_backoff: Duration,
    /// `mode = "leader"`: with several replicas, only the incident's leader sends (another
    /// replica takes over when it has not within `[replication] leader_timeout_ms`).
    pub leader: bool,
}

/// `[storage] keep_occurrences` unless set.
pub const DEFAULT_KEEP_OCCURRENCES: &str = "30d";

impl Loader<'_> {
    pub(crate) fn metrics(
        &self,
        raw: Option<&raw::RawMetrics>,
    ) -> Result<MetricsConfig, ConfigError> {
        let Some(bind) = raw.and_then(|m| m.bind.as_ref()) else {
            return Ok(MetricsConfig::default());
        };
        let parsed = bind.get_ref().parse().map_err(|_| {
            self.err(
                span(bind),
                format!("expected ip:port such as \"127.0.0.1:9187\", got {:?}", bind.get_ref()),
            )
        })?;
        Ok(MetricsConfig { bind: Some(parsed) })
    }

    /// A duration such as `"2s"`, `"500ms"`, `"5m"` (jiff's friendly format, as `[response]`).
    pub(crate) fn positive_duration(
        &self,
        key: &S<String>,
        name: &str,
    ) -> Result<Duration, ConfigError> {
        let parsed = key.get_ref().trim().parse::<jiff::SignedDuration>().map_err(|_| {
            self.err(
                span(key),
                format!(
                    "{name}: expected a duration such as \"2s\", \"500ms\" or \"5m\", got {:?}",
                    key.get_ref()
                ),
            )
        })?;
        Duration::try_from(parsed)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.err(span(key), format!("{name} must be above 0")))
    }

    pub(crate) fn ready(&self, raw: Option<&raw::RawReady>) -> Result<ReadyConfig, ConfigError> {
        let mut ready = ReadyConfig::default();
        let Some(raw) = raw else { return Ok(ready) };
        if let Some(key) = &raw.block_time {
            ready.block_time = self.positive_duration(key, "block_time")?;
        }
        if let Some(key) = &raw.notifications_failing {
            ready.notifications_failing = self.positive_duration(key, "notifications_failing")?;
        }
        if let Some(key) = &raw.check_every {
            ready.check_every = self.positive_duration(key, "check_every")?;
        }
        for (key, slot, name) in [
            (&raw.stall_blocks, &mut ready.stall_blocks, "stall_blocks"),
            (&raw.execution_gas, &mut ready.execution_gas, "execution_gas"),
        ] {
            if let Some(key) = key {
                if *key.get_ref() == 0 {
                    return Err(self.err(span(key), format!("{name} must be above 0")));
                }
                *slot = *key.get_ref();
            }
        }
        Ok(ready)
    }

    /// `[storage] keep_occurrences`: `None` keeps them forever (`"0"`).
    pub(crate) fn keep_occurrences(
        &self,
        raw: Option<&raw::RawStorage>,
    ) -> Result<Option<Duration>, ConfigError> {
        let key = raw.and_then(|s| s.keep_occurrences.as_ref());
        let text = key.map_or(DEFAULT_KEEP_OCCURRENCES, |k| k.get_ref().as_str());
        let period: RetentionPeriod =
            text.trim().parse().map_err(|e: guardian_core::backup::BadPeriod| {
                self.err(
                    key.and_then(span),
                    format!("keep_occurrences: {e}; \"0\" keeps them forever"),
                )
            })?;
        Ok(u64::try_from(period.as_seconds()).ok().filter(|s| *s > 0).map(Duration::from_secs))
    }

    pub(crate) fn notify(
        &self,
        raw: &[S<raw::RawNotify>],
        webhook: Option<&crate::WebhookConfig>,
    ) -> Result<Vec<NotifyConfig>, ConfigError> {
        let mut channels: Vec<NotifyConfig> = Vec::new();
        if let Some(w) = webhook {
            channels.push(NotifyConfig {
                name: "webhook".to_owned(),
                kind: ChannelKind::Webhook { secret: None },
                url: w.url.clone(),
                url_env: Some(w.url_env.clone()),
                min_severity: Severity::Low,
                timeout: w.timeout,
                max_backoff: w.max_backoff,
                leader: w.leader,
            });
        }
        for entry in raw {
            let channel = self.channel(entry)?;
            if channels.iter().any(|c| c.name == channel.name) {
                let place = entry.get_ref().name.as_ref().map_or_else(|| span(entry), span);
                return Err(self.err(
                    place,
                    format!(
                        "two notification channels are named {:?} ([webhook] is named \"webhook\"): give this one a distinct `name`",
                        channel.name
                    ),
                ));
            }
            channels.push(channel);
        }
        Ok(channels)
    }

    fn channel(&self, entry: &S<raw::RawNotify>) -> Result<NotifyConfig, ConfigError> {
        let n = entry.get_ref();
        let kind_name = n.kind.get_ref().as_str();
        // Which of the per-kind keys each kind takes.
        let (takes, needs): (&[&str], &[&str]) = match kind_name {
            "slack" | "discord" => (&[], &["url_env"]),
            "telegram" => (&["chat_id"], &["url_env", "chat_id"]),
            "pagerduty" => (&["routing_key_env"], &["routing_key_env"]),
            "webhook" => (&["secret_env"], &["url_env"]),
            other => {
                return Err(self.err(
                    span(&n.kind),
                    format!(
                        "unknown notification kind {other:?} (expected slack, discord, telegram, pagerduty or webhook)"
                    ),
                ));
            }
        };
        if let Some(url) = &n.url {
            return Err(self.err(
                span(url),
                "notification URLs carry tokens: put the URL in an environment variable and name it with `url_env`",
            ));
        }
        let present = [
            ("secret_env", n.secret_env.as_ref().map(S::span)),
            ("chat_id", n.chat_id.as_ref().map(S::span)),
            ("routing_key_env", n.routing_key_env.as_ref().map(S::span)),
        ];
        for (key, place) in &present {
            if let Some(place) = place
                && !takes.contains(key)
            {
                return Err(self.err(
                    Some(place.clone()),
                    format!("`{key}` does not apply to {kind_name} channels"),
                ));
            }
        }
        let given = |key: &str| match key {
            "url_env" => n.url_env.is_some(),
            "chat_id" => n.chat_id.is_some(),
            "routing_key_env" => n.routing_key_env.is_some(),
            _ => true,
        };
        if let Some(missing) = needs.iter().find(|k| !given(k)) {
            let what = match *missing {
                "url_env" if kind_name == "telegram" => {
                    "the variable holding https://api.telegram.org/bot<token>/sendMessage"
                }
                "url_env" => "the environment variable holding its URL",
                "chat_id" => "the chat to post to (a number, or @channelname)",
                _ => "the environment variable holding the integration's routing key",
            };
            return Err(self.err(
                Some(entry.span()),
                format!("a {kind_name} channel needs `{missing}`: {what}"),
            ));
        }
        let place = format!("notify.{kind_name}");
        let (url, url_env) = match &n.url_env {
            Some(var) => {
                let url = self.secret(var, &format!("{place}.url_env"))?;
                if !(url.expose().starts_with("https://") || url.expose().starts_with("http://")) {
                    return Err(self.err(
                        span(var),
                        format!(
                            "the URL in ${} must start with https:// or http://",
                            var.get_ref()
                        ),
                    ));
                }
                (url, Some(var.get_ref().clone()))
            }
            None => (Secret::new(PAGERDUTY_EVENTS_URL), None),
        };
        let kind = match kind_name {
            "slack" => ChannelKind::Slack,
            "discord" => ChannelKind::Discord,
            "telegram" => {
                let chat = n.chat_id.as_ref().map(|c| (c.get_ref(), span(c)));
                let chat_id = match chat {
                    Some((toml::Value::Integer(i), _)) => i.to_string(),
                    Some((toml::Value::String(s), _)) if !s.trim().is_empty() => {
                        s.trim().to_owned()
                    }
                    Some((other, place)) => {
                        return Err(self.err(
                            place,
                            format!("chat_id: expected a number or \"@channelname\", got {other}"),
                        ));
                    }
                    None => String::new(),
                };
                ChannelKind::Telegram { chat_id }
            }
            "pagerduty" => match &n.routing_key_env {
                Some(var) => ChannelKind::PagerDuty {
                    routing_key: self.secret(var, &format!("{place}.routing_key_env"))?,
                },
                None => ChannelKind::PagerDuty { routing_key: Secret::new("") },
            },
            _ => ChannelKind::Webhook {
                secret: match &n.secret_env {
                    Some(var) => Some(self.secret(var, &format!("{place}.secret_env"))?),
                    None => None,
                },
            },
        };
        let name = match &n.name {
            None => kind_name.to_owned(),
            Some(name) => {
                let text = name.get_ref();
                if text.is_empty()
                    || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(self.err(
                        span(name),
                        format!("a channel name is letters, digits, - and _, got {text:?}"),
                    ));
                }
                text.clone()
            }
        };
        let min_severity = match &n.min_severity {
            None => Severity::Low,
            Some(s) => s.get_ref().parse::<Severity>().map_err(|e| self.err(span(s), e))?,
        };
        let positive = |key: &Option<S<u64>>, name: &str, default: u64| match key {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.err(span(v), format!("{name} must be above 0")))
            }
            Some(v) => Ok(Duration::from_millis(*v.get_ref())),
            None => Ok(Duration::from_millis(default)),
        };
        Ok(NotifyConfig {
            name,
            kind,
            url,
            url_env,
            min_severity,
            timeout: positive(&n.timeout_ms, "timeout_ms", 5_000)?,
            max_backoff: positive(&n.max_backoff_ms, "max_backoff_ms", 300_000)?,
            leader: self.leader_mode(n.mode.as_ref())?,
        })
    }
}
