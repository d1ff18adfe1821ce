//! Reading what the rule engine needs from the chain, through the endpoint pool, in as few
//! round trips as the node allows.
//!
//! - Everything one block needs once its header is known (logs by block hash, receipts, state
//!   reads) goes out as **one JSON-RPC batch**. A node that refuses batches gets the same
//!   requests one by one, concurrently (said once in the log).
//! - State reads that are calls (`balance_drop` on native or ERC-20 balances, `invariant`
//!   views) go through **Multicall3** when the chain has it at its canonical address: one
//!   `eth_call` for hundreds of reads. Without it they are separate requests of the batch.
//!   `code_change` (`eth_getCode`) and storage slots are always separate requests.
//! - A backfill of rules that read state or receipts reads a range of blocks in two round
//!   trips: the headers and the range's logs, then every block's receipts and state.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, Ordering},
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes, U64, U256, keccak256},
    providers::Provider,
    rpc::client::BatchRequest,
    rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest},
    sol_types::{Panic, Revert, SolCall, SolError},
};
use eyre::{Result, WrapErr, eyre};
use futures_util::future::try_join_all;
use guardian_core::finding::{BlockInput, ObservedLog, StateQuery, StateValue, TxOutcome};
use guardian_store::BlockRef;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json, value::RawValue};
use tracing::{info, warn};

use guardian_rpc::RpcPool;

alloy::sol! {
    function balanceOf(address holder) external view returns (uint256);

    /// Multicall3 (github.com/mds1/multicall), deployed at the same address on most chains.
    struct Call3 { address target; bool allowFailure; bytes callData; }
    struct Result3 { bool success; bytes returnData; }
    function aggregate3(Call3[] calls) external payable returns (Result3[] returnData);
    function getEthBalance(address addr) external view returns (uint256 balance);
}

pub use guardian_chain::multicall::MULTICALL3;

/// Most requests in one JSON-RPC batch (Besu's default `--rpc-http-max-batch-size` is 1024);
/// larger ones are split into batches sent together.
pub const MAX_BATCH: usize = 256;

/// At most this many concurrent requests read one log-only backfill range.
const LOG_PIECES: u64 = 4;

/// A log-only range is split only into pieces of at least this many blocks.
const MIN_LOG_PIECE: u64 = 250;

/// Most calls in one Multicall3 `aggregate3` (one `eth_call`, under the node's gas cap).
pub const MAX_MULTICALL: usize = 300;

/// A block header as the follower needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Number, hash and parent hash.
    pub block: BlockRef,
    /// Timestamp in seconds.
    pub timestamp: u64,
}

impl From<&alloy::rpc::types::Header> for Header {
    fn from(h: &alloy::rpc::types::Header) -> Self {
        Self {
            block: BlockRef { number: h.number, hash: h.hash, parent_hash: h.parent_hash },
            timestamp: h.timestamp,
        }
    }
}

/// A header as `eth_getBlockByNumber` returns it (only what the follower reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHeader {
    number: U64,
    hash: B256,
    parent_hash: B256,
    timestamp: U64,
}

impl From<RawHeader> for Header {
    fn from(h: RawHeader) -> Self {
        Self {
            block: BlockRef { number: h.number.to(), hash: h.hash, parent_hash: h.parent_hash },
            timestamp: h.timestamp.to(),
        }
    }
}

/// What the rules read of each block.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    /// Contracts whose logs matter.
    pub addresses: &'a [Address],
    /// Topic0s the rules match (empty: every log of `addresses`).
    pub topics: &'a [B256],
    /// When rules need transaction outcomes: the contracts whose transactions count.
    pub receipts: Option<&'a BTreeSet<Address>>,
    /// State to read at every block.
    pub queries: &'a BTreeSet<StateQuery>,
}

/// One request of a batch: the method and its parameters.
type Request = (&'static str, Value);

/// One answer of a batch: the result, or the node's JSON-RPC error (a revert is one).
type Answer = std::result::Result<Box<RawValue>, String>;

/// `answer` as a `T`, parsed straight from the node's JSON text (no intermediate `Value`:
/// a backfill range's logs are megabytes).
fn parse<T: DeserializeOwned>(answer: &RawValue, what: &'static str) -> Result<T> {
    serde_json::from_str(answer.get()).wrap_err(what)
}

/// Reads through the pool, remembering what the node accepts (batches) and what the chain has
/// (Multicall3).
#[derive(Debug)]
pub struct Reader {
    rpc: std::sync::Arc<RpcPool>,
    multicall: Option<Address>,
    /// Cleared once the node refused a batch that it then answered request by request.
    batches: AtomicBool,
}

impl Reader {
    /// A reader over `rpc`, batching, without Multicall3 until [`detect_multicall`](Self::detect_multicall).
    pub fn new(rpc: std::sync::Arc<RpcPool>) -> Self {
        Self { rpc, multicall: None, batches: AtomicBool::new(true) }
    }

    /// The pool it reads through.
    pub fn rpc(&self) -> &RpcPool {
        &self.rpc
    }

    /// Look for Multicall3 at its canonical address (only needed when rules read state), and
    /// say in the log which way state is read.
    pub async fn detect_multicall(&mut self, queries: usize) -> Result<()> {
        let code: Bytes = self
            .rpc
            .call("eth_getCode", |p| async move { p.get_code_at(MULTICALL3).await })
            .await?;
        if code.is_empty() {
            self.multicall = None;
            info!(
                queries,
                multicall3 = %MULTICALL3,
                "no Multicall3 on this chain: state reads go out as batched JSON-RPC requests"
            );
        } else {
            self.multicall = Some(MULTICALL3);
            info!(
                queries,
                multicall3 = %MULTICALL3,
                "state reads go through Multicall3 (one eth_call per {MAX_MULTICALL} reads)"
            );
        }
        Ok(())
    }

    /// Whether calls are read through Multicall3.
    pub fn multicall(&self) -> Option<Address> {
        self.multicall
    }

    /// Send `requests` as batches (or one by one to a node that refuses batches), failing
    /// over like every request of the pool. Answers come back in order.
    pub async fn batch(&self, requests: Vec<Request>) -> Result<Vec<Answer>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if requests.len() == 1 || !self.batches.load(Ordering::Relaxed) {
            return self.one_by_one(&requests).await;
        }
        let chunks = requests.chunks(MAX_BATCH).map(|chunk| self.one_batch(chunk));
        match try_join_all(chunks).await {
            Ok(answers) => Ok(answers.into_iter().flatten().collect()),
            Err(error) => {
                // Refused as a batch: does the node answer the same requests one by one?
                let answers = self.one_by_one(&requests).await?;
                self.batches.store(false, Ordering::Relaxed);
                warn!(error = %format!("{error:#}"), "the RPC endpoint refused a JSON-RPC batch; sending requests one by one from now on");
                Ok(answers)
            }
        }
    }

    async fn one_batch(&self, requests: &[Request]) -> Result<Vec<Answer>> {
        let what = format!("a batch of {} requests", requests.len());
        let answers = self
            .rpc
            .call(&what, |p| async move {
                let mut batch = BatchRequest::new(p.client());
                let mut waiters = Vec::with_capacity(requests.len());
                for (method, params) in requests {
                    waiters.push(batch.add_call::<_, Box<RawValue>>(*method, params)?);
                }
                batch.send().await?;
                let mut answers = Vec::with_capacity(waiters.len());
                for waiter in waiters {
                    answers.push(answer(waiter.await)?);
                }
                Ok(answers)
            })
            .await?;
        Ok(answers)
    }

    async fn one_by_one(&self, requests: &[Request]) -> Result<Vec<Answer>> {
        let answers = try_join_all(requests.iter().map(|(method, params)| {
            self.rpc.call(method, move |p| async move {
                answer(p.client().request::<_, Box<RawValue>>(*method, params.clone()).await)
            })
        }))
        .await?;
        Ok(answers)
    }

    /// The head's header (`eth_getBlockByNumber("latest")`): the head's number, and for the
    /// follower near the head, the next block's header in the same round trip.
    pub async fn latest(&self) -> Result<Header> {
        let answer = self.one_by_one(&[("eth_getBlockByNumber", json!(["latest", false]))]).await?;
        let value = answer.into_iter().next().ok_or_else(|| eyre!("no answer"))?;
        let header: Option<RawHeader> =
            parse(&value.map_err(|e| eyre!(e))?, "eth_getBlockByNumber(latest)")?;
        header.map(Header::from).ok_or_else(|| eyre!("the node has no latest block"))
    }

    /// Everything the rules need of each block of `headers` (consecutive or not), in one
    /// round trip. `logs`: the blocks' logs when the caller already has them (a backfill
    /// range), else they are read by block hash.
    pub async fn inputs(
        &self,
        headers: &[Header],
        reads: &Reads<'_>,
        mut logs: Option<BTreeMap<u64, Vec<ObservedLog>>>,
    ) -> Result<Vec<BlockInput>> {
        let mut requests = Vec::new();
        let mut plans = Vec::with_capacity(headers.len());
        for header in headers {
            let at = BlockId::hash(header.block.hash);
            let logs_at = logs.is_none().then(|| {
                requests.push(get_logs(Filter::new().at_block_hash(header.block.hash), reads));
                requests.len() - 1
            });
            let receipts_at = reads.receipts.map(|_| {
                requests.push(("eth_getBlockReceipts", json!([at])));
                requests.len() - 1
            });
            let state = self.plan_state(reads.queries, at, &mut requests)?;
            plans.push((logs_at, receipts_at, state));
        }
        let answers = self.batch(requests).await?;
        let mut inputs = Vec::with_capacity(headers.len());
        for (header, (logs_at, receipts_at, state)) in headers.iter().zip(plans) {
            let number = header.block.number;
            let block_logs = match logs_at {
                Some(i) => {
                    let value = answers[i].as_ref().map_err(|e| eyre!("eth_getLogs: {e}"))?;
                    let raw: Vec<Log> = parse(value, "eth_getLogs")?;
                    raw.iter().filter(|l| !l.removed).map(observed).collect::<Result<Vec<_>>>()?
                }
                None => logs.as_mut().and_then(|l| l.remove(&number)).unwrap_or_default(),
            };
            let transactions = match (receipts_at, reads.receipts) {
                (Some(i), Some(watched)) => {
                    let value =
                        answers[i].as_ref().map_err(|e| eyre!("eth_getBlockReceipts: {e}"))?;
                    let receipts: Option<Vec<TransactionReceipt>> =
                        parse(value, "eth_getBlockReceipts")?;
                    let receipts =
                        receipts.ok_or_else(|| eyre!("node has no receipts for block {number}"))?;
                    tx_outcomes(receipts, watched)
                }
                _ => Vec::new(),
            };
            let state = self.settle_state(state, &answers, header.block.hash).await?;
            inputs.push(BlockInput {
                number,
                hash: header.block.hash,
                parent_hash: header.block.parent_hash,
                timestamp: header.timestamp,
                logs: block_logs,
                transactions,
                state,
            });
        }
        Ok(inputs)
    }

    /// Blocks `from..=to`: every header, and the logs of the range in the same round trip.
    pub async fn range(
        &self,
        from: u64,
        to: u64,
        reads: &Reads<'_>,
        headers: bool,
    ) -> Result<(Vec<Header>, Vec<Log>)> {
        let mut requests = vec![get_logs(Filter::new().from_block(from).to_block(to), reads)];
        let numbers: Vec<u64> = if headers { (from..=to).collect() } else { vec![to] };
        for number in &numbers {
            requests.push(("eth_getBlockByNumber", json!([U64::from(*number), false])));
        }
        let mut answers = self.batch(requests).await?.into_iter();
        let logs = answers.next().ok_or_else(|| eyre!("eth_getLogs: no answer"))?;
        let logs: Vec<Log> = parse(&logs.map_err(|e| eyre!("eth_getLogs: {e}"))?, "eth_getLogs")?;
        let mut out = Vec::with_capacity(numbers.len());
        for (number, answer) in numbers.into_iter().zip(answers) {
            let value = answer.map_err(|e| eyre!("eth_getBlockByNumber({number}): {e}"))?;
            let header: Option<RawHeader> = parse(&value, "eth_getBlockByNumber")?;
            out.push(
                header
                    .map(Header::from)
                    .ok_or_else(|| eyre!("the node does not have block {number}"))?,
            );
        }
        Ok((out, logs))
    }

    /// Blocks `from..=to` for log-only rules: the range's logs and its last header. A long
    /// range is read as up to [`LOG_PIECES`] pieces at once, in separate requests: the node
    /// works on them in parallel and the first piece is parsed while the others are still being
    /// answered (the answers are the backfill's whole cost). Logs come back in block order.
    pub async fn logs(&self, from: u64, to: u64, reads: &Reads<'_>) -> Result<(Header, Vec<Log>)> {
        let reads =
            pieces(from, to).into_iter().map(|(start, end)| self.range(start, end, reads, false));
        let mut end = None;
        let mut logs = Vec::new();
        for (headers, piece) in try_join_all(reads).await? {
            end = headers.into_iter().last();
            logs.extend(piece);
        }
        let end = end.ok_or_else(|| eyre!("the node does not have block {to}"))?;
        Ok((end, logs))
    }

    /// Add the requests answering `queries` at `at` to `requests`.
    fn plan_state(
        &self,
        queries: &BTreeSet<StateQuery>,
        at: BlockId,
        requests: &mut Vec<Request>,
    ) -> Result<StatePlan> {
        let mut plan = StatePlan::default();
        let mut calls: Vec<PlannedCall> = Vec::new();
        for query in queries {
            match query {
                StateQuery::CodeHash(account) => {
                    requests.push(("eth_getCode", json!([account, at])));
                    plan.direct.push((query.clone(), requests.len() - 1));
                }
                StateQuery::Storage { address, slot } => {
                    requests.push((
                        "eth_getStorageAt",
                        json!([address, U256::from_be_bytes(slot.0), at]),
                    ));
                    plan.direct.push((query.clone(), requests.len() - 1));
                }
                StateQuery::NativeBalance(account) => match self.multicall {
                    Some(multicall) => {
                        let data = getEthBalanceCall { addr: *account }.abi_encode().into();
                        calls.push((query.clone(), multicall, data));
                    }
                    None => {
                        requests.push(("eth_getBalance", json!([account, at])));
                        plan.direct.push((query.clone(), requests.len() - 1));
                    }
                },
                StateQuery::Erc20Balance { token, holder } => {
                    let data = balanceOfCall { holder: *holder }.abi_encode().into();
                    calls.push((query.clone(), *token, data));
                }
                StateQuery::Call { to, data } => calls.push((query.clone(), *to, data.clone())),
            }
        }
        match self.multicall {
            Some(multicall) => {
                for chunk in calls.chunks(MAX_MULTICALL) {
                    let call = aggregate3Call {
                        calls: chunk
                            .iter()
                            .map(|(_, target, data)| Call3 {
                                target: *target,
                                allowFailure: true,
                                callData: data.clone(),
                            })
                            .collect(),
                    };
                    requests.push(("eth_call", eth_call_params(multicall, call.abi_encode(), at)));
                    plan.multicalls.push((chunk.to_vec(), requests.len() - 1));
                }
            }
            None => {
                for (query, to, data) in calls {
                    requests.push(("eth_call", eth_call_params(to, data.to_vec(), at)));
                    plan.direct.push((query, requests.len() - 1));
                }
            }
        }
        Ok(plan)
    }

    /// Turn a block's answers into state values. A multicall whose answer cannot be decoded
    /// (no Multicall3 at that block yet, an `eth_call` over the node's gas cap) is read again
    /// without it.
    async fn settle_state(
        &self,
        plan: StatePlan,
        answers: &[Answer],
        block: B256,
    ) -> Result<BTreeMap<StateQuery, StateValue>> {
        let mut out = BTreeMap::new();
        for (query, i) in plan.direct {
            let value = value_of(&query, &answers[i])?;
            out.insert(query, value);
        }
        for (calls, i) in plan.multicalls {
            let decoded = answers[i]
                .as_ref()
                .ok()
                .and_then(|v| serde_json::from_str::<Bytes>(v.get()).ok())
                .and_then(|bytes| aggregate3Call::abi_decode_returns(&bytes).ok())
                .filter(|results| results.len() == calls.len());
            match decoded {
                Some(results) => {
                    for ((query, _, _), result) in calls.into_iter().zip(results) {
                        let value = if result.success {
                            call_value(&query, &result.returnData)
                        } else {
                            StateValue::Failed(revert_reason(&result.returnData))
                        };
                        out.insert(query, value);
                    }
                }
                None => {
                    let at = BlockId::hash(block);
                    let requests: Vec<Request> = calls
                        .iter()
                        .map(|(query, to, data)| match query {
                            StateQuery::NativeBalance(account) => {
                                ("eth_getBalance", json!([account, at]))
                            }
                            _ => ("eth_call", eth_call_params(*to, data.to_vec(), at)),
                        })
                        .collect();
                    let answers = self.batch(requests).await?;
                    for ((query, _, _), answer) in calls.into_iter().zip(&answers) {
                        let value = value_of(&query, answer)?;
                        out.insert(query, value);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `from..=to` cut into at most [`LOG_PIECES`] consecutive pieces of at least
/// [`MIN_LOG_PIECE`] blocks (one piece when the range is shorter).
fn pieces(from: u64, to: u64) -> Vec<(u64, u64)> {
    let blocks = to.saturating_sub(from) + 1;
    let count = blocks.div_ceil(MIN_LOG_PIECE).clamp(1, LOG_PIECES);
    let size = blocks.div_ceil(count);
    (0..count)
        .map(|k| from + k * size)
        .take_while(|start| *start <= to)
        .map(|start| (start, (start + size - 1).min(to)))
        .collect()
}

/// A call-shaped state read: the query, the contract called and the calldata.
type PlannedCall = (StateQuery, Address, Bytes);

/// Which answers hold which state reads.
#[derive(Default)]
struct StatePlan {
    /// A query answered by its own request.
    direct: Vec<(StateQuery, usize)>,
    /// Queries answered together by one `aggregate3`.
    multicalls: Vec<(Vec<PlannedCall>, usize)>,
}

/// An alloy answer as an [`Answer`]: a JSON-RPC error (a revert) is data; a transport failure
/// is an error, so the pool fails over.
fn answer(
    result: alloy::transports::TransportResult<Box<RawValue>>,
) -> alloy::transports::TransportResult<Answer> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => match error.as_error_resp() {
            Some(resp) => Ok(Err(resp.message.to_string())),
            None => Err(error),
        },
    }
}

fn get_logs(blocks: Filter, reads: &Reads<'_>) -> Request {
    let mut filter = blocks.address(reads.addresses.to_vec());
    if !reads.topics.is_empty() {
        filter = filter.event_signature(reads.topics.to_vec());
    }
    ("eth_getLogs", json!([filter]))
}

fn eth_call_params(to: Address, data: Vec<u8>, at: BlockId) -> Value {
    let request = TransactionRequest::default().to(to).input(Bytes::from(data).into());
    json!([request, at])
}

/// The value of `query` from its own request's answer.
fn value_of(query: &StateQuery, answer: &Answer) -> Result<StateValue> {
    let value = match answer {
        // A failing read is kept as `Failed` (a reverting view call is information).
        Err(reason) => return Ok(StateValue::Failed(reason.clone())),
        Ok(value) => value,
    };
    Ok(match query {
        StateQuery::NativeBalance(_) => StateValue::Uint(parse(value, "eth_getBalance")?),
        StateQuery::CodeHash(_) => {
            let code: Bytes = parse(value, "eth_getCode")?;
            StateValue::Word(keccak256(&code))
        }
        StateQuery::Storage { .. } => {
            let word: U256 = parse(value, "eth_getStorageAt")?;
            StateValue::Word(B256::from(word))
        }
        StateQuery::Erc20Balance { .. } | StateQuery::Call { .. } => {
            let bytes: Bytes = parse(value, "eth_call")?;
            call_value(query, &bytes)
        }
    })
}

/// The value of a call-shaped query from what the call returned.
fn call_value(query: &StateQuery, bytes: &Bytes) -> StateValue {
    match query {
        StateQuery::NativeBalance(_) => match getEthBalanceCall::abi_decode_returns(bytes) {
            Ok(balance) => StateValue::Uint(balance),
            Err(e) => StateValue::Failed(format!("getEthBalance returned bad data: {e}")),
        },
        StateQuery::Erc20Balance { .. } => match balanceOfCall::abi_decode_returns(bytes) {
            Ok(balance) => StateValue::Uint(balance),
            Err(e) => StateValue::Failed(format!("balanceOf returned bad data: {e}")),
        },
        _ => StateValue::Bytes(bytes.clone()),
    }
}

/// A revert's reason in the words a node's `eth_call` error uses.
fn revert_reason(data: &[u8]) -> String {
    if data.is_empty() {
        return "execution reverted".to_owned();
    }
    if let Ok(revert) = Revert::abi_decode(data) {
        return format!("execution reverted: {}", revert.reason);
    }
    if let Ok(panic) = Panic::abi_decode(data) {
        return format!("execution reverted: panic 0x{:x}", panic.code);
    }
    format!("execution reverted: custom error 0x{}", alloy::hex::encode(data))
}

/// Convert an RPC log into what the engine consumes.
pub fn observed(log: &Log) -> Result<ObservedLog> {
    Ok(ObservedLog {
        address: log.address(),
        topics: log.topics().to_vec(),
        data: log.data().data.clone(),
        tx_hash: log.transaction_hash.ok_or_else(|| eyre!("log without transaction hash"))?,
        log_index: log.log_index.ok_or_else(|| eyre!("log without index"))?,
    })
}

/// Outcomes of the transactions sent to one of `watched`.
fn tx_outcomes(receipts: Vec<TransactionReceipt>, watched: &BTreeSet<Address>) -> Vec<TxOutcome> {
    receipts
        .into_iter()
        .filter(|r| r.to.is_some_and(|to| watched.contains(&to)))
        .map(|r| TxOutcome { hash: r.transaction_hash, to: r.to, success: r.status() })
        .collect()
}

/// Header of block `number`, or `None` when the node does not have it (yet).
pub async fn header(rpc: &RpcPool, number: u64) -> Result<Option<Header>> {
    let block = rpc
        .call("eth_getBlockByNumber", |p| async move {
            p.client()
                .request::<_, Option<RawHeader>>("eth_getBlockByNumber", (U64::from(number), false))
                .await
        })
        .await?;
    Ok(block.map(Header::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverts_read_like_a_nodes_eth_call_error() {
        assert_eq!(revert_reason(&[]), "execution reverted");
        let reason = Revert { reason: "insolvent".into() }.abi_encode();
        assert_eq!(revert_reason(&reason), "execution reverted: insolvent");
        let panic = Panic { code: U256::from(0x11) }.abi_encode();
        assert_eq!(revert_reason(&panic), "execution reverted: panic 0x11");
        assert_eq!(revert_reason(&[0xde, 0xad]), "execution reverted: custom error 0xdead");
    }

    #[test]
    fn call_answers_decode_per_query() {
        let balance = Bytes::from(U256::from(7).to_be_bytes::<32>().to_vec());
        let native = StateQuery::NativeBalance(Address::ZERO);
        assert_eq!(call_value(&native, &balance), StateValue::Uint(U256::from(7)));
        let erc20 = StateQuery::Erc20Balance { token: Address::ZERO, holder: Address::ZERO };
        assert_eq!(call_value(&erc20, &balance), StateValue::Uint(U256::from(7)));
        assert!(matches!(call_value(&erc20, &Bytes::new()), StateValue::Failed(_)));
        let call = StateQuery::Call { to: Address::ZERO, data: Bytes::new() };
        assert_eq!(call_value(&call, &balance), StateValue::Bytes(balance.clone()));
        assert_eq!(
            value_of(&call, &Err("execution reverted".into())).expect("a revert is data"),
            StateValue::Failed("execution reverted".into())
        );
    }

    #[test]
    fn a_range_is_cut_into_consecutive_pieces() {
        type Range = (u64, u64);
        let table: &[(u64, u64, &[Range])] = &[
            (5, 5, &[(5, 5)]),
            (1, 250, &[(1, 250)]),
            (1, 251, &[(1, 126), (127, 251)]),
            (11, 110, &[(11, 110)]),
            (1, 1000, &[(1, 250), (251, 500), (501, 750), (751, 1000)]),
            (3111, 5110, &[(3111, 3610), (3611, 4110), (4111, 4610), (4611, 5110)]),
            (1, 1001, &[(1, 251), (252, 502), (503, 753), (754, 1001)]),
        ];
        for (from, to, want) in table {
            assert_eq!(pieces(*from, *to), want.to_vec(), "{from}..={to}");
        }
    }
}
