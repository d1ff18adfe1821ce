//! The incident machine's timers: escalations of incidents not contained by their response
//! deadline. Timers are rows in the database (written with the transition that scheduled
//! them), so they survive restarts; this task fires them as events when they come due.

use std::{path::PathBuf, sync::Arc, time::Duration};

use eyre::{Result, WrapErr};
use guardian_core::incident::ResponsePolicy;
use guardian_store::{IncidentError, Store, now_ms};
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

/// How often to look for timers another process scheduled, at the most.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Fire due timers until `shutdown` flips; `notify` is woken after an escalation.
pub async fn run_timers(
    db: PathBuf,
    chain_id: u64,
    policy: ResponsePolicy,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut store = Store::open(&db).wrap_err("opening the database for the timers")?;
    store.bind_chain(chain_id)?;
    store.set_policy(policy);
    loop {
        match fire_due(&mut store) {
            Ok(true) => notify.notify_one(),
            Ok(false) => {}
            Err(error) => {
                warn!(error = %format!("{error:#}"), "timers could not use the database; retrying")
            }
        }
        let wait = match store.next_timer() {
            Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now_ms())).min(LOOK_EVERY),
            _ => LOOK_EVERY,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Fire every timer due now; true when one changed an incident.
pub fn fire_due(store: &mut Store) -> Result<bool> {
    let now = now_ms();
    let mut changed = false;
    for (id, timer, at) in store.due_timers(now)? {
        match store.fire_timer(id, timer, at, now) {
            Ok(applied) => changed |= applied.changed(),
            Err(IncidentError::Refused(refused)) => {
                debug!(incident = id, timer = timer.as_str(), %refused, "timer refused")
            }
            Err(error) => return Err(eyre::eyre!(error)),
        }
    }
    Ok(changed)
}
