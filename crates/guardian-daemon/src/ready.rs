//! Readiness: whether this guardian is doing its job right now. `GET /ready` answers 200, or
//! 503 with the reasons; `guardian_ready` mirrors it. [`evaluate`] is a pure function of what
//! the follower, the RPC pool, the store and the chain watch last saw, so every rule is tested
//! here on figures.
//!
//! Not ready when (thresholds from `[ready]`):
//! - the cursor has not moved for `stall_blocks` block times while the chain has (the head is
//!   ahead of it), or while no endpoint has told the head for that long (a hung node looks the
//!   same as a halted chain from here, and neither is being watched);
//! - every RPC endpoint's last request failed;
//! - the database fails: the follower's commits fail, or the store cannot be read;
//! - the executor holds less than one execution costs;
//! - a notification has been failing on some channel for longer than `notifications_failing`.

use guardian_config::ReadyConfig;
use guardian_core::incident::Millis;
use guardian_operator::status::{
    EndpointHealth, EndpointState, ExecutorState, NotReady, Readiness,
};

use crate::metrics::FollowerView;

/// What readiness is judged on.
#[derive(Debug, Clone)]
pub struct ReadyInputs {
    /// Now (unix ms).
    pub now: Millis,
    /// When the daemon started following (unix ms): a stall is not judged before a whole stall
    /// period has passed.
    pub started_at: Millis,
    /// What the follower last told.
    pub follower: FollowerView,
    /// The follower's last database error, while its commits fail.
    pub database_error: Option<String>,
    /// The cursor as the store has it now (`Err`: the store cannot be read).
    pub cursor: Result<Option<u64>, String>,
    /// Each endpoint.
    pub endpoints: Vec<EndpointState>,
    /// The executor, when this replica has one and its balance was read.
    pub executor: Option<ExecutorState>,
    /// Since when the oldest failing notification has been failing, on a configured channel.
    pub notifications_failing_since: Option<Millis>,
}

fn reason(check: &str, detail: String) -> NotReady {
    NotReady { check: check.to_owned(), detail }
}

fn seconds(ms: Millis) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Ready, or why not.
pub fn evaluate(inputs: &ReadyInputs, config: &ReadyConfig) -> Readiness {
    let mut reasons = Vec::new();
    let now = inputs.now;
    let stall = u64::try_from(config.stall_after().as_millis()).unwrap_or(u64::MAX);

    // The follower.
    let cursor = inputs.cursor.as_ref().ok().copied().flatten();
    let since_move = inputs
        .follower
        .cursor
        .map_or(now.saturating_sub(inputs.started_at), |(_, since)| now.saturating_sub(since));
    if since_move > stall && now.saturating_sub(inputs.started_at) > stall {
        let head = inputs.follower.head;
        let fresh_head = head.filter(|(_, at)| now.saturating_sub(*at) <= stall);
        let detail = match (fresh_head, head) {
            (Some((head, _)), _) if cursor.is_some_and(|c| head > c) => Some(format!(
                "the cursor ({}) has not moved for {} (more than {} blocks of {}) while the chain head is at {head}",
                or_none(cursor),
                seconds(since_move),
                config.stall_blocks,
                seconds(u64::try_from(config.block_time.as_millis()).unwrap_or(u64::MAX)),
            )),
            (Some(_), _) => None, // at the head: the chain itself is quiet
            (None, last) => Some(format!(
                "the cursor ({}) has not moved for {} and no endpoint has told the head for {} (last head {})",
                or_none(cursor),
                seconds(since_move),
                last.map_or_else(|| "ever".to_owned(), |(_, at)| seconds(now.saturating_sub(at))),
                last.map_or_else(|| "none".to_owned(), |(h, _)| h.to_string()),
            )),
        };
        if let Some(detail) = detail {
            reasons.push(reason("follower_stalled", detail));
        }
    }

    // The endpoints.
    if !inputs.endpoints.is_empty()
        && inputs.endpoints.iter().all(|e| e.health == EndpointHealth::Failing)
    {
        let which: Vec<String> = inputs
            .endpoints
            .iter()
            .map(|e| match e.failing_since {
                Some(since) => format!("{} for {}", e.endpoint, seconds(now.saturating_sub(since))),
                None => e.endpoint.clone(),
            })
            .collect();
        reasons.push(reason(
            "rpc_failing",
            format!("every RPC endpoint's last request failed: {}", which.join(", ")),
        ));
    }

    // The database.
    match (&inputs.cursor, &inputs.database_error, inputs.follower.database_failing_since) {
        (Err(error), _, _) => reasons
            .push(reason("database_failing", format!("the database cannot be read: {error}"))),
        (_, Some(error), since) => reasons.push(reason(
            "database_failing",
            format!(
                "the follower cannot commit{}: {error}",
                since
                    .map(|s| format!(" for {}", seconds(now.saturating_sub(s))))
                    .unwrap_or_default()
            ),
        )),
        _ => {}
    }

    // The executor.
    if let Some(executor) = inputs.executor.as_ref().filter(|x| !x.can_execute()) {
        reasons.push(reason(
            "executor_balance_low",
            format!(
                "the executor {} holds {} wei, less than one execution needs ({} wei)",
                executor.address, executor.balance_wei, executor.min_balance_wei
            ),
        ));
    }

    // Notifications.
    let threshold = u64::try_from(config.notifications_failing.as_millis()).unwrap_or(u64::MAX);
    if let Some(since) = inputs.notifications_failing_since
        && now.saturating_sub(since) > threshold
    {
        reasons.push(reason(
            "notifications_failing",
            format!(
                "a notification has been failing for {} (more than {})",
                seconds(now.saturating_sub(since)),
                seconds(threshold)
            ),
        ));
    }
    Readiness { ready: reasons.is_empty(), reasons }
}

fn or_none(value: Option<u64>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alloy::primitives::{Address, U256};

    use super::*;

    const NOW: Millis = 1_000_000;

    fn config() -> ReadyConfig {
        ReadyConfig {
            block_time: Duration::from_secs(1),
            stall_blocks: 5,
            notifications_failing: Duration::from_secs(60),
            ..ReadyConfig::default()
        }
    }

    fn endpoint(health: EndpointHealth) -> EndpointState {
        EndpointState {
            endpoint: "http://127.0.0.1:8545".into(),
            current: true,
            health,
            head: None,
            last_error: None,
            failing_since: Some(NOW - 3_000),
        }
    }

    /// Following well: the cursor moved a second ago, the head was read now.
    fn healthy() -> ReadyInputs {
        ReadyInputs {
            now: NOW,
            started_at: NOW - 600_000,
            follower: FollowerView {
                head: Some((100, NOW)),
                cursor: Some((100, NOW - 1_000)),
                cursor_timestamp: Some(NOW / 1000),
                database_failing_since: None,
            },
            database_error: None,
            cursor: Ok(Some(100)),
            endpoints: vec![endpoint(EndpointHealth::Ok)],
            executor: None,
            notifications_failing_since: None,
        }
    }

    fn checks(inputs: &ReadyInputs) -> Vec<String> {
        evaluate(inputs, &config()).reasons.into_iter().map(|r| r.check).collect()
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, ReadyInputs, Vec<&str>)> = vec![
            ("following", healthy(), vec![]),
            (
                "cursor still, chain ahead",
                ReadyInputs {
                    follower: FollowerView {
                        head: Some((110, NOW)),
                        cursor: Some((100, NOW - 6_000)),
                        ..healthy().follower
                    },
                    ..healthy()
                },
                vec!["follower_stalled"],
            ),
            (
                "cursor still for less than the stall time",
                ReadyInputs {
                    follower: FollowerView {
                        head: Some((110, NOW)),
                        cursor: Some((100, NOW - 4_000)),
                        ..healthy().follower
                    },
                    ..healthy()
                },
                vec![],
            ),
            (
                "a quiet chain: cursor at the head",
                ReadyInputs {
                    follower: FollowerView {
                        head: Some((100, NOW)),
                        cursor: Some((100, NOW - 60_000)),
                        ..healthy().follower
                    },
                    ..healthy()
                },
                vec![],
            ),
            (
                "a hung node: no head for the stall time",
                ReadyInputs {
                    follower: FollowerView {
                        head: Some((100, NOW - 6_000)),
                        cursor: Some((100, NOW - 6_000)),
                        ..healthy().follower
                    },
                    ..healthy()
                },
                vec!["follower_stalled"],
            ),
            (
                "just started: not judged yet",
                ReadyInputs {
                    started_at: NOW - 2_000,
                    follower: FollowerView::default(),
                    ..healthy()
                },
                vec![],
            ),
            (
                "every endpoint failing",
                ReadyInputs {
                    endpoints: vec![
                        endpoint(EndpointHealth::Failing),
                        endpoint(EndpointHealth::Failing),
                    ],
                    ..healthy()
                },
                vec!["rpc_failing"],
            ),
            (
                "one endpoint of two failing",
                ReadyInputs {
                    endpoints: vec![
                        endpoint(EndpointHealth::Failing),
                        endpoint(EndpointHealth::Ok),
                    ],
                    ..healthy()
                },
                vec![],
            ),
            (
                "commits fail",
                ReadyInputs {
                    database_error: Some("database is locked".into()),
                    follower: FollowerView {
                        database_failing_since: Some(NOW - 10_000),
                        ..healthy().follower
                    },
                    ..healthy()
                },
                vec!["database_failing"],
            ),
            (
                "the store cannot be read",
                ReadyInputs { cursor: Err("disk I/O error".into()), ..healthy() },
                vec!["database_failing"],
            ),
            (
                "executor short of one execution",
                ReadyInputs {
                    executor: Some(ExecutorState {
                        address: Address::ZERO,
                        balance_wei: U256::from(9),
                        min_balance_wei: U256::from(10),
                    }),
                    ..healthy()
                },
                vec!["executor_balance_low"],
            ),
            (
                "executor funded",
                ReadyInputs {
                    executor: Some(ExecutorState {
                        address: Address::ZERO,
                        balance_wei: U256::from(10),
                        min_balance_wei: U256::from(10),
                    }),
                    ..healthy()
                },
                vec![],
            ),
            (
                "notifications failing too long",
                ReadyInputs { notifications_failing_since: Some(NOW - 61_000), ..healthy() },
                vec!["notifications_failing"],
            ),
            (
                "notifications failing briefly",
                ReadyInputs { notifications_failing_since: Some(NOW - 59_000), ..healthy() },
                vec![],
            ),
        ];
        for (name, inputs, expected) in cases {
            assert_eq!(checks(&inputs), expected, "{name}");
            assert_eq!(evaluate(&inputs, &config()).ready, expected.is_empty(), "{name}");
        }
    }

    #[test]
    fn reasons_carry_the_figures() {
        let stalled = ReadyInputs {
            follower: FollowerView {
                head: Some((110, NOW)),
                cursor: Some((100, NOW - 6_000)),
                ..healthy().follower
            },
            ..healthy()
        };
        let detail = &evaluate(&stalled, &config()).reasons[0].detail;
        assert!(
            detail.contains("(100)") && detail.contains("110") && detail.contains("6.0 s"),
            "{detail}"
        );
    }
}
