//! Each channel's native request for one notification, built from guardian's own JSON
//! ([`super::payload`]): the same facts, in the shape Slack, Discord, Telegram, PagerDuty or a
//! generic webhook expects. Pure: no I/O, so every shape is tested here.

use guardian_config::{ChannelKind, NotifyConfig};
use guardian_core::{
    incident::{Incident, NoticeKind},
    severity::Severity,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Backoff, Webhook};

/// The header a signed webhook carries: hex HMAC-SHA256 of the raw body under the channel's
/// secret.
pub const SIGNATURE_HEADER: &str = "X-Guardian-Signature";

/// One configured channel, ready to deliver.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its unique name (the `channel` label, and its rows in `deliveries`).
    pub name: String,
    /// What it speaks, with its routing key, chat or signing secret.
    pub kind: ChannelKind,
    /// Incidents below this severity are skipped.
    pub min_severity: Severity,
    /// Where and how to POST.
    pub hook: Webhook,
    /// How many of its deliveries may be in flight at once (each of a different incident:
    /// one incident's notifications go one after another, in order).
    pub in_flight: usize,
    /// `mode = "leader"`: with several replicas, only the incident's leader sends.
    pub leader: bool,
    /// This replica and its peers, when `[[replicas]]` are configured: each notification names
    /// its replica, and in leader mode the peers are asked before sending.
    pub replicas: Option<std::sync::Arc<super::Replicas>>,
}

/// Deliveries one channel has in flight at once, by default: enough that a burst of alerts
/// about many contracts goes out in parallel, few enough not to hammer a receiver.
pub const IN_FLIGHT: usize = 8;

impl Channel {
    /// The channel `config` describes.
    pub fn from_config(config: &NotifyConfig) -> eyre::Result<Self> {
        let url = config.url.expose().parse().map_err(|_| match &config.url_env {
            Some(var) => {
                eyre::eyre!("${var} does not hold a valid URL ([[notify]] {})", config.name)
            }
            None => eyre::eyre!("the URL of channel {} is not valid", config.name),
        })?;
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind.clone(),
            min_severity: config.min_severity,
            hook: Webhook {
                url,
                timeout: config.timeout,
                backoff: Backoff { cap: config.max_backoff, ..Backoff::default() },
            },
            in_flight: IN_FLIGHT,
            leader: config.leader,
            replicas: None,
        })
    }

    /// A generic, unsigned webhook channel (what `[webhook]` is).
    pub fn webhook(name: &str, hook: Webhook) -> Self {
        Self {
            name: name.to_owned(),
            kind: ChannelKind::Webhook { secret: None },
            min_severity: Severity::Low,
            hook,
            in_flight: IN_FLIGHT,
            leader: false,
            replicas: None,
        }
    }
}

/// What to do with one notification on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// POST this body with these extra headers.
    Send {
        /// The raw JSON body.
        body: Vec<u8>,
        /// Headers beyond `Content-Type` and `Idempotency-Key`.
        headers: Vec<(&'static str, String)>,
    },
    /// Nothing to send here; the reason is the delivery's outcome.
    Skip(String),
}

/// `text` cut to at most `max` characters (on a character boundary), with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What PagerDuty is asked for on `kind`: a new or updated alert, its acknowledgement once
/// the pause is verified, its resolution once the incident is closed; nothing for steps that
/// need no one (an approval counted, a rollback done).
pub fn pagerduty_action(kind: NoticeKind) -> Option<&'static str> {
    match kind {
        NoticeKind::Opened
        | NoticeKind::SeverityRaised
        | NoticeKind::Reinstated
        | NoticeKind::Reopened
        | NoticeKind::Escalation
        | NoticeKind::PauseProposed
        | NoticeKind::ProposalFailed
        | NoticeKind::ExecutionFailed
        | NoticeKind::ImmediatePauseUnavailable
        | NoticeKind::RecoveryFailed
        | NoticeKind::RollbackFailed => Some("trigger"),
        NoticeKind::Executed | NoticeKind::AlreadyPaused => Some("acknowledge"),
        NoticeKind::Resolved | NoticeKind::Withdrawn | NoticeKind::Cancelled => Some("resolve"),
        NoticeKind::Approval
        | NoticeKind::PauseSent
        | NoticeKind::RollbackDone
        | NoticeKind::RecoveryVerified => None,
    }
}

/// PagerDuty's severities for guardian's.
const fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

/// Discord embed colours: red, orange, yellow, grey.
const fn colour(severity: Severity) -> u32 {
    match severity {
        Severity::Critical => 0xd0_30_30,
        Severity::High => 0xe6_7e_22,
        Severity::Medium => 0xf1_c4_0f,
        Severity::Low => 0x95_a5_a6,
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    alloy::hex::encode(mac.finalize().into_bytes())
}

/// The request `channel` gets for the notification whose guardian JSON is `payload`, of kind
/// `kind`, about `incident`.
pub fn render(
    channel: &Channel,
    kind: NoticeKind,
    incident: &Incident,
    payload: &Value,
) -> Outgoing {
    if incident.severity < channel.min_severity {
        return Outgoing::Skip(format!(
            "skipped: {} is below this channel's min_severity {}",
            incident.severity, channel.min_severity
        ));
    }
    let text = payload["text"].as_str().unwrap_or_default();
    let body = match &channel.kind {
        ChannelKind::Slack => json!({ "text": text }),
        ChannelKind::Discord => {
            let state = payload["incident"]["state"].as_str().unwrap_or_default();
            json!({
                "content": clip(text, 2000),
                // Contract names and details come from configs and the chain: never let them
                // ping @everyone or a role.
                "allowed_mentions": { "parse": [] },
                "embeds": [{
                    "title": clip(&format!("Incident #{} on {}: {}", payload["incident"]["id"], incident.contract, kind.as_str().replace('_', " ")), 256),
                    "description": clip(payload["event"]["detail"].as_str().unwrap_or_default(), 4096),
                    "color": colour(incident.severity),
                    "fields": [
                        { "name": "Severity", "value": incident.severity.as_str(), "inline": true },
                        { "name": "State", "value": state, "inline": true },
                        { "name": "Contract", "value": format!("{} ({})", incident.contract, incident.address), "inline": false },
                    ],
                    "footer": { "text": clip(payload["idempotency_key"].as_str().unwrap_or_default(), 2048) },
                }],
            })
        }
        ChannelKind::Telegram { chat_id } => {
            // A numeric chat id is sent as a number, a @channelname as a string.
            let chat: Value = chat_id.parse::<i64>().map_or_else(|_| json!(chat_id), |n| json!(n));
            json!({ "chat_id": chat, "text": clip(text, 4096), "disable_web_page_preview": true })
        }
        ChannelKind::PagerDuty { routing_key } => {
            let Some(action) = pagerduty_action(kind) else {
                return Outgoing::Skip(format!(
                    "skipped: PagerDuty is not told of {}",
                    kind.as_str()
                ));
            };
            let mut event = json!({
                "routing_key": routing_key.expose(),
                "event_action": action,
                "dedup_key": incident.key,
            });
            if action == "trigger" {
                event["payload"] = json!({
                    "summary": clip(text, 1024),
                    "source": format!("{} ({})", incident.contract, incident.address),
                    "severity": pagerduty_severity(incident.severity),
                    "component": incident.contract,
                    "group": "guardian",
                    "class": kind.as_str(),
                    "custom_details": payload,
                });
            }
            event
        }
        ChannelKind::Webhook { .. } => payload.clone(),
    };
    let body = body.to_string().into_bytes();
    let headers = match &channel.kind {
        ChannelKind::Webhook { secret: Some(secret) } => {
            vec![(SIGNATURE_HEADER, signature(secret.expose().as_bytes(), &body))]
        }
        _ => Vec::new(),
    };
    Outgoing::Send { body, headers }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;
    use guardian_config::Secret;
    use guardian_core::incident::{Incident, ResponsePolicy};

    use super::*;

    fn channel(kind: ChannelKind, min_severity: Severity) -> Channel {
        Channel {
            name: kind.as_str().to_owned(),
            kind,
            min_severity,
            hook: Webhook {
                url: "http://127.0.0.1:9/".parse().expect("url"),
                timeout: std::time::Duration::from_secs(1),
                backoff: Backoff::default(),
            },
            in_flight: IN_FLIGHT,
            leader: false,
            replicas: None,
        }
    }

    fn incident(severity: Severity) -> Incident {
        let event = guardian_core::incident::Event::PauseRequested {
            actor: "op".into(),
            reason: "drill".into(),
            rollback: false,
        };
        let mut incident = Incident::open(
            "inc-0123456789abcdef".into(),
            "vault".into(),
            address!("0x0165878A594ca255338adfa4d48449f69242Eb8F"),
            &event,
            1_000,
            &ResponsePolicy::default(),
        )
        .expect("opens")
        .incident;
        incident.severity = severity;
        incident
    }

    fn payload() -> Value {
        json!({
            "kind": "opened",
            "idempotency_key": "inc-0123456789abcdef/opened",
            "incident": { "id": 3, "state": "open" },
            "event": { "detail": "a finding @everyone" },
            "text": "[CRITICAL] incident #3 on vault: opened",
        })
    }

    fn sent(outgoing: Outgoing) -> (Value, Vec<(&'static str, String)>) {
        match outgoing {
            Outgoing::Send { body, headers } => {
                (serde_json::from_slice(&body).expect("json body"), headers)
            }
            Outgoing::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn each_kind_gets_its_native_shape() {
        let critical = incident(Severity::Critical);
        let (slack, _) = sent(render(
            &channel(ChannelKind::Slack, Severity::Low),
            NoticeKind::Opened,
            &critical,
            &payload(),
        ));
        assert_eq!(slack, json!({ "text": "[CRITICAL] incident #3 on vault: opened" }));

        let (discord, _) = sent(render(
            &channel(ChannelKind::Discord, Severity::Low),
            NoticeKind::Opened,
            &critical,
            &payload(),
        ));
        assert_eq!(discord["content"], "[CRITICAL] incident #3 on vault: opened");
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
        assert_eq!(discord["embeds"][0]["title"], "Incident #3 on vault: opened");
        assert_eq!(discord["embeds"][0]["color"], 0xd0_30_30);

        let telegram = ChannelKind::Telegram { chat_id: "-100123".into() };
        let (tg, _) = sent(render(
            &channel(telegram, Severity::Low),
            NoticeKind::Opened,
            &critical,
            &payload(),
        ));
        assert_eq!(tg["chat_id"], json!(-100_123));
        assert_eq!(tg["text"], "[CRITICAL] incident #3 on vault: opened");

        let signed = ChannelKind::Webhook { secret: Some(Secret::new("k3y")) };
        let Outgoing::Send { body, headers } =
            render(&channel(signed, Severity::Low), NoticeKind::Opened, &critical, &payload())
        else {
            panic!("sent")
        };
        assert_eq!(headers, [(SIGNATURE_HEADER, signature(b"k3y", &body))]);
        assert_eq!(serde_json::from_slice::<Value>(&body).expect("json"), payload());
    }

    #[test]
    fn pagerduty_triggers_acknowledges_and_resolves_one_alert() {
        let pd =
            channel(ChannelKind::PagerDuty { routing_key: Secret::new("R0UTE") }, Severity::Low);
        let high = incident(Severity::High);
        let (trigger, _) = sent(render(&pd, NoticeKind::Opened, &high, &payload()));
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UTE");
        assert_eq!(trigger["dedup_key"], "inc-0123456789abcdef");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["custom_details"], payload());
        for (kind, action) in [
            (NoticeKind::Executed, "acknowledge"),
            (NoticeKind::Resolved, "resolve"),
            (NoticeKind::Withdrawn, "resolve"),
            (NoticeKind::Cancelled, "resolve"),
        ] {
            let (event, _) = sent(render(&pd, kind, &high, &payload()));
            assert_eq!(event["event_action"], action, "{kind:?}");
            assert_eq!(event["dedup_key"], "inc-0123456789abcdef");
            assert!(event.get("payload").is_none(), "only a trigger carries a payload");
        }
        assert!(matches!(render(&pd, NoticeKind::Approval, &high, &payload()), Outgoing::Skip(_)));
    }

    #[test]
    fn incidents_below_a_channels_min_severity_are_skipped() {
        let slack = channel(ChannelKind::Slack, Severity::High);
        let Outgoing::Skip(why) =
            render(&slack, NoticeKind::Opened, &incident(Severity::Medium), &payload())
        else {
            panic!("a medium incident is not sent to a high channel")
        };
        assert!(why.contains("below"), "{why}");
        assert!(matches!(
            render(&slack, NoticeKind::Opened, &incident(Severity::Critical), &payload()),
            Outgoing::Send { .. }
        ));
    }

    #[test]
    fn clipping_keeps_characters_whole() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 3), "hé…");
        assert_eq!(clip(&"é".repeat(3000), 2000).chars().count(), 2000);
    }
}
