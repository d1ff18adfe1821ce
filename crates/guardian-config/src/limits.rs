//! The bounds `Config::load` holds every number to, so a typo cannot make the daemon do
//! something absurd: a window of `u64::MAX` blocks would make every restart replay the chain
//! from block 1; a poll interval of a week would mean no detection at all.

/// Longest window (`blocks` of window, revert_rate and balance_drop rules): about 2.3 days of
/// 2-second blocks. A restart replays the longest window to rebuild the rules' state.
pub const MAX_WINDOW_BLOCKS: u64 = 100_000;

/// Most `[chain] confirmations`: QBFT is final at 0; a fork of a probabilistic chain needs a few.
pub const MAX_CONFIRMATIONS: u64 = 1_000;

/// Shortest `[chain] poll_interval_ms`.
pub const MIN_POLL_INTERVAL_MS: u64 = 10;

/// Longest `[chain] poll_interval_ms`: ten minutes.
pub const MAX_POLL_INTERVAL_MS: u64 = 600_000;

/// Largest `[chain] max_log_range`.
pub const MAX_LOG_RANGE: u64 = 100_000;

/// Longest `[webhook] timeout_ms`: ten minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Longest `[webhook] max_backoff_ms`: a day.
pub const MAX_BACKOFF_MS: u64 = 86_400_000;

/// Most indexed arguments of an event: the EVM has four topics and the first is the event's
/// signature.
pub const MAX_INDEXED: usize = 3;

/// A number of `key` in `min..=max`, or what is wrong with it.
pub(crate) fn within(key: &str, value: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    Err(if value < min && min == 1 {
        format!("{key} must be above 0")
    } else if value < min {
        format!("{key} must be at least {min}, got {value}")
    } else {
        format!("{key} must be at most {max}, got {value}")
    })
}

/// Refuse an event signature with more indexed arguments than topics.
pub(crate) fn check_indexed(signature: &str) -> Result<(), String> {
    let Ok(event) = alloy_json_abi::Event::parse(signature.trim()) else {
        return Ok(()); // a parse error is reported where the signature is parsed
    };
    let indexed = event.inputs.iter().filter(|p| p.indexed).count();
    if indexed > MAX_INDEXED && !event.anonymous {
        return Err(format!(
            "event {} has {indexed} indexed arguments; an event has at most {MAX_INDEXED} (the EVM \
             has four topics and the first is the signature)",
            event.name
        ));
    }
    Ok(())
}
