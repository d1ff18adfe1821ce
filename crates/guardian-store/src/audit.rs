//! The audit log's two copies: the `audit_log` table, appended in the transaction of the state
//! change it records, and `audit.jsonl` beside the database, appended right after that
//! transaction commits. [`guardian_core::audit`] defines the entries and checks the chain.
//!
//! The file follows the table: after each commit, the entries the file lacks are appended
//! under an advisory lock (several processes write one database). It is only ever appended to
//! when its last line is the table's entry at that position; otherwise it is left as found and
//! `guardian audit verify` names where the copies part. A line torn by a crash mid-write (no
//! final newline) is the one thing trimmed, and said so in the log.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use alloy_primitives::B256;
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::audit::{Actor, Entry, Record, Sealed};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Store, parse_b256, to_i64, to_u64};

/// Append `record` by `actor` to the chain in the caller's transaction.
pub(crate) fn append(tx: &Connection, actor: &Actor, record: Record, now: u64) -> Result<Sealed> {
    let last: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (to_u64(seq)? + 1, parse_b256(&hash)?),
        None => (1, B256::ZERO),
    };
    let incident = record.incident();
    let kind = record.name();
    let entry = Entry { seq, at_ms: now, prev, actor: actor.clone(), record };
    let sealed = entry.seal();
    tx.execute(
        "INSERT INTO audit_log (seq, at_ms, kind, incident_id, body, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![to_i64(seq)?, to_i64(now)?, kind, incident, sealed.body, sealed.hash.to_string()],
    )?;
    Ok(sealed)
}

/// Who this process acts as, once said (`guardian run` says it is the daemon).
static PROCESS_ACTOR: std::sync::OnceLock<Actor> = std::sync::OnceLock::new();

/// Say once who this process's audit entries name from now on; later calls change nothing.
pub fn set_process_actor(actor: Actor) {
    let _first_wins = PROCESS_ACTOR.set(actor);
}

/// The actor a new [`Store`] names: the process's, else the operator running it.
pub(crate) fn default_actor() -> Actor {
    PROCESS_ACTOR.get().cloned().unwrap_or_else(operator)
}

/// The actor of this process: the OS user and host, as an operator.
pub fn operator() -> Actor {
    Actor::Operator { user: os_user(), host: host_name() }
}

/// The daemon on this host.
pub fn daemon() -> Actor {
    Actor::Daemon { host: host_name() }
}

/// The OS user running this process (`$USER`, `$LOGNAME`, else the numeric uid).
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/self/loginuid")
                .map(|uid| format!("uid {}", uid.trim()))
                .unwrap_or_else(|_| "unknown".to_owned())
        })
}

/// This host's name (`/etc/hostname`, `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `audit.jsonl` beside the database at `db`.
pub fn jsonl_path(db: &Path) -> PathBuf {
    db.with_file_name("audit.jsonl")
}

/// One stored entry, as `guardian audit show` lists it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Its position.
    pub seq: u64,
    /// The stored entry.
    pub sealed: Sealed,
}

impl Store {
    /// Append `record` as this store's actor, in a transaction of its own, and mirror it.
    pub fn audit(&mut self, record: Record) -> Result<()> {
        let tx = self.conn.transaction()?;
        append(&tx, &self.actor, record, crate::now_ms())?;
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// Who this store's entries name (default: the operator running this process).
    pub fn set_actor(&mut self, actor: Actor) {
        self.actor = actor;
    }

    /// Every stored entry, oldest first (in row order, as they are kept).
    pub fn audit_rows(&self) -> Result<Vec<AuditRow>> {
        let mut stmt = self.conn.prepare("SELECT seq, body, hash FROM audit_log ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body, hash) = row?;
            let hash =
                hash.parse().map_err(|_| eyre!("audit entry {seq}: hash {hash:?} is not hex"))?;
            out.push(AuditRow { seq: to_u64(seq)?, sealed: Sealed { body, hash } });
        }
        Ok(out)
    }

    /// Every stored entry, parsed, oldest first: what a post-mortem is built from.
    pub fn audit_entries(&self) -> Result<Vec<Entry>> {
        self.audit_rows()?
            .into_iter()
            .map(|r| r.sealed.entry().map_err(|e| eyre!("stored audit entry {}: {e}", r.seq)))
            .collect()
    }

    /// Whether incident `id` has an entry of record `kind` (`impact`, …).
    pub fn has_audit_record(&self, id: i64, kind: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM audit_log WHERE incident_id = ?1 AND kind = ?2 LIMIT 1",
                params![id, kind],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Where anchoring stands: the last anchor (the entry it published, and when it was
    /// recorded) and how many entries other than anchors came after that entry.
    pub fn anchoring(&self) -> Result<(Option<(u64, u64)>, u64)> {
        let last: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT body, at_ms FROM audit_log WHERE kind = 'anchored' ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let last = match last {
            None => None,
            Some((body, at_ms)) => {
                let entry: Entry = serde_json::from_str(&body)
                    .map_err(|e| eyre!("the last anchor entry is not an audit entry: {e}"))?;
                match entry.record {
                    Record::Anchored { seq, .. } => Some((seq, to_u64(at_ms)?)),
                    _ => None,
                }
            }
        };
        let after = i64::try_from(last.map_or(0, |(seq, _)| seq))?;
        let pending: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM audit_log WHERE seq > ?1 AND kind != 'anchored'",
            [after],
            |r| r.get(0),
        )?;
        Ok((last, to_u64(pending)?))
    }

    /// The chain's head: its last entry's position and hash.
    pub fn audit_head(&self) -> Result<Option<(u64, B256)>> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        head.map(|(seq, hash)| Ok((to_u64(seq)?, parse_b256(&hash)?))).transpose()
    }

    /// Bring `audit.jsonl` up to the table; a failure is logged, never returned: the table is
    /// the record, and `guardian audit verify` reports a file that lags or parts from it.
    pub(crate) fn mirror_audit(&self) {
        let Some(db) = &self.path else { return };
        // Nothing new since the last time this connection brought the file up to date.
        let head = self.audit_head().ok().flatten().map_or(0, |(seq, _)| seq);
        if head == self.mirrored.get() {
            return;
        }
        match self.sync_jsonl(&jsonl_path(db)) {
            Ok(_) => self.mirrored.set(head),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "audit.jsonl not brought up to the database")
            }
        }
    }

    /// Append to the file at `path` every entry it lacks; returns how many.
    pub fn sync_jsonl(&self, path: &Path) -> Result<usize> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .wrap_err_with(|| format!("opening {}", path.display()))?;
        file.lock().wrap_err_with(|| format!("locking {}", path.display()))?;
        let last = last_line(&mut file, path)?;
        let after = match last {
            None => 0,
            Some(line) => {
                let sealed = Sealed::from_line(&line).map_err(|e| {
                    eyre!("{}: its last line is not an audit entry: {e}", path.display())
                })?;
                let entry =
                    sealed.entry().map_err(|e| eyre!("{}: its last line: {e}", path.display()))?;
                let ours: Option<String> = self
                    .conn
                    .query_row(
                        "SELECT hash FROM audit_log WHERE seq = ?1",
                        [to_i64(entry.seq)?],
                        |r| r.get(0),
                    )
                    .optional()?;
                if ours.as_deref() != Some(&sealed.hash.to_string()) {
                    bail!(
                        "{} ends with entry {} ({}), which the database does not hold: the copies part; run guardian audit verify",
                        path.display(),
                        entry.seq,
                        sealed.hash
                    );
                }
                entry.seq
            }
        };
        let mut stmt =
            self.conn.prepare("SELECT body, hash FROM audit_log WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map([to_i64(after)?], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut text = String::new();
        let mut count = 0;
        for row in rows {
            let (body, hash) = row?;
            text.push_str(&Sealed { body, hash: parse_b256(&hash)? }.line());
            text.push('\n');
            count += 1;
        }
        if count > 0 {
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
        }
        Ok(count)
    }
}

/// The file's last complete line. A final line without its newline (a write torn by a crash)
/// is trimmed off first.
fn last_line(file: &mut File, path: &Path) -> Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    // Read back far enough to hold at least one whole line (entries are well under 64 KiB).
    let window = len.min(256 * 1024);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last() != Some(&b'\n') {
        let keep = tail.iter().rposition(|b| *b == b'\n').map(|i| len - window + i as u64 + 1);
        let keep = keep.unwrap_or(if window == len { 0 } else { len });
        tracing::warn!(path = %path.display(), bytes = len - keep, "audit.jsonl ended in a torn line (a crash mid-write): trimmed");
        file.set_len(keep)?;
        file.sync_data()?;
        return last_line(file, path);
    }
    let body = &tail[..tail.len() - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && window < len {
        bail!("{}: its last line is longer than 256 KiB", path.display());
    }
    Ok(Some(String::from_utf8_lossy(&body[start..]).into_owned()))
}

/// What `guardian audit verify` found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The database's chain: its length and head, or where it breaks.
    pub database: Result<guardian_core::audit::Verified, guardian_core::audit::Break>,
    /// The file's chain, the same way (`None`: no file).
    pub file: Option<Result<guardian_core::audit::Verified, guardian_core::audit::Break>>,
    /// Where the two copies part, if they do.
    pub divergence: Option<guardian_core::audit::Divergence>,
    /// The file's path.
    pub file_path: PathBuf,
}

impl Verification {
    /// Both copies hold the same intact chain.
    pub fn intact(&self) -> bool {
        self.database.is_ok() && matches!(self.file, Some(Ok(_))) && self.divergence.is_none()
    }
}

/// How often, and how far apart, [`verify_copies`] looks again at a file that ends before the
/// table: a writer appends right after its commit, so a live daemon's file may lag by moments.
const LAG_LOOKS: u32 = 20;
const LAG_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Check the chain in `store` and in its `audit.jsonl`, and compare them.
///
/// Safe against a running daemon: the file is read under a shared lock, with the table read
/// inside it, so no entry is half-appended and every line the file holds was committed before
/// the table was read. A file that is a strict prefix of the table is looked at again for up
/// to a second (its writer appends right after committing); only a gap that stays is reported.
pub fn verify_copies(store: &Store, file: &Path) -> Result<Verification> {
    let mut looks = 1;
    loop {
        let (check, lagging) = verify_once(store, file)?;
        if !lagging || looks == LAG_LOOKS {
            return Ok(check);
        }
        looks += 1;
        std::thread::sleep(LAG_WAIT);
    }
}

/// One look at both copies; `true` with it when the file only lacks the table's last entries.
fn verify_once(store: &Store, file: &Path) -> Result<(Verification, bool)> {
    use guardian_core::audit::{diverge, verify};
    let handle = match File::open(file) {
        Ok(handle) => Some(handle),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).wrap_err_with(|| format!("opening {}", file.display())),
    };
    // Writers append under the exclusive lock (`sync_jsonl`): while this is held, none is
    // midway, and none appends what the table read below would not hold.
    if let Some(handle) = &handle {
        handle.lock_shared().wrap_err_with(|| format!("locking {}", file.display()))?;
    }
    let rows = store.audit_rows()?;
    let database = verify(rows.iter().map(|r| (r.seq, &r.sealed)));
    let Some(handle) = handle else {
        let check = Verification { database, file: None, divergence: None, file_path: file.into() };
        return Ok((check, false));
    };
    let lines = read_lines(BufReader::new(&handle), file)?;
    drop(handle);
    let (sealed, chain) = file_chain(lines);
    let ours: Vec<Sealed> = rows.into_iter().map(|r| r.sealed).collect();
    let lagging = chain.is_ok() && sealed.len() < ours.len() && ours.starts_with(&sealed);
    let divergence = diverge(("the database", &ours), (&file.display().to_string(), &sealed));
    let check =
        Verification { database, file: Some(chain), divergence, file_path: file.to_owned() };
    Ok((check, lagging))
}

/// The chain in a file's `lines` ([`read_jsonl`]): the entries up to the first line that does
/// not read as one, and whether they verify (a line that does not read is an edited entry).
pub fn file_chain(
    lines: Vec<Result<Sealed, String>>,
) -> (Vec<Sealed>, Result<guardian_core::audit::Verified, guardian_core::audit::Break>) {
    use guardian_core::audit::{Break, verify};
    let mut sealed = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        match line {
            Ok(s) => sealed.push(s),
            Err(why) => return (sealed, Err(Break::Edited { seq: i as u64 + 1, why })),
        }
    }
    let chain = verify(sealed.iter().enumerate().map(|(i, s)| (i as u64 + 1, s)));
    (sealed, chain)
}

/// Every line of an `audit.jsonl` (or an export), as stored.
pub fn read_jsonl(path: &Path) -> Result<Vec<Result<Sealed, String>>> {
    let file = File::open(path).wrap_err_with(|| format!("opening {}", path.display()))?;
    read_lines(BufReader::new(file), path)
}

/// The lines of `reader` (the file at `path`) as [`read_jsonl`] reads them.
fn read_lines(reader: impl BufRead, path: &Path) -> Result<Vec<Result<Sealed, String>>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.wrap_err_with(|| format!("reading {} line {}", path.display(), i + 1))?;
        if line.is_empty() {
            continue;
        }
        out.push(Sealed::from_line(&line).map_err(|e| format!("line {}: {e}", i + 1)));
    }
    Ok(out)
}
