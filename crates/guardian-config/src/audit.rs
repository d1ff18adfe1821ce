//! `[audit]`: where post-mortems are written, and the anchoring of the audit log's head on
//! chain (off unless `anchor` names the `AuditAnchor` contract).

use std::{path::PathBuf, time::Duration};

use alloy_primitives::Address;

use crate::{ConfigError, Loader, SafeConfig, raw, span};

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditConfig {
    /// Where `incidents report` writes each resolved incident's post-mortem (default: a
    /// `postmortems` folder beside the backups, or beside the database without `[rollback]`).
    pub postmortem_dir: Option<PathBuf>,
    /// Publishing the chain head on chain; `None`: off.
    pub anchor: Option<AnchorConfig>,
}

/// `[audit] anchor = …`: every `every` entries or `interval`, whichever comes first, the head
/// is published as an `Anchored` event of the `AuditAnchor` contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorConfig {
    /// The `AuditAnchor` contract (`guardian audit deploy-anchor`).
    pub contract: Address,
    /// The variable holding the key that sends the anchors (the contract's anchorer).
    pub key_env: String,
    /// Anchor after this many new entries.
    pub every: u64,
    /// … or after this long with new entries.
    pub interval: Duration,
    /// The block the contract was deployed in: where `audit verify --onchain` starts looking.
    pub from_block: u64,
}

impl Loader<'_> {
    pub(crate) fn audit(
        &self,
        raw: Option<&raw::RawAudit>,
        safe: Option<&SafeConfig>,
    ) -> Result<AuditConfig, ConfigError> {
        let Some(raw) = raw else { return Ok(AuditConfig::default()) };
        let postmortem_dir = raw.postmortem_dir.as_ref().map(|d| self.base.join(d.get_ref()));
        let Some(contract) = &raw.anchor else {
            for (key, name) in [
                (raw.anchor_key_env.as_ref().map(span), "anchor_key_env"),
                (raw.anchor_every.as_ref().map(span), "anchor_every"),
                (raw.anchor_interval.as_ref().map(span), "anchor_interval"),
                (raw.anchor_from_block.as_ref().map(span), "anchor_from_block"),
            ] {
                if let Some(at) = key {
                    return Err(self.err(
                        at,
                        format!("{name} needs anchor = \"0x…\" (the AuditAnchor contract)"),
                    ));
                }
            }
            return Ok(AuditConfig { postmortem_dir, anchor: None });
        };
        let address =
            crate::parse_address(contract.get_ref()).map_err(|e| self.err(span(contract), e))?;
        let key_env = match (&raw.anchor_key_env, safe.and_then(|s| s.executor_key_env.clone())) {
            (Some(name), _) => self.env_name(name)?.to_owned(),
            (None, Some(executor)) => executor,
            (None, None) => {
                return Err(self.err(
                    span(contract),
                    "anchoring needs a key: set anchor_key_env, or [safe] executor_key_env",
                ));
            }
        };
        let every = match &raw.anchor_every {
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(span(n), "anchor_every must be above 0"));
            }
            Some(n) => *n.get_ref(),
            None => 100,
        };
        let interval = match &raw.anchor_interval {
            Some(key) => self.positive_duration(key, "anchor_interval")?,
            None => Duration::from_secs(600),
        };
        let from_block = raw.anchor_from_block.as_ref().map_or(0, |b| *b.get_ref());
        Ok(AuditConfig {
            postmortem_dir,
            anchor: Some(AnchorConfig { contract: address, key_env, every, interval, from_block }),
        })
    }
}
