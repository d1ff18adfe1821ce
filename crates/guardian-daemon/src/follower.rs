//! The reorg-safe block follower.
//!
//! Pull-based: each step compares the cursor (last committed block) with the node's head and
//! processes what lies between. New-head notifications over WebSocket only wake the loop early;
//! a dropped subscription loses nothing because the next step pulls from the cursor anyway.
//!
//! - Near the head, blocks are processed one at a time; the parent hash must match the cursor,
//!   otherwise a reorg is handled first (rewind to the common ancestor, retract what was
//!   orphaned, re-evaluate). Round trips per block (see `docs/ARCHITECTURE.md`): a head pushed
//!   over WebSocket carries the header, so one batch (logs by block hash, receipts and state
//!   when rules need them); over HTTP one `eth_getBlockByNumber("latest")` per poll (the head
//!   and, when it is the next block, its header), then that batch.
//! - Far behind (a start block in the past, or downtime), blocks are read by ranges whose size
//!   adapts to the node's limits, and a whole range commits in one transaction: log-only rules
//!   read the range's logs and its last header (a long range as up to four pieces requested at
//!   once); rules that read state or receipts add every header to that batch, then read every
//!   block's receipts and state in a second.
//! - Every commit moves the cursor together with the findings, so a crash replays at most one
//!   uncommitted step and the store's occurrence keys make the replay idempotent.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::IsTerminal,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::primitives::{Address, B256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::finding::{BlockInput, Finding, StateQuery};
use guardian_rpc::RpcPool;
use guardian_store::{BlockRef, Recorded, Store};
use tracing::{info, warn};

use crate::{
    heads::{Head, Heads},
    source::{self, Header, Reader, Reads},
};

/// What the follower needs from the rule engine. Implemented by `guardian_core`'s engine; kept
/// as a trait so the follower can be exercised and benchmarked on its own.
pub trait Evaluator: Send {
    /// Contracts whose logs and transactions matter.
    fn addresses(&self) -> &BTreeSet<Address>;
    /// Event topic0s the rules match (empty: every log of the watched contracts).
    fn topics(&self) -> &BTreeSet<B256>;
    /// State to read at every block.
    fn queries(&self) -> &BTreeSet<StateQuery>;
    /// Whether rules need the outcome of every transaction sent to a watched contract.
    fn needs_receipts(&self) -> bool;
    /// How many blocks before the cursor must be replayed after a restart to rebuild windows.
    fn warmup_blocks(&self) -> u64;
    /// Evaluate one block.
    fn evaluate(&mut self, block: &BlockInput) -> Vec<Finding>;
    /// Forget everything learned from blocks above `block` (reorg).
    fn rewind(&mut self, block: u64);
}

/// Told what the follower sees, for metrics and readiness.
pub trait FollowerObserver: Send + Sync {
    /// The head it just read.
    fn head(&self, head: u64);
    /// The cursor it stands at (after a step began or a commit), with the block's timestamp
    /// (unix s) when known.
    fn cursor(&self, number: u64, timestamp: Option<u64>);
    /// One block near the head was read, evaluated and committed in `elapsed`.
    fn block_processed(&self, elapsed: Duration);
    /// A commit (or a read of the cursor) succeeded, or failed with this error.
    fn database(&self, result: Result<(), &str>);
}

/// How the follower behaves.
#[derive(Debug, Clone)]
pub struct FollowerOptions {
    /// Blocks to stay behind the head (0 on QBFT: blocks are final when produced).
    pub confirmations: u64,
    /// How often to poll for new heads when no WebSocket pushes them.
    pub poll_interval: Duration,
    /// First block to process on an empty database (default: the current head).
    pub start_block: Option<u64>,
    /// Upper bound for one `eth_getLogs` range during backfill.
    pub max_range: u64,
    /// Behind the head by more than this, the follower backfills by ranges.
    pub backfill_threshold: u64,
    /// When the current endpoint's head has not moved for this long, ask the other endpoints;
    /// if one is ahead, the current one has stalled and the follower switches.
    pub stall_after: Duration,
}

impl Default for FollowerOptions {
    fn default() -> Self {
        Self {
            confirmations: 0,
            poll_interval: Duration::from_secs(1),
            start_block: None,
            max_range: 2_000,
            backfill_threshold: 32,
            stall_after: Duration::from_secs(30),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing new on chain.
    Idle,
    /// Blocks `from..=to` were processed and committed.
    Processed {
        /// First block.
        from: u64,
        /// Last block (the new cursor).
        to: u64,
        /// What happened to each finding.
        recorded: Vec<Recorded>,
    },
    /// A reorg was found: the cursor went back to `ancestor` and the new branch's blocks up
    /// to `to` were processed, in one transaction.
    Reorg {
        /// The common ancestor.
        ancestor: u64,
        /// The last block of the new branch processed (the new cursor).
        to: u64,
        /// Findings retracted because the new branch does not hold their anomalies.
        retracted: Vec<i64>,
        /// What happened to each finding of the new branch.
        recorded: Vec<Recorded>,
    },
}

/// Follows the chain and records findings.
pub struct Follower<E> {
    /// Log filter, fixed at start-up (the engine's watched contracts and topics).
    addresses: Vec<Address>,
    topics: Vec<B256>,
    rpc: Arc<RpcPool>,
    reader: Reader,
    /// Whether the reader looked for Multicall3 yet (only rules that read state need it).
    multicall_checked: bool,
    store: Store,
    engine: E,
    options: FollowerOptions,
    warmed_up: bool,
    range: u64,
    progress: Progress,
    /// The highest head seen on the current endpoint, and when it last moved.
    last_head: (u64, Instant),
    /// Woken after a commit that moved an incident (so its notifications and effects go out
    /// at once).
    wake: Vec<Arc<tokio::sync::Notify>>,
    /// Told what the follower sees.
    observer: Option<Arc<dyn FollowerObserver>>,
}

/// How many blocks of a reorg's new branch are processed in the rewind's own transaction.
const REORG_REPLAY: usize = 64;

/// Most blocks of one backfill range when rules read state or receipts: their requests go out
/// in one batch (split by [`source::MAX_BATCH`]).
const STATE_RANGE: u64 = 100;

impl<E: Evaluator> Follower<E> {
    /// A follower reading through `rpc`, committing to `store`.
    pub fn new(rpc: Arc<RpcPool>, store: Store, engine: E, options: FollowerOptions) -> Self {
        let range = options.max_range.clamp(1, 100);
        let addresses = engine.addresses().iter().copied().collect();
        let topics = engine.topics().iter().copied().collect();
        Self {
            addresses,
            topics,
            reader: Reader::new(rpc.clone()),
            multicall_checked: false,
            rpc,
            store,
            engine,
            options,
            warmed_up: false,
            range,
            progress: Progress::new(),
            last_head: (0, Instant::now()),
            wake: Vec::new(),
            observer: None,
        }
    }

    /// Tell `observer` what the follower sees (heads, cursor, block times, database errors).
    pub fn observe(mut self, observer: Arc<dyn FollowerObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Pass a store result through, telling the observer whether the database works.
    fn db<T>(&self, result: Result<T>) -> Result<T> {
        if let Some(observer) = &self.observer {
            match &result {
                Ok(_) => observer.database(Ok(())),
                Err(error) => observer.database(Err(&format!("{error:#}"))),
            }
        }
        result
    }

    /// Wake `notify` after every commit that changed an incident.
    pub fn wake_on_commit(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.wake.push(notify);
        self
    }

    fn committed(&self, committed: &guardian_store::Committed) {
        if committed.transitions.iter().any(guardian_store::Applied::changed) {
            for notify in &self.wake {
                notify.notify_one();
            }
        }
    }

    /// The store (for status output and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where state reads go through Multicall3: `None` on a chain without it (reads are
    /// batched JSON-RPC requests then), or before the first state read looked.
    pub fn multicall3(&self) -> Option<Address> {
        self.reader.multicall()
    }

    /// The store, mutably (the pause flow resolves findings through it).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Process what is new, once.
    pub async fn step(&mut self) -> Result<Step> {
        self.step_with(None).await
    }

    /// [`step`](Self::step), given the latest head an endpoint pushed: when it is the block
    /// after the cursor on the endpoint in use, it is read without asking for the head first.
    async fn step_with(&mut self, pushed: Option<Head>) -> Result<Step> {
        let cursor = self.store.cursor();
        let cursor = self.db(cursor)?;
        if let (Some(cursor), Some(head)) = (cursor, pushed)
            && self.warmed_up
            && self.options.confirmations == 0
            && head.endpoint == self.rpc.current()
        {
            let header = head.header;
            if header.block.hash == cursor.hash {
                return Ok(Step::Idle); // the node just told us the cursor is its head
            }
            if header.block.number == cursor.number + 1 && header.block.parent_hash == cursor.hash {
                self.saw_head(header.block.number).await;
                return self.process_block(cursor, Some(header)).await;
            }
        }
        // One round trip: the head, and near the head the next block's header.
        let latest = self.reader.latest().await?;
        let head = self.saw_head(latest.block.number).await;
        let target = head.saturating_sub(self.options.confirmations);
        let Some(cursor) = cursor else { return self.initialise(target).await };
        if !self.warmed_up {
            self.warm_up(cursor).await?;
        }
        if self.options.confirmations == 0 && head == latest.block.number {
            if latest.block.hash == cursor.hash {
                self.observe_cursor(cursor.number, Some(latest.timestamp));
                self.progress.finish();
                return Ok(Step::Idle);
            }
            if latest.block.number == cursor.number + 1 && latest.block.parent_hash == cursor.hash {
                self.observe_cursor(cursor.number, None);
                return self.process_block(cursor, Some(latest)).await;
            }
        }

        // Is the block under the cursor still canonical?
        let at_cursor = source::header(&self.rpc, cursor.number).await?;
        self.observe_cursor(cursor.number, at_cursor.as_ref().map(|h| h.timestamp));
        if at_cursor.map(|h| h.block.hash) != Some(cursor.hash) {
            return self.handle_reorg(cursor.number).await;
        }
        if cursor.number >= target {
            self.progress.finish();
            return Ok(Step::Idle);
        }
        let behind = target - cursor.number;
        if behind > self.options.backfill_threshold {
            // Stay `backfill_threshold` blocks short of the head: the last stretch is walked
            // block by block with full parent-hash checks.
            self.progress.update(cursor.number, target);
            let limit = target - self.options.backfill_threshold;
            if self.log_only() {
                self.backfill(cursor, limit).await
            } else {
                self.backfill_state(cursor, limit).await
            }
        } else {
            self.process_block(cursor, None).await
        }
    }

    /// The head an endpoint reported: checked for a stall, told to the observer. Returns the
    /// head to follow (another endpoint's, after switching away from a stalled one).
    async fn saw_head(&mut self, mut head: u64) -> u64 {
        if let Some(ahead) = self.check_stall(head).await {
            head = ahead;
        }
        if let Some(observer) = &self.observer {
            observer.head(head);
        }
        head
    }

    fn observe_cursor(&self, number: u64, timestamp: Option<u64>) {
        if let Some(observer) = &self.observer {
            observer.cursor(number, timestamp);
        }
    }

    /// Run until `shutdown` flips, backing off while every endpoint is down.
    pub async fn run(
        &mut self,
        mut heads: Heads,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(250);
        let mut heads_alive = true;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let pushed = *heads.borrow_and_update();
            match self.step_with(pushed).await {
                Ok(Step::Idle) => {
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.poll_interval) => {}
                        changed = heads.changed(), if heads_alive => heads_alive = changed.is_ok(),
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(Step::Processed { recorded, .. }) => {
                    backoff = Duration::from_millis(250);
                    let new = recorded.iter().filter(|r| matches!(r, Recorded::New(_))).count();
                    if new > 0 {
                        info!(new, "recorded new findings");
                    }
                }
                Ok(Step::Reorg { .. }) => {}
                Err(error) => {
                    warn!(error = %format!("{error:#}"), retry_in = ?backoff, "follower step failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// A node can answer every request yet stop following the chain. When the current
    /// endpoint's head has not moved for `stall_after`, compare with the others and switch to
    /// the most advanced one if it is ahead. Returns its head when it switched.
    async fn check_stall(&mut self, head: u64) -> Option<u64> {
        if head > self.last_head.0 {
            self.last_head = (head, Instant::now());
            return None;
        }
        if self.last_head.1.elapsed() < self.options.stall_after || self.rpc.endpoints().len() < 2 {
            return None;
        }
        self.last_head.1 = Instant::now(); // probe at most once per stall period
        let current = self.rpc.current();
        let best = self
            .rpc
            .heads()
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(index, h)| h.map(|h| (h, index)))
            .max()?;
        if best.0 <= head || best.1 == current {
            return None;
        }
        warn!(
            stalled = %self.rpc.endpoints()[current].label(),
            at = head,
            ahead = %self.rpc.endpoints()[best.1].label(),
            their_head = best.0,
            "RPC endpoint stopped following the chain; switching"
        );
        self.rpc.switch_to(best.1);
        self.last_head = (best.0, Instant::now());
        Some(best.0)
    }

    fn log_only(&self) -> bool {
        self.engine.queries().is_empty() && !self.engine.needs_receipts()
    }

    /// What the rules read of each block.
    fn reads(&self) -> Reads<'_> {
        Reads {
            addresses: &self.addresses,
            topics: &self.topics,
            receipts: self.engine.needs_receipts().then(|| self.engine.addresses()),
            queries: self.engine.queries(),
        }
    }

    /// Look for Multicall3 once, before the first state read.
    async fn check_multicall(&mut self) -> Result<()> {
        if !self.multicall_checked && !self.engine.queries().is_empty() {
            self.reader.detect_multicall(self.engine.queries().len()).await?;
        }
        self.multicall_checked = true;
        Ok(())
    }

    async fn initialise(&mut self, target: u64) -> Result<Step> {
        // The block before the first one to process becomes the cursor, with no findings.
        let start = self.options.start_block.unwrap_or(target);
        let anchor_number = start.saturating_sub(1);
        let anchor = source::header(&self.rpc, anchor_number)
            .await?
            .ok_or_else(|| eyre!("the node does not have block {anchor_number}"))?;
        let committed = self.store.commit_blocks(&[(anchor.block, Vec::new())]);
        self.db(committed)?;
        self.warmed_up = true;
        info!(block = start, head = target, "starting to follow the chain");
        Ok(Step::Processed { from: anchor_number, to: anchor_number, recorded: Vec::new() })
    }

    /// Replay the blocks before the cursor into the engine (findings discarded: they were
    /// recorded before the restart) so windows see what they saw before.
    async fn warm_up(&mut self, cursor: BlockRef) -> Result<()> {
        let span = self.engine.warmup_blocks();
        let from = cursor.number.saturating_sub(span.saturating_sub(1)).max(1);
        if span > 0 && from <= cursor.number {
            info!(from, to = cursor.number, "replaying recent blocks to rebuild rule windows");
            self.check_multicall().await?;
            for number in from..=cursor.number {
                let Some(header) = source::header(&self.rpc, number).await? else { break };
                let input = self.block_input(header).await?;
                let _already_recorded = self.engine.evaluate(&input);
            }
        }
        self.warmed_up = true;
        Ok(())
    }

    /// Everything the rules read of one block: one batch.
    async fn block_input(&mut self, header: Header) -> Result<BlockInput> {
        self.check_multicall().await?;
        let mut inputs = self.reader.inputs(&[header], &self.reads(), None).await?;
        inputs.pop().ok_or_else(|| eyre!("no input read for block {}", header.block.number))
    }

    /// Process the block after `cursor`; `header` when it is known already.
    async fn process_block(&mut self, cursor: BlockRef, header: Option<Header>) -> Result<Step> {
        let started = Instant::now();
        let number = cursor.number + 1;
        let header = match header {
            Some(header) => header,
            None => match source::header(&self.rpc, number).await? {
                Some(header) => header,
                None => return Ok(Step::Idle), // the endpoint we failed over to is a little behind
            },
        };
        if header.block.parent_hash != cursor.hash {
            return self.handle_reorg(cursor.number).await;
        }
        let timestamp = header.timestamp;
        let input = self.block_input(header).await?;
        let findings = self.engine.evaluate(&input);
        let committed = self.store.commit_blocks(&[(header.block, findings)]);
        let committed = self.db(committed)?;
        self.committed(&committed);
        if let Some(observer) = &self.observer {
            observer.cursor(number, Some(timestamp));
            observer.block_processed(started.elapsed());
        }
        Ok(Step::Processed { from: number, to: number, recorded: committed.recorded })
    }

    /// A backfill range for rules that read state or receipts: every header and the range's
    /// logs in one batch, every block's receipts and state in a second, one commit.
    async fn backfill_state(&mut self, cursor: BlockRef, limit: u64) -> Result<Step> {
        self.check_multicall().await?;
        let from = cursor.number + 1;
        let to = (from + STATE_RANGE - 1).min(limit);
        let (headers, logs) = self.reader.range(from, to, &self.reads(), true).await?;
        let mut parent = cursor.hash;
        for header in &headers {
            if header.block.parent_hash != parent {
                bail!(
                    "block {} changed while backfilling (reorg); retrying the range",
                    header.block.number
                );
            }
            parent = header.block.hash;
        }
        let mut by_block: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        let hashes: BTreeMap<u64, B256> =
            headers.iter().map(|h| (h.block.number, h.block.hash)).collect();
        for log in logs.iter().filter(|l| !l.removed) {
            let number = log.block_number.ok_or_else(|| eyre!("log without block number"))?;
            if log.block_hash != hashes.get(&number).copied() {
                bail!("block {number} changed while backfilling (reorg); retrying the range");
            }
            by_block.entry(number).or_default().push(source::observed(log)?);
        }
        let inputs = self.reader.inputs(&headers, &self.reads(), Some(by_block)).await?;
        let mut blocks = Vec::with_capacity(inputs.len());
        for (header, input) in headers.iter().zip(&inputs) {
            blocks.push((header.block, self.engine.evaluate(input)));
        }
        let committed = self.store.commit_blocks(&blocks);
        let committed = self.db(committed).wrap_err("committing a backfilled range")?;
        self.committed(&committed);
        let end = headers.last().map(|h| (h.block.number, h.timestamp));
        if let Some((number, timestamp)) = end {
            self.observe_cursor(number, Some(timestamp));
        }
        Ok(Step::Processed { from, to, recorded: committed.recorded })
    }

    async fn backfill(&mut self, cursor: BlockRef, limit: u64) -> Result<Step> {
        let from = cursor.number + 1;
        let (to, end, logs) = loop {
            let to = (from + self.range - 1).min(limit);
            // The range's logs and its last header: one batch per piece, the pieces at once.
            let read = self.reader.logs(from, to, &self.reads()).await;
            match read {
                Ok((end, logs)) => {
                    if to - from + 1 >= self.range {
                        self.range = (self.range * 2).min(self.options.max_range.max(1));
                    }
                    break (to, end, logs);
                }
                // Nodes cap ranges and result sizes in many ways; halving until it passes
                // adapts to all of them without parsing their messages.
                Err(error) if self.range > 1 => {
                    self.range = (self.range / 2).max(1);
                    warn!(from, to, range = self.range, error = %format!("{error:#}"), "eth_getLogs refused; shrinking the range");
                }
                Err(error) => return Err(error),
            }
        };

        let mut by_block: BTreeMap<u64, (B256, Vec<_>)> = BTreeMap::new();
        for log in &logs {
            if log.removed {
                continue;
            }
            let number = log.block_number.ok_or_else(|| eyre!("log without block number"))?;
            let hash = log.block_hash.ok_or_else(|| eyre!("log without block hash"))?;
            by_block
                .entry(number)
                .or_insert_with(|| (hash, Vec::new()))
                .1
                .push(source::observed(log)?);
        }
        if let Some((hash, _)) = by_block.get(&to)
            && *hash != end.block.hash
        {
            bail!("block {to} changed while backfilling (reorg); retrying the range");
        }

        let mut blocks = Vec::new();
        for number in from..=to {
            let (hash, logs) = by_block.remove(&number).unwrap_or_default();
            let hash = if number == to { end.block.hash } else { hash };
            let input = BlockInput {
                number,
                hash,
                parent_hash: if number == to { end.block.parent_hash } else { B256::ZERO },
                timestamp: if number == to { end.timestamp } else { 0 },
                logs,
                ..BlockInput::default()
            };
            let mut findings = self.engine.evaluate(&input);
            let mut block = BlockRef { number, hash, parent_hash: input.parent_hash };
            if hash.is_zero() && !findings.is_empty() {
                // A window still above its threshold can fire on a block without logs, whose
                // hash the range query did not give us. Evidence and reorg detection need the
                // real one, so read the header for these (rare) blocks.
                let header = source::header(&self.rpc, number)
                    .await?
                    .ok_or_else(|| eyre!("the node does not have block {number}"))?;
                block = header.block;
                for finding in &mut findings {
                    if finding.evidence.block_number == number {
                        finding.evidence.block_hash = block.hash;
                    }
                }
            }
            // Hashes are known for blocks with logs, for the range end and for blocks with
            // findings; only those are kept for reorg detection (backfilled blocks lie deep
            // below the head).
            if !block.hash.is_zero() {
                blocks.push((block, findings));
            }
        }
        let committed = self.store.commit_blocks(&blocks);
        let committed = self.db(committed).wrap_err("committing a backfilled range")?;
        self.committed(&committed);
        if let Some(observer) = &self.observer {
            observer.cursor(to, Some(end.timestamp));
        }
        Ok(Step::Processed { from, to, recorded: committed.recorded })
    }

    async fn handle_reorg(&mut self, from: u64) -> Result<Step> {
        let mut number = from;
        let ancestor = loop {
            if number == 0 {
                bail!("reorg reaches genesis; refusing to guess a common ancestor");
            }
            number -= 1;
            let Some(stored) = self.store.block_hash(number)? else {
                if number + guardian_store::RECENT_BLOCKS < from {
                    bail!(
                        "reorg deeper than the {} blocks guardian keeps; manual attention needed",
                        guardian_store::RECENT_BLOCKS
                    );
                }
                continue; // a backfilled block whose hash was not kept: keep walking back
            };
            let header = source::header(&self.rpc, number)
                .await?
                .ok_or_else(|| eyre!("the node lost block {number} during a reorg"))?;
            if header.block.hash == stored {
                break header.block;
            }
        };
        self.engine.rewind(ancestor.number);
        // The new branch, in the rewind's own transaction: an anomaly the new branch mines
        // again keeps its finding, and no incident sees a withdrawal that is undone a moment
        // later.
        let target = self.rpc.head().await?.saturating_sub(self.options.confirmations);
        let mut blocks = Vec::new();
        let mut parent = ancestor;
        while parent.number < target && blocks.len() < REORG_REPLAY {
            let Some(header) = source::header(&self.rpc, parent.number + 1).await? else { break };
            if header.block.parent_hash != parent.hash {
                break; // still moving: the next step sees it
            }
            let block = header.block;
            let input = self.block_input(header).await?;
            let findings = self.engine.evaluate(&input);
            blocks.push((block, findings));
            parent = block;
        }
        let committed = self.store.reorg(ancestor, &blocks);
        let committed = self.db(committed)?;
        self.committed(&committed);
        if let Some(observer) = &self.observer {
            observer.cursor(parent.number, None);
        }
        warn!(
            ancestor = ancestor.number,
            orphaned_from = ancestor.number + 1,
            replayed_to = parent.number,
            retracted = committed.retracted.len(),
            "reorg: rewound to the common ancestor and followed the new branch"
        );
        Ok(Step::Reorg {
            ancestor: ancestor.number,
            to: parent.number,
            retracted: committed.retracted,
            recorded: committed.recorded,
        })
    }
}

/// Catch-up progress: a bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Self { bar: None, last_log: None }
    }

    fn update(&mut self, at: u64, target: u64) {
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new(target);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "backfill {bar:40} {pos}/{len} blocks ({per_sec}, eta {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            bar.set_length(target);
            bar.set_position(at);
        } else if self.last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            self.last_log = Some(Instant::now());
            info!(at, target, behind = target.saturating_sub(at), "backfilling");
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.last_log = None;
    }
}
