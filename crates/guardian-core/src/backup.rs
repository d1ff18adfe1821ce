//! Config rollback decisions: backup names and timestamps, which config keys a rollback changes,
//! which backups are nearest to a mistyped timestamp, and which ones prune may delete.
//!
//! The file adapter (`guardian-rollback`) reads directories, configs and the ledger, asks these
//! functions what to do, and does it. Nothing here touches a file, a clock or the chain: "now" is
//! always an argument.
//!
//! # Backup names
//!
//! A backup of the managed config `NAME` is the file `NAME_STAMP.json`, where `STAMP` is the UTC
//! second it was taken, `YYYYMMDDTHHMMSSZ` (e.g. `20260126T101500Z`). A second backup in the same
//! second gets `-1`, the next `-2`, and so on (`20260126T101500Z-1`): the stamp is chosen under
//! guardian's lock from the stamps already in the folder, so it is unique in the folder and every
//! config backed up in one operation shares it. `NAME` may contain `_`: the stamp never does, so
//! the name is everything before the last `_`.

use std::{cmp::Ordering, collections::BTreeMap, fmt, str::FromStr};

use alloy_primitives::{Address, B256};
use jiff::{Timestamp, civil::DateTime, tz::TimeZone};
use serde::{Deserialize, Serialize};

/// `strftime` form of the second in a [`BackupStamp`].
const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// Length of `YYYYMMDDTHHMMSSZ`.
const STAMP_LEN: usize = 16;

/// When a backup was taken: a UTC second plus a sequence number that keeps two backups taken in
/// the same second apart. Ordered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupStamp {
    second: i64,
    seq: u32,
}

impl BackupStamp {
    /// The stamp for a backup taken at `at` (sub-second precision is dropped), sequence 0.
    pub fn at(at: Timestamp) -> Self {
        Self { second: at.as_second(), seq: 0 }
    }

    /// The first stamp at or after `now` that none of `taken` uses: `now`'s second, with a
    /// sequence one above the highest already used in that second.
    pub fn next_unique<'a>(now: Timestamp, taken: impl IntoIterator<Item = &'a Self>) -> Self {
        let base = Self::at(now);
        let next_seq = taken
            .into_iter()
            .filter(|stamp| stamp.second == base.second)
            .map(|stamp| stamp.seq + 1)
            .max()
            .unwrap_or(0);
        Self { seq: next_seq, ..base }
    }

    /// The UTC second the backup was taken in.
    pub fn time(&self) -> Timestamp {
        // `second` always comes from a valid `Timestamp` or a parsed civil time, so it is in range.
        Timestamp::from_second(self.second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The sequence number within that second (0 for the first backup).
    pub const fn seq(&self) -> u32 {
        self.seq
    }
}

impl fmt::Display for BackupStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.time().strftime(STAMP_FORMAT))?;
        if self.seq > 0 {
            write!(f, "-{}", self.seq)?;
        }
        Ok(())
    }
}

/// Why a string is not a backup stamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a backup timestamp (expected YYYYMMDDTHHMMSSZ, optionally -N, e.g. 20260126T101500Z or 20260126T101500Z-1)"
)]
pub struct BadStamp {
    input: String,
}

impl FromStr for BackupStamp {
    type Err = BadStamp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadStamp { input: s.to_owned() };
        let (time, seq) = match s.split_once('-') {
            Some((time, seq)) => {
                // "-0" and "-01" would name the same backup as "" and "-1": only one spelling.
                if seq.is_empty()
                    || seq.starts_with('0')
                    || !seq.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad());
                }
                (time, seq.parse::<u32>().map_err(|_| bad())?)
            }
            None => (s, 0),
        };
        if time.len() != STAMP_LEN {
            return Err(bad());
        }
        let civil = DateTime::strptime(STAMP_FORMAT, time).map_err(|_| bad())?;
        let at = civil.to_zoned(TimeZone::UTC).map_err(|_| bad())?.timestamp();
        Ok(Self { second: at.as_second(), seq })
    }
}

impl Serialize for BackupStamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupStamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a name cannot name a managed config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} cannot name a managed config: use letters, digits, '-', '_' and '.', not starting with '.'"
)]
pub struct BadConfigName {
    name: String,
}

/// A managed config's name must be usable in a backup file name on every platform.
pub fn validate_config_name(name: &str) -> Result<(), BadConfigName> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(BadConfigName { name: name.to_owned() }) }
}

/// One backup file: which config, taken when.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupName {
    /// The managed config's name (as in guardian.toml).
    pub config: String,
    /// When it was taken.
    pub stamp: BackupStamp,
}

impl BackupName {
    /// `NAME_STAMP.json`.
    pub fn file_name(&self) -> String {
        format!("{}_{}.json", self.config, self.stamp)
    }

    /// The checksum sidecar: `NAME_STAMP.json.sha256`.
    pub fn sidecar_name(&self) -> String {
        format!("{}.sha256", self.file_name())
    }

    /// Recognise a backup file name; anything else in the folder (sidecars, the lock file,
    /// temporary files, an operator's notes) is `None`.
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".json")?;
        let (config, stamp) = stem.rsplit_once('_')?;
        validate_config_name(config).ok()?;
        Some(Self { config: config.to_owned(), stamp: stamp.parse().ok()? })
    }
}

impl Ord for BackupName {
    /// Oldest first, then by config name.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.stamp, &self.config).cmp(&(other.stamp, &other.config))
    }
}

impl PartialOrd for BackupName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The line `sha256sum` writes and `sha256sum -c` checks: `HEX  FILE_NAME\n`.
pub fn sidecar_line(sha256: &B256, file_name: &str) -> String {
    format!("{}  {file_name}\n", hex_lower(sha256.as_slice()))
}

/// The digest and file name in a `sha256sum` line (text or binary mode), if it is one.
pub fn parse_sidecar(text: &str) -> Option<(B256, &str)> {
    let line = text.lines().next()?;
    let (digest, rest) = line.split_once(' ')?;
    let file_name = rest.strip_prefix([' ', '*'])?;
    if digest.len() != 64 || file_name.is_empty() {
        return None;
    }
    Some((digest.parse().ok()?, file_name))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `count` stamps in `available` closest in time to `wanted`, closest first, to suggest when
/// an operator asks for a backup that does not exist.
///
/// `wanted` may be a full stamp or a prefix of one (`20260126T10` means 10:00:00); when it is not
/// a time at all, the newest stamps are suggested.
pub fn nearest_stamps(available: &[BackupStamp], wanted: &str, count: usize) -> Vec<BackupStamp> {
    let mut stamps = available.to_vec();
    stamps.sort_unstable();
    stamps.dedup();
    match lenient_stamp(wanted) {
        Some(target) => stamps.sort_by_key(|stamp| {
            (stamp.second.abs_diff(target.second), stamp.seq.abs_diff(target.seq))
        }),
        None => stamps.reverse(),
    }
    stamps.truncate(count);
    stamps
}

/// A stamp, or a prefix of one padded with zeros (`20260126T10` → `20260126T100000Z`).
fn lenient_stamp(wanted: &str) -> Option<BackupStamp> {
    if let Ok(stamp) = wanted.parse() {
        return Some(stamp);
    }
    let digits: String = wanted.chars().filter(char::is_ascii_digit).take(14).collect();
    if digits.len() < 8 {
        return None;
    }
    let padded = format!("{digits:0<14}");
    format!("{}T{}Z", &padded[..8], &padded[8..]).parse().ok()
}

/// A period during which backups must be kept whatever `prune --keep` says: an incident that has
/// not been closed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentWindow {
    /// When the incident was opened.
    pub opened: Timestamp,
    /// When it was closed; `None` while it is open.
    pub closed: Option<Timestamp>,
}

impl IncidentWindow {
    /// Whether a backup with this stamp was taken during the incident (to the second).
    pub fn contains(&self, stamp: &BackupStamp) -> bool {
        let opened = self.opened.as_second();
        stamp.second >= opened
            && self.closed.is_none_or(|closed| stamp.second <= closed.as_second())
    }
}

/// Why prune keeps a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeepReason {
    /// Among the newest N of its config.
    Newest,
    /// Taken during an open incident.
    OpenIncident,
    /// The undo backup of a rollback or restore, younger than `[rollback] keep_undo_for`.
    UndoBackup,
    /// Another file of its set (same stamp) is kept, and prune never splits a set.
    SameSet,
}

/// What `prune --keep N` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// Backups that stay, with the reason.
    pub keep: Vec<(BackupName, KeepReason)>,
    /// Backups to delete (with their sidecars), oldest first.
    pub delete: Vec<BackupName>,
}

/// Decide what `prune --keep keep_newest` deletes: for each config, everything but its newest
/// `keep_newest` backups, except backups taken during an open incident, which are never deleted.
pub fn select_prune(
    backups: &[BackupName],
    keep_newest: usize,
    incidents: &[IncidentWindow],
) -> PrunePlan {
    let mut by_config: BTreeMap<&str, Vec<&BackupName>> = BTreeMap::new();
    for backup in backups {
        by_config.entry(&backup.config).or_default().push(backup);
    }
    let mut plan = PrunePlan::default();
    for mut list in by_config.into_values() {
        list.sort_unstable_by(|a, b| b.cmp(a));
        list.dedup();
        for (rank, backup) in list.into_iter().enumerate() {
            if rank < keep_newest {
                plan.keep.push((backup.clone(), KeepReason::Newest));
            } else if incidents.iter().any(|w| w.contains(&backup.stamp)) {
                plan.keep.push((backup.clone(), KeepReason::OpenIncident));
            } else {
                plan.delete.push(backup.clone());
            }
        }
    }
    plan.keep.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    plan.delete.sort_unstable();
    plan
}

/// When a contract version was deployed, as the operators know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deployed {
    /// The block of the deployment transaction.
    Block(u64),
    /// The day of the deployment (UTC).
    Date(jiff::civil::Date),
}

impl fmt::Display for Deployed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Block(block) => write!(f, "block {block}"),
            Self::Date(date) => write!(f, "{date}"),
        }
    }
}

/// One deployed version of a watched contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractVersion {
    /// Operators' name for it (`v1`, `2026-01-release`).
    pub label: String,
    /// Where it is deployed.
    pub address: Address,
    /// When it was deployed.
    pub deployed: Deployed,
    /// keccak256 of its runtime code: a rollback refuses an address whose code differs.
    pub code_hash: B256,
}

/// Why a version history cannot be used or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// Two versions share a label.
    #[error("contract {contract:?}: label {label:?} is used twice in its version history")]
    DuplicateLabel {
        /// The watched contract.
        contract: String,
        /// The label.
        label: String,
    },
    /// Two versions share an address.
    #[error(
        "contract {contract:?}: address {address} is recorded twice (as {first:?} and {second:?})"
    )]
    DuplicateAddress {
        /// The watched contract.
        contract: String,
        /// The address.
        address: Address,
        /// The newer version's label.
        first: String,
        /// The older version's label.
        second: String,
    },
    /// An empty label.
    #[error("contract {contract:?}: a version needs a non-empty label")]
    EmptyLabel {
        /// The watched contract.
        contract: String,
    },
}

/// Check a history (newest first): labels non-empty and unique, addresses unique.
pub fn validate_history(contract: &str, history: &[ContractVersion]) -> Result<(), HistoryError> {
    for (i, version) in history.iter().enumerate() {
        if version.label.trim().is_empty() {
            return Err(HistoryError::EmptyLabel { contract: contract.to_owned() });
        }
        for older in &history[i + 1..] {
            if older.label == version.label {
                return Err(HistoryError::DuplicateLabel {
                    contract: contract.to_owned(),
                    label: version.label.clone(),
                });
            }
            if older.address == version.address {
                return Err(HistoryError::DuplicateAddress {
                    contract: contract.to_owned(),
                    address: version.address,
                    first: version.label.clone(),
                    second: older.label.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The history with `new` recorded as the newest version (`guardian versions add`).
pub fn record_version(
    contract: &str,
    history: &[ContractVersion],
    new: ContractVersion,
) -> Result<Vec<ContractVersion>, HistoryError> {
    let mut updated = Vec::with_capacity(history.len() + 1);
    updated.push(new);
    updated.extend_from_slice(history);
    validate_history(contract, &updated)?;
    Ok(updated)
}

/// Which version a rollback goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSelector {
    /// The version just older than the one the configs point at now.
    Previous,
    /// The version with this label.
    Label(String),
    /// The version at this address.
    Address(Address),
    /// The version just older than the one at this address: the rollback that follows the
    /// pause of the contract at that address. Idempotent: once every key points at that
    /// version (or an older one), planning it again changes nothing, so a rollback interrupted
    /// by a crash can simply be run again.
    Before(Address),
}

impl VersionSelector {
    /// `--to` as typed: an address if it parses as one, otherwise a label; none means previous.
    pub fn from_arg(to: Option<&str>) -> Self {
        match to {
            None => Self::Previous,
            Some(text) => {
                text.parse::<Address>().map_or_else(|_| Self::Label(text.to_owned()), Self::Address)
            }
        }
    }
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Previous => f.write_str("the previous version"),
            Self::Label(label) => write!(f, "version {label:?}"),
            Self::Address(address) => write!(f, "the version at {address}"),
            Self::Before(address) => write!(f, "the version before the one at {address}"),
        }
    }
}

/// A place in a managed config that holds a contract's address: the config's name and an RFC 6901
/// JSON pointer (`/contracts/vault/address`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressKey {
    /// The managed config's name.
    pub config: String,
    /// JSON pointer to the string holding the address.
    pub pointer: String,
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.config, self.pointer)
    }
}

/// The text a key holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Where.
    pub key: AddressKey,
    /// The JSON string's value.
    pub value: String,
}

/// One key a rollback rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// Where.
    pub key: AddressKey,
    /// The text it holds now.
    pub from: String,
    /// The text it will hold: the target address, spelled in the same case style as `from`
    /// (lower-case stays lower-case, anything else becomes EIP-55 checksummed).
    pub to: String,
}

/// What a rollback of one contract changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepointPlan {
    /// The watched contract.
    pub contract: String,
    /// The version the keys point at now (the newest one any key points at).
    pub from: ContractVersion,
    /// The version they will point at.
    pub to: ContractVersion,
    /// Keys that change, in configuration order.
    pub changes: Vec<KeyChange>,
    /// Keys that already hold the target.
    pub unchanged: Vec<AddressKey>,
}

/// Why a rollback cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepointError {
    /// No key is configured for the contract.
    #[error(
        "contract {contract:?} has no config keys to repoint: add `keys` to its [rollback.contracts] entry"
    )]
    NoKeys {
        /// The watched contract.
        contract: String,
    },
    /// The key's value is not an address.
    #[error("{key} holds {value:?}, which is not an address")]
    NotAnAddress {
        /// Where.
        key: AddressKey,
        /// What it holds.
        value: String,
    },
    /// The key points at an address the version history does not know.
    #[error(
        "{key} holds {value}, which is not a recorded version of {contract:?}: record it with `guardian versions add` or fix the config by hand"
    )]
    UnrecordedAddress {
        /// The watched contract.
        contract: String,
        /// Where.
        key: AddressKey,
        /// What it holds.
        value: Address,
    },
    /// `--to` names no recorded version.
    #[error("{contract:?} has no {wanted}; recorded versions (newest first): {known}")]
    UnknownVersion {
        /// The watched contract.
        contract: String,
        /// What was asked for.
        wanted: VersionSelector,
        /// The recorded labels, comma-separated.
        known: String,
    },
    /// The configs already point at the oldest recorded version.
    #[error(
        "{contract:?} already points at its oldest recorded version {label:?}: there is nothing older to roll back to"
    )]
    NoOlderVersion {
        /// The watched contract.
        contract: String,
        /// The current version's label.
        label: String,
    },
}

/// Decide which keys a rollback of `contract` to `selector` rewrites and to what.
///
/// `history` is newest first; `keys` are the configured keys with what they hold now. Every key
/// must hold an address of a recorded version (a key holding anything else is refused rather than
/// silently overwritten). "Current" is the newest version any key points at, so after a partial
/// manual fix the previous version is still the one before the bad one.
pub fn plan_repoint(
    contract: &str,
    history: &[ContractVersion],
    keys: &[KeyValue],
    selector: &VersionSelector,
) -> Result<RepointPlan, RepointError> {
    if keys.is_empty() {
        return Err(RepointError::NoKeys { contract: contract.to_owned() });
    }
    let mut current_index = usize::MAX;
    let mut current_addresses = Vec::with_capacity(keys.len());
    for key in keys {
        let address = key.value.parse::<Address>().map_err(|_| RepointError::NotAnAddress {
            key: key.key.clone(),
            value: key.value.clone(),
        })?;
        let index = history.iter().position(|v| v.address == address).ok_or_else(|| {
            RepointError::UnrecordedAddress {
                contract: contract.to_owned(),
                key: key.key.clone(),
                value: address,
            }
        })?;
        current_index = current_index.min(index);
        current_addresses.push(address);
    }
    let current = &history[current_index];
    let target = match selector {
        VersionSelector::Previous => {
            Some(history.get(current_index + 1).ok_or_else(|| RepointError::NoOlderVersion {
                contract: contract.to_owned(),
                label: current.label.clone(),
            })?)
        }
        VersionSelector::Label(label) => history.iter().find(|v| &v.label == label),
        VersionSelector::Address(address) => history.iter().find(|v| &v.address == address),
        VersionSelector::Before(address) => {
            match history.iter().position(|v| &v.address == address) {
                // Already at that version or older: stay (the keys are not moved forward).
                Some(paused) if current_index > paused => Some(current),
                Some(paused) => {
                    Some(history.get(paused + 1).ok_or_else(|| RepointError::NoOlderVersion {
                        contract: contract.to_owned(),
                        label: history[paused].label.clone(),
                    })?)
                }
                None => None,
            }
        }
    }
    .ok_or_else(|| RepointError::UnknownVersion {
        contract: contract.to_owned(),
        wanted: selector.clone(),
        known: history
            .iter()
            .map(|v| format!("{} ({})", v.label, v.address))
            .collect::<Vec<_>>()
            .join(", "),
    })?;

    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    for (key, address) in keys.iter().zip(current_addresses) {
        if address == target.address {
            unchanged.push(key.key.clone());
        } else {
            changes.push(KeyChange {
                key: key.key.clone(),
                from: key.value.clone(),
                to: spell_like(target.address, &key.value),
            });
        }
    }
    Ok(RepointPlan {
        contract: contract.to_owned(),
        from: current.clone(),
        to: target.clone(),
        changes,
        unchanged,
    })
}

/// `address` in the case style of `like`: lower-case if `like` has lower-case letters and no
/// upper-case ones, else EIP-55 (an address of digits only says nothing, so it gets EIP-55).
fn spell_like(address: Address, like: &str) -> String {
    let checksummed = address.to_checksum(None);
    let hex_part = like.strip_prefix("0x").unwrap_or(like);
    let lower_case = hex_part.bytes().any(|b| b.is_ascii_lowercase())
        && !hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if lower_case { checksummed.to_lowercase() } else { checksummed }
}

// =============================================================================================
// Interrupted writes, retention and whole-set prune (the `files` hardening). Kept apart from
// the functions above so the two can change independently.
// =============================================================================================

/// How long a temporary file of a process that may still be alive is kept before a later write
/// removes it anyway (a write takes milliseconds; this only matters when a PID was reused).
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The temporary file written next to `target` before it is renamed over it:
/// `.TARGET.tmp-PID-NONCE`, NONCE 16 hex digits chosen at random, so the name cannot be
/// guessed and planted in advance.
pub fn temp_file_name(target: &str, pid: u32, nonce: u64) -> String {
    format!(".{target}.tmp-{pid}-{nonce:016x}")
}

/// A temporary file name guardian wrote (this version's `.TARGET.tmp-PID-NONCE`, or an older
/// version's `.TARGET.tmp-PID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFileName {
    /// The file it was going to replace (a name in the same folder).
    pub target: String,
    /// The process that wrote it.
    pub pid: u32,
}

impl TempFileName {
    /// Recognise a temporary file name; anything else is `None`.
    pub fn parse(file_name: &str) -> Option<Self> {
        let (target, tail) = file_name.strip_prefix('.')?.rsplit_once(".tmp-")?;
        let pid = match tail.split_once('-') {
            Some((pid, nonce)) => {
                let hex = nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex {
                    return None;
                }
                pid
            }
            None => tail,
        };
        if target.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { target: target.to_owned(), pid: pid.parse().ok()? })
    }
}

/// Whether a temporary file found while holding the write lock is left over from a dead writer:
/// its process is gone, or it is older than [`STALE_TEMP_AGE`] (a reused PID). Every write
/// happens under the lock, so a temp file seen under it is never one being written.
pub fn temp_is_stale(owner_alive: bool, age: std::time::Duration) -> bool {
    !owner_alive || age >= STALE_TEMP_AGE
}

/// Where one file of an interrupted multi-file operation stands, judged by its sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// As it was before the operation (absent, for a file the operation creates).
    Before,
    /// As the operation leaves it (absent, for a file the operation deletes).
    After,
    /// Neither: changed by something else since the operation was journaled.
    Neither,
}

/// One journaled file, as recovery finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournaledFile {
    /// The file itself.
    pub state: FileState,
    /// Its temp file is present and hashes to the new content (always true for a deletion).
    pub temp_intact: bool,
    /// Its old content can be put back: it was absent, or a copy with the old sha256 exists.
    pub restorable: bool,
}

/// What to do with an operation a crash interrupted after its journal was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecoveryDecision {
    /// Roll forward: rename the remaining temp files (every one is there and intact), then
    /// record the operation as done.
    Finish,
    /// Roll back: a file that was not renamed yet lost its temp file, so the operation cannot
    /// be finished; put the renamed files' old content back and remove the temp files.
    Undo,
    /// Neither is safe; a person must look. `files` index the journal's file list.
    Stuck {
        /// The files in the way.
        files: Vec<usize>,
        /// Why they are in the way.
        reason: StuckReason,
    },
}

/// Why an interrupted operation can be neither finished nor undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StuckReason {
    /// The files were changed by something else since the operation was journaled.
    ChangedSince,
    /// It must be undone, but these renamed files' old content is gone.
    OldContentLost,
}

/// Decide how to recover an interrupted operation from the state of its files (in journal
/// order). Finishing is preferred: the journal is written only after every temp file is on
/// disk, so it is what the operator asked for. Undoing is for temp files lost since then. A file
/// changed by something else is never overwritten.
pub fn decide_recovery(files: &[JournaledFile]) -> RecoveryDecision {
    let changed: Vec<usize> =
        (0..files.len()).filter(|&i| files[i].state == FileState::Neither).collect();
    if !changed.is_empty() {
        return RecoveryDecision::Stuck { files: changed, reason: StuckReason::ChangedSince };
    }
    if files.iter().all(|f| f.state == FileState::After || f.temp_intact) {
        return RecoveryDecision::Finish;
    }
    let lost: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].state == FileState::After && !files[i].restorable)
        .collect();
    if !lost.is_empty() {
        return RecoveryDecision::Stuck { files: lost, reason: StuckReason::OldContentLost };
    }
    RecoveryDecision::Undo
}

/// A length of time written as a number and a unit: `45s`, `30m`, `12h`, `7d`, `2w` (`0` turns
/// the protection off). Used by `[rollback] keep_undo_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetentionPeriod {
    seconds: i64,
}

/// Why a string is not a retention period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a period: write a whole number and one unit, s, m, h, d or w (e.g. \"7d\", \"12h\")"
)]
pub struct BadPeriod {
    input: String,
}

impl RetentionPeriod {
    /// `seconds` long (negative counts as zero).
    pub const fn from_seconds(seconds: i64) -> Self {
        Self { seconds: if seconds < 0 { 0 } else { seconds } }
    }

    /// Its length in seconds.
    pub const fn as_seconds(&self) -> i64 {
        self.seconds
    }

    /// Whether something stamped `stamp` is younger than this period at `now`.
    pub fn covers(&self, stamp: &BackupStamp, now: Timestamp) -> bool {
        now.as_second().saturating_sub(stamp.second) < self.seconds
    }
}

impl FromStr for RetentionPeriod {
    type Err = BadPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPeriod { input: s.to_owned() };
        if s == "0" {
            return Ok(Self { seconds: 0 });
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad()),
        };
        let number: i64 = number.parse().map_err(|_| bad())?;
        let seconds = number.checked_mul(unit_seconds).ok_or_else(bad)?;
        Ok(Self { seconds })
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")];
        match units.iter().find(|(n, _)| self.seconds != 0 && self.seconds % n == 0) {
            Some((n, unit)) => write!(f, "{}{unit}", self.seconds / n),
            None => write!(f, "{}s", self.seconds),
        }
    }
}

impl Serialize for RetentionPeriod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetentionPeriod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What protects a backup set from prune besides being among the newest.
#[derive(Debug, Clone, Copy)]
pub struct PruneGuards<'a> {
    /// Open incidents (from the ledger): every set stamped inside one is kept.
    pub incidents: &'a [IncidentWindow],
    /// Stamps of undo backups: the ledger's record of the backup taken before each rollback
    /// or restore.
    pub undo_stamps: &'a [BackupStamp],
    /// How long an undo backup is kept whatever `--keep` says.
    pub keep_undo_for: RetentionPeriod,
    /// The time prune runs at.
    pub now: Timestamp,
}

/// Decide what `prune --keep keep_newest` deletes, a whole set (every file sharing one stamp)
/// at a time: a set is kept entirely when any of its files is among the newest `keep_newest`
/// of its config, when it was taken during an open incident, or when it is an undo backup
/// younger than `keep_undo_for`; otherwise every file of it is deleted.
pub fn select_prune_sets(
    backups: &[BackupName],
    keep_newest: usize,
    guards: &PruneGuards<'_>,
) -> PrunePlan {
    let mut unique: Vec<&BackupName> = backups.iter().collect();
    unique.sort_unstable();
    unique.dedup();
    let mut newest: std::collections::BTreeSet<&BackupName> = std::collections::BTreeSet::new();
    let mut by_config: BTreeMap<&str, Vec<&BackupName>> = BTreeMap::new();
    for backup in &unique {
        by_config.entry(&backup.config).or_default().push(backup);
    }
    for mut list in by_config.into_values() {
        list.sort_unstable_by(|a, b| b.cmp(a));
        newest.extend(list.into_iter().take(keep_newest));
    }
    let mut sets: BTreeMap<BackupStamp, Vec<&BackupName>> = BTreeMap::new();
    for backup in &unique {
        sets.entry(backup.stamp).or_default().push(backup);
    }
    let mut plan = PrunePlan::default();
    for (stamp, members) in sets {
        let set_reason = if guards.incidents.iter().any(|w| w.contains(&stamp)) {
            Some(KeepReason::OpenIncident)
        } else if guards.undo_stamps.contains(&stamp)
            && guards.keep_undo_for.covers(&stamp, guards.now)
        {
            Some(KeepReason::UndoBackup)
        } else if members.iter().any(|m| newest.contains(m)) {
            Some(KeepReason::SameSet)
        } else {
            None
        };
        for member in members {
            match set_reason {
                None => plan.delete.push(member.clone()),
                Some(_) if newest.contains(member) => {
                    plan.keep.push((member.clone(), KeepReason::Newest));
                }
                Some(reason) => plan.keep.push((member.clone(), reason)),
            }
        }
    }
    plan.keep.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    plan.delete.sort_unstable();
    plan
}

#[cfg(test)]
mod interrupted_write_and_prune_set_tests {
    use super::*;

    fn stamp(s: &str) -> BackupStamp {
        s.parse().expect("stamp")
    }

    fn backup(config: &str, s: &str) -> BackupName {
        BackupName { config: config.into(), stamp: stamp(s) }
    }

    #[test]
    fn temp_file_names_round_trip_and_ignore_other_files() {
        let name = temp_file_name("smart-accounts-config.json", 3307, 0xdead_beef);
        assert_eq!(name, ".smart-accounts-config.json.tmp-3307-00000000deadbeef");
        let parsed = TempFileName::parse(&name).expect("parses");
        assert_eq!(parsed, TempFileName { target: "smart-accounts-config.json".into(), pid: 3307 });
        // The names older versions wrote are recognised too, so their leftovers are cleaned.
        assert_eq!(
            TempFileName::parse(".x_20260126T101500Z.json.sha256.tmp-42"),
            Some(TempFileName { target: "x_20260126T101500Z.json.sha256".into(), pid: 42 })
        );
        for other in [
            "smart-accounts-config.json",
            ".guardian.lock",
            ".x.json.tmp-",
            ".x.json.tmp-abc",
            ".x.json.tmp-12-xyz",
            ".x.json.tmp-12-00000000deadbee",
            "x.json.tmp-12",
            "..tmp-12",
        ] {
            assert_eq!(TempFileName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temp_files_are_those_of_dead_or_old_writers() {
        let minute = std::time::Duration::from_secs(60);
        for (alive, age, stale) in [
            (false, std::time::Duration::ZERO, true),
            (false, 60 * minute, true),
            (true, minute, false),
            (true, STALE_TEMP_AGE - minute, false),
            (true, STALE_TEMP_AGE, true),
        ] {
            assert_eq!(temp_is_stale(alive, age), stale, "alive {alive}, age {age:?}");
        }
    }

    fn file(state: FileState, temp_intact: bool, restorable: bool) -> JournaledFile {
        JournaledFile { state, temp_intact, restorable }
    }

    #[test]
    fn recovery_finishes_when_it_can_undoes_when_it_must() {
        use FileState::{After, Before, Neither};
        let stuck = |files: Vec<usize>, reason| RecoveryDecision::Stuck { files, reason };
        let cases: Vec<(&str, Vec<JournaledFile>, RecoveryDecision)> = vec![
            (
                "crash before the first rename: every temp is there",
                vec![file(Before, true, true), file(Before, true, true)],
                RecoveryDecision::Finish,
            ),
            (
                "crash between renames",
                vec![file(After, false, true), file(Before, true, true)],
                RecoveryDecision::Finish,
            ),
            (
                "crash after the last rename, before the record",
                vec![file(After, false, true), file(After, false, false)],
                RecoveryDecision::Finish,
            ),
            (
                "a temp file lost before its rename: undo the renamed one",
                vec![file(After, false, true), file(Before, false, true)],
                RecoveryDecision::Undo,
            ),
            (
                "a temp lost and nothing renamed yet",
                vec![file(Before, true, true), file(Before, false, true)],
                RecoveryDecision::Undo,
            ),
            (
                "a file edited by hand since: never overwritten",
                vec![file(After, false, true), file(Neither, true, true)],
                stuck(vec![1], StuckReason::ChangedSince),
            ),
            (
                "undo needed but the old content is gone",
                vec![file(After, false, false), file(Before, false, true)],
                stuck(vec![0], StuckReason::OldContentLost),
            ),
            ("nothing journaled", vec![], RecoveryDecision::Finish),
        ];
        for (what, files, expected) in cases {
            assert_eq!(decide_recovery(&files), expected, "{what}");
        }
    }

    #[test]
    fn retention_periods_parse_and_print() {
        for (text, seconds, shown) in [
            ("7d", 604_800, "1w"),
            ("2w", 1_209_600, "2w"),
            ("12h", 43_200, "12h"),
            ("90m", 5_400, "90m"),
            ("45s", 45, "45s"),
            ("0", 0, "0s"),
            ("3d", 259_200, "3d"),
        ] {
            let period: RetentionPeriod = text.parse().expect(text);
            assert_eq!(period.as_seconds(), seconds, "{text}");
            assert_eq!(period.to_string(), shown, "{text}");
        }
        for bad in ["", "7", "d", "7 d", "7days", "-1d", "1.5h", "99999999999999999999w"] {
            let err = bad.parse::<RetentionPeriod>().expect_err(bad);
            assert!(err.to_string().contains("e.g. \"7d\""), "{err}");
        }
        let week: RetentionPeriod = "7d".parse().expect("7d");
        let now: Timestamp = "2026-01-27T00:00:00Z".parse().expect("now");
        assert!(week.covers(&stamp("20260126T000000Z"), now));
        assert!(!week.covers(&stamp("20260120T000000Z"), now));
        assert!(!RetentionPeriod::from_seconds(0).covers(&stamp("20260127T000000Z"), now));
    }

    fn guards<'a>(
        incidents: &'a [IncidentWindow],
        undo_stamps: &'a [BackupStamp],
    ) -> PruneGuards<'a> {
        PruneGuards {
            incidents,
            undo_stamps,
            keep_undo_for: "7d".parse().expect("7d"),
            now: "2026-01-10T00:00:00Z".parse().expect("now"),
        }
    }

    #[test]
    fn prune_deletes_whole_sets_only() {
        // Set 1 has both configs; set 2 only `a` (a `backup create --only a`); set 3 both.
        let backups = [
            backup("a", "20260101T000000Z"),
            backup("b", "20260101T000000Z"),
            backup("a", "20260102T000000Z"),
            backup("a", "20260103T000000Z"),
            backup("b", "20260103T000000Z"),
        ];
        let cases: Vec<(usize, Vec<&str>)> = vec![
            // keep 1: a's newest is set 3, b's newest is set 3: sets 1 and 2 go.
            (1, vec!["20260101T000000Z", "20260102T000000Z"]),
            // keep 2: a keeps sets 3 and 2, b keeps 3 and 1, so set 1 stays whole for b.
            (2, vec![]),
            (0, vec!["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]),
        ];
        for (keep, deleted_stamps) in cases {
            let plan = select_prune_sets(&backups, keep, &guards(&[], &[]));
            let mut deleted: Vec<String> =
                plan.delete.iter().map(|n| n.stamp.to_string()).collect();
            deleted.dedup();
            assert_eq!(deleted, deleted_stamps, "--keep {keep}");
            for name in &plan.delete {
                assert!(
                    !plan.keep.iter().any(|(k, _)| k.stamp == name.stamp),
                    "--keep {keep} splits set {}",
                    name.stamp
                );
            }
        }
        let plan = select_prune_sets(&backups, 2, &guards(&[], &[]));
        assert!(plan.keep.contains(&(backup("a", "20260101T000000Z"), KeepReason::SameSet)));
        assert!(plan.keep.contains(&(backup("b", "20260101T000000Z"), KeepReason::Newest)));
    }

    #[test]
    fn prune_keeps_open_incident_sets_and_young_undo_backups() {
        let backups = [
            backup("a", "20260101T000000Z"),
            backup("a", "20260102T000000Z"),
            backup("a", "20260105T000000Z"),
            backup("a", "20260109T000000Z"),
        ];
        let open =
            [IncidentWindow { opened: "2026-01-05T00:00:00Z".parse().expect("t"), closed: None }];
        let undo = [stamp("20260101T000000Z"), stamp("20260105T000000Z")];
        type Case<'a> = (&'a str, &'a [IncidentWindow], &'a [BackupStamp], Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                "no guards",
                &[],
                &[],
                vec!["20260101T000000Z", "20260102T000000Z", "20260105T000000Z"],
            ),
            (
                "an open incident keeps what was taken since it opened",
                &open,
                &[],
                vec!["20260101T000000Z", "20260102T000000Z"],
            ),
            (
                // 01-05 is 5 days old at 01-10: kept; 01-01 is 9 days old: deleted.
                "undo backups younger than 7d",
                &[],
                &undo,
                vec!["20260101T000000Z", "20260102T000000Z"],
            ),
        ];
        for (what, incidents, undo_stamps, deleted) in cases {
            let plan = select_prune_sets(&backups, 1, &guards(incidents, undo_stamps));
            let got: Vec<String> = plan.delete.iter().map(|n| n.stamp.to_string()).collect();
            assert_eq!(got, deleted, "{what}");
        }
        let plan = select_prune_sets(&backups, 1, &guards(&open, &undo));
        assert!(plan.keep.contains(&(backup("a", "20260105T000000Z"), KeepReason::OpenIncident)));
        assert!(plan.keep.contains(&(backup("a", "20260109T000000Z"), KeepReason::Newest)));
        let plan = select_prune_sets(&backups, 1, &guards(&[], &undo));
        assert!(plan.keep.contains(&(backup("a", "20260105T000000Z"), KeepReason::UndoBackup)));
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::address;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn stamp(s: &str) -> BackupStamp {
        s.parse().expect("stamp")
    }

    #[test]
    fn stamp_formats_and_parses_round_trip() {
        let first = BackupStamp::at(ts("2026-01-26T10:15:00.750Z"));
        assert_eq!(first.to_string(), "20260126T101500Z");
        assert_eq!(first.seq(), 0);
        assert_eq!(first.time(), ts("2026-01-26T10:15:00Z"));
        assert_eq!(stamp("20260126T101500Z"), first);
        let third = stamp("20260126T101500Z-2");
        assert_eq!(third.seq(), 2);
        assert_eq!(third.to_string(), "20260126T101500Z-2");
        assert!(first < stamp("20260126T101500Z-1"));
        assert!(stamp("20260126T101500Z-9") < stamp("20260126T101501Z"));
        assert!(stamp("20260126T101500Z-9") < stamp("20260126T101500Z-10"));
    }

    #[test]
    fn malformed_stamps_are_refused() {
        for bad in [
            "",
            "20260126",
            "20260126T101500",
            "20260126T101500Z-",
            "20260126T101500Z-0",
            "20260126T101500Z-01",
            "20260126T101500Z-x",
            "20261326T101500Z",
            "20260126T251500Z",
            "2026-01-26T10:15:00Z",
            "20260126T101500Z-1-2",
            " 20260126T101500Z",
        ] {
            let err = bad.parse::<BackupStamp>().expect_err(bad);
            assert!(err.to_string().contains("YYYYMMDDTHHMMSSZ"), "{err}");
        }
    }

    #[test]
    fn stamps_stay_unique_within_a_second() {
        let now = ts("2026-01-26T10:15:00.100Z");
        let mut taken = Vec::new();
        for expected in ["20260126T101500Z", "20260126T101500Z-1", "20260126T101500Z-2"] {
            let next = BackupStamp::next_unique(now, &taken);
            assert_eq!(next.to_string(), expected);
            taken.push(next);
        }
        // Gaps are not refilled: the next one is above the highest, so order = creation order.
        taken.remove(1);
        assert_eq!(BackupStamp::next_unique(now, &taken).to_string(), "20260126T101500Z-3");
        // A new second starts again at zero, whatever older seconds used.
        let later = ts("2026-01-26T10:15:01Z");
        assert_eq!(BackupStamp::next_unique(later, &taken).to_string(), "20260126T101501Z");
    }

    #[test]
    fn backup_names_round_trip_and_ignore_other_files() {
        let name =
            BackupName { config: "smart-accounts-config".into(), stamp: stamp("20260126T101500Z") };
        assert_eq!(name.file_name(), "smart-accounts-config_20260126T101500Z.json");
        assert_eq!(name.sidecar_name(), "smart-accounts-config_20260126T101500Z.json.sha256");
        assert_eq!(BackupName::parse(&name.file_name()), Some(name));

        let underscored = BackupName::parse("my_config_20260126T101500Z-3.json").expect("parses");
        assert_eq!(underscored.config, "my_config");
        assert_eq!(underscored.stamp.seq(), 3);

        for other in [
            "smart-accounts-config_20260126T101500Z.json.sha256",
            ".guardian.lock",
            ".smart-accounts-config_20260126T101500Z.json.tmp-42",
            "smart-accounts-config.json",
            "_20260126T101500Z.json",
            "notes_today.json",
            "README",
        ] {
            assert_eq!(BackupName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn config_names_must_be_file_name_safe() {
        for good in ["smart-accounts-config", "monitoring_config", "a.b", "X1"] {
            assert!(validate_config_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "../up", "é"] {
            assert!(validate_config_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sidecar_is_sha256sum_format() {
        let digest = B256::repeat_byte(0xab);
        let line = sidecar_line(&digest, "x_20260126T101500Z.json");
        assert_eq!(line, format!("{}  x_20260126T101500Z.json\n", "ab".repeat(32)));
        assert_eq!(parse_sidecar(&line), Some((digest, "x_20260126T101500Z.json")));
        // Binary-mode lines from `sha256sum -b` are accepted too.
        let binary = format!("{} *x.json\n", "ab".repeat(32));
        assert_eq!(parse_sidecar(&binary), Some((digest, "x.json")));
        for bad in ["", "abc  x.json", &format!("{}  ", "ab".repeat(32)), &"ab".repeat(32)] {
            assert_eq!(parse_sidecar(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nearest_stamps_are_closest_in_time() {
        let available = [
            stamp("20260126T090000Z"),
            stamp("20260126T101500Z"),
            stamp("20260126T101500Z-1"),
            stamp("20260126T120000Z"),
            stamp("20260125T101500Z"),
        ];
        assert_eq!(
            nearest_stamps(&available, "20260126T101400Z", 2),
            [stamp("20260126T101500Z"), stamp("20260126T101500Z-1")]
        );
        assert_eq!(nearest_stamps(&available, "20260126T1130", 1), [stamp("20260126T120000Z")]);
        assert_eq!(nearest_stamps(&available, "20260125", 1), [stamp("20260125T101500Z")]);
        // Not a time at all: the newest ones.
        assert_eq!(
            nearest_stamps(&available, "yesterday", 2),
            [stamp("20260126T120000Z"), stamp("20260126T101500Z-1")]
        );
        assert!(nearest_stamps(&[], "20260126T101500Z", 3).is_empty());
    }

    fn backup(config: &str, s: &str) -> BackupName {
        BackupName { config: config.into(), stamp: stamp(s) }
    }

    #[test]
    fn prune_keeps_the_newest_n_per_config() {
        let backups = [
            backup("a", "20260101T000000Z"),
            backup("a", "20260102T000000Z"),
            backup("a", "20260103T000000Z"),
            backup("b", "20260101T000000Z"),
        ];
        let plan = select_prune(&backups, 2, &[]);
        assert_eq!(plan.delete, [backup("a", "20260101T000000Z")]);
        assert_eq!(plan.keep.len(), 3);
        assert!(plan.keep.iter().all(|(_, why)| *why == KeepReason::Newest));

        let nothing_kept = select_prune(&backups, 0, &[]);
        assert_eq!(nothing_kept.delete.len(), 4);
        let all_kept = select_prune(&backups, 10, &[]);
        assert!(all_kept.delete.is_empty());
    }

    #[test]
    fn prune_never_deletes_backups_of_an_open_incident() {
        let backups = [
            backup("a", "20260101T000000Z"),
            backup("a", "20260102T000000Z"),
            backup("a", "20260102T120000Z"),
            backup("a", "20260103T000000Z"),
        ];
        let open = IncidentWindow { opened: ts("2026-01-02T00:00:00Z"), closed: None };
        let plan = select_prune(&backups, 1, &[open]);
        assert_eq!(plan.delete, [backup("a", "20260101T000000Z")]);
        assert!(plan.keep.contains(&(backup("a", "20260102T000000Z"), KeepReason::OpenIncident)));
        assert!(plan.keep.contains(&(backup("a", "20260102T120000Z"), KeepReason::OpenIncident)));
        assert!(plan.keep.contains(&(backup("a", "20260103T000000Z"), KeepReason::Newest)));

        // A window with an end protects only what is inside it.
        let bounded = IncidentWindow {
            opened: ts("2026-01-02T00:00:00Z"),
            closed: Some(ts("2026-01-02T06:00:00Z")),
        };
        let plan = select_prune(&backups, 1, &[bounded]);
        assert_eq!(plan.delete, [backup("a", "20260101T000000Z"), backup("a", "20260102T120000Z")]);
    }

    const V3: Address = address!("0x3333333333333333333333333333333333333333");
    const V2: Address = address!("0x2222222222222222222222222222222222222222");
    const V1: Address = address!("0x00000000000000000000000000000000000000aA");

    fn version(label: &str, address: Address) -> ContractVersion {
        ContractVersion {
            label: label.into(),
            address,
            deployed: Deployed::Block(1),
            code_hash: B256::repeat_byte(address.0[19]),
        }
    }

    fn history() -> Vec<ContractVersion> {
        vec![version("v3", V3), version("v2", V2), version("v1", V1)]
    }

    fn key(config: &str, pointer: &str, value: &str) -> KeyValue {
        KeyValue {
            key: AddressKey { config: config.into(), pointer: pointer.into() },
            value: value.into(),
        }
    }

    #[test]
    fn rollback_goes_to_the_version_before_the_current_one() {
        let keys = [
            key("sa", "/vault", &V3.to_checksum(None)),
            key("mon", "/watch/0", &V3.to_checksum(None).to_lowercase()),
        ];
        let plan =
            plan_repoint("vault", &history(), &keys, &VersionSelector::Previous).expect("plan");
        assert_eq!(plan.from.label, "v3");
        assert_eq!(plan.to.label, "v2");
        assert_eq!(plan.changes.len(), 2);
        assert_eq!(plan.changes[0].to, V2.to_checksum(None));
        // Lower-case in, lower-case out.
        assert_eq!(plan.changes[1].to, V2.to_checksum(None).to_lowercase());
        assert_eq!(plan.changes[1].from, keys[1].value);
        assert!(plan.unchanged.is_empty());
    }

    #[test]
    fn keys_already_at_the_target_are_left_alone() {
        // One key was fixed by hand already: current is still v3 (the newest pointed at).
        let keys = [
            key("sa", "/vault", &V2.to_checksum(None)),
            key("mon", "/watch/0", &V3.to_checksum(None)),
        ];
        let plan =
            plan_repoint("vault", &history(), &keys, &VersionSelector::Previous).expect("plan");
        assert_eq!(plan.from.label, "v3");
        assert_eq!(plan.to.label, "v2");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].key.config, "mon");
        assert_eq!(plan.unchanged, [keys[0].key.clone()]);
    }

    #[test]
    fn explicit_targets_by_label_or_address() {
        let keys = [key("sa", "/vault", &V3.to_checksum(None))];
        let by_label =
            plan_repoint("vault", &history(), &keys, &VersionSelector::from_arg(Some("v1")))
                .expect("plan");
        assert_eq!(by_label.to.address, V1);
        assert_eq!(by_label.changes[0].to, V1.to_checksum(None));
        let by_address = plan_repoint(
            "vault",
            &history(),
            &keys,
            &VersionSelector::from_arg(Some(&V1.to_string().to_lowercase())),
        )
        .expect("plan");
        assert_eq!(by_address.to.label, "v1");

        let err = plan_repoint("vault", &history(), &keys, &VersionSelector::from_arg(Some("v9")))
            .expect_err("unknown");
        assert!(matches!(err, RepointError::UnknownVersion { .. }));
        assert!(err.to_string().contains("v3 (0x3333"), "{err}");
    }

    /// The rollback after a pause names the paused version, so running it twice (a crash
    /// between the write and its record) moves nothing the second time.
    #[test]
    fn the_rollback_after_a_pause_is_idempotent() {
        let before_v3 = VersionSelector::Before(V3);
        let at_v3 = [key("sa", "/vault", &V3.to_checksum(None))];
        let plan = plan_repoint("vault", &history(), &at_v3, &before_v3).expect("plan");
        assert_eq!((plan.from.label.as_str(), plan.to.label.as_str()), ("v3", "v2"));
        assert_eq!(plan.changes.len(), 1);
        // Run again once the keys point at v2: nothing changes (Previous would go to v1).
        let at_v2 = [key("sa", "/vault", &V2.to_checksum(None))];
        let again = plan_repoint("vault", &history(), &at_v2, &before_v3).expect("plan");
        assert!(again.changes.is_empty(), "{again:?}");
        assert_eq!(again.to.label, "v2");
        // Keys already older than the target are not moved forward.
        let at_v1 = [key("sa", "/vault", &V1.to_checksum(None))];
        let older = plan_repoint("vault", &history(), &at_v1, &before_v3).expect("plan");
        assert!(older.changes.is_empty());
        assert_eq!(older.to.label, "v1");
        // Half done by a crash between two keys: the other key is finished.
        let half = [
            key("sa", "/vault", &V2.to_checksum(None)),
            key("mon", "/watch", &V3.to_checksum(None)),
        ];
        let rest = plan_repoint("vault", &history(), &half, &before_v3).expect("plan");
        assert_eq!(rest.changes.len(), 1);
        assert_eq!(rest.changes[0].key.config, "mon");
        // The oldest version has nothing before it; an unrecorded address is no version.
        assert!(matches!(
            plan_repoint("vault", &history(), &at_v1, &VersionSelector::Before(V1)),
            Err(RepointError::NoOlderVersion { .. })
        ));
        assert!(matches!(
            plan_repoint("vault", &history(), &at_v3, &VersionSelector::Before(Address::ZERO)),
            Err(RepointError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn refuses_what_it_cannot_account_for() {
        let oldest = [key("sa", "/vault", &V1.to_checksum(None))];
        assert!(matches!(
            plan_repoint("vault", &history(), &oldest, &VersionSelector::Previous),
            Err(RepointError::NoOlderVersion { label, .. }) if label == "v1"
        ));
        let stranger = [key("sa", "/vault", "0x9999999999999999999999999999999999999999")];
        assert!(matches!(
            plan_repoint("vault", &history(), &stranger, &VersionSelector::Previous),
            Err(RepointError::UnrecordedAddress { .. })
        ));
        let text = [key("sa", "/vault", "vault.example")];
        assert!(matches!(
            plan_repoint("vault", &history(), &text, &VersionSelector::Previous),
            Err(RepointError::NotAnAddress { .. })
        ));
        assert!(matches!(
            plan_repoint("vault", &history(), &[], &VersionSelector::Previous),
            Err(RepointError::NoKeys { .. })
        ));
    }

    #[test]
    fn histories_reject_duplicates_and_grow_at_the_front() {
        assert!(validate_history("vault", &history()).is_ok());
        let grown = record_version("vault", &history(), version("v4", Address::repeat_byte(4)))
            .expect("recorded");
        assert_eq!(grown[0].label, "v4");
        assert_eq!(grown.len(), 4);
        assert!(matches!(
            record_version("vault", &history(), version("v2", Address::repeat_byte(4))),
            Err(HistoryError::DuplicateLabel { .. })
        ));
        assert!(matches!(
            record_version("vault", &history(), version("v4", V1)),
            Err(HistoryError::DuplicateAddress { .. })
        ));
        assert!(matches!(
            record_version("vault", &history(), version(" ", Address::repeat_byte(4))),
            Err(HistoryError::EmptyLabel { .. })
        ));
    }

    #[test]
    fn deployed_serialises_as_block_or_date() {
        let block = serde_json::to_string(&Deployed::Block(42)).expect("json");
        assert_eq!(block, r#"{"block":42}"#);
        let date: Deployed = serde_json::from_str(r#"{"date":"2026-01-26"}"#).expect("date");
        assert_eq!(date.to_string(), "2026-01-26");
    }
}
