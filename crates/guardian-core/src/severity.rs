//! The operators' decision matrix: how bad a finding is and what guardian does about it.
//!
//! Critical ⇒ act immediately (pause through the module, no approval); High ⇒ pause, with
//! on-call approval; Medium ⇒ evaluate (alert a
//! human); Low ⇒ monitor (log). The policy is configurable, the defaults are the matrix.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Monitor.
    Low,
    /// Evaluate.
    Medium,
    /// Pause, with on-call approval.
    High,
    /// Act immediately.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// Lower-case name as used in config files and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|sev| sev.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!("unknown severity {s:?} (expected low, medium, high or critical)")
        })
    }
}

/// What guardian does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record it and write it to the log.
    Log,
    /// Record it and notify humans (webhook).
    Alert,
    /// Record it, notify, and propose `pause()` through the Safe; after a verified pause, roll
    /// the managed configs back to the previous contract version when `then_rollback` is set.
    ProposePause {
        /// Roll configs back after the pause is verified.
        then_rollback: bool,
    },
    /// Record it, notify, and pause at once through the pause-only Safe module from the
    /// pauser key, without waiting for owners (the matrix: Critical acts now). When the module
    /// cannot (absent, disabled, the target not listed, the simulation fails), fall back at
    /// once to a Safe proposal and say why.
    PauseNow {
        /// Roll configs back after the pause is verified.
        then_rollback: bool,
    },
}

impl Action {
    /// Whether humans must be notified.
    pub const fn notifies(self) -> bool {
        !matches!(self, Self::Log)
    }

    /// Whether a pause follows (proposed, or at once through the module).
    pub const fn proposes_pause(self) -> bool {
        matches!(self, Self::ProposePause { .. } | Self::PauseNow { .. })
    }

    /// Whether the pause is sent at once through the module.
    pub const fn pauses_now(self) -> bool {
        matches!(self, Self::PauseNow { .. })
    }

    /// Whether the configs are rolled back after the pause.
    pub const fn rolls_back(self) -> bool {
        matches!(
            self,
            Self::ProposePause { then_rollback: true } | Self::PauseNow { then_rollback: true }
        )
    }

    /// The same action, rolling the configs back after the pause when `rollback` is set.
    pub const fn with_rollback(self, rollback: bool) -> Self {
        match self {
            Self::ProposePause { then_rollback } => {
                Self::ProposePause { then_rollback: then_rollback || rollback }
            }
            Self::PauseNow { then_rollback } => {
                Self::PauseNow { then_rollback: then_rollback || rollback }
            }
            other => other,
        }
    }

    /// Short name for logs and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Alert => "alert",
            Self::ProposePause { then_rollback: false } => "propose_pause",
            Self::ProposePause { then_rollback: true } => "propose_pause+rollback",
            Self::PauseNow { then_rollback: false } => "pause_now",
            Self::PauseNow { then_rollback: true } => "pause_now+rollback",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// The names [`Action::as_str`] prints: `log`, `alert`, `propose_pause`,
    /// `propose_pause+rollback`, `pause_now`, `pause_now+rollback`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Log,
            Self::Alert,
            Self::ProposePause { then_rollback: false },
            Self::ProposePause { then_rollback: true },
            Self::PauseNow { then_rollback: false },
            Self::PauseNow { then_rollback: true },
        ]
        .into_iter()
        .find(|action| action.as_str() == s.trim())
        .ok_or_else(|| {
            format!(
                "unknown action {s:?} (expected log, alert, propose_pause, propose_pause+rollback, pause_now or pause_now+rollback)"
            )
        })
    }
}

/// Maps each severity to an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityPolicy {
    /// Action for critical findings.
    pub critical: Action,
    /// Action for high findings.
    pub high: Action,
    /// Action for medium findings.
    pub medium: Action,
    /// Action for low findings.
    pub low: Action,
}

impl Default for SeverityPolicy {
    /// The operators' matrix: Critical pauses at once (no approval; post-mortem after), High
    /// proposes a pause for the on-call owners, Medium alerts, Low logs.
    fn default() -> Self {
        Self {
            critical: Action::PauseNow { then_rollback: false },
            high: Action::ProposePause { then_rollback: false },
            medium: Action::Alert,
            low: Action::Log,
        }
    }
}

impl SeverityPolicy {
    /// The action for `severity`.
    pub const fn action(&self, severity: Severity) -> Action {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }
}

/// The operators' matrix for error (revert) rates: above 10 % is Critical.
pub const CRITICAL_REVERT_RATE: f64 = 0.10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_the_operators_matrix() {
        let policy = SeverityPolicy::default();
        assert!(policy.action(Severity::Critical).pauses_now());
        assert!(policy.action(Severity::Critical).proposes_pause());
        assert!(!policy.action(Severity::High).pauses_now());
        assert!(policy.action(Severity::High).proposes_pause());
        assert_eq!(policy.action(Severity::Medium), Action::Alert);
        assert_eq!(policy.action(Severity::Low), Action::Log);
        assert!(!Action::Log.notifies());
        assert!(Action::Alert.notifies());
    }

    #[test]
    fn severities_are_ordered_and_parse() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::High < Severity::Critical);
        for sev in Severity::ALL {
            assert_eq!(sev.as_str().parse::<Severity>(), Ok(sev));
            assert_eq!(sev.to_string().to_uppercase().parse::<Severity>(), Ok(sev));
        }
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn actions_serialise_as_config_names() {
        let json =
            serde_json::to_string(&Action::ProposePause { then_rollback: true }).expect("json");
        assert_eq!(json, r#"{"propose_pause":{"then_rollback":true}}"#);
        assert_eq!(serde_json::to_string(&Action::Alert).expect("json"), r#""alert""#);
    }
}
