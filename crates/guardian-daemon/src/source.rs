//! Reading what the rule engine needs from the chain, through the endpoint pool.

use std::collections::{BTreeMap, BTreeSet};

use alloy::{
    eips::{BlockId, BlockNumberOrTag},
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::Provider,
    rpc::types::{Filter, Log, TransactionRequest},
    sol_types::SolCall,
};
use eyre::{Result, eyre};
use guardian_core::finding::{ObservedLog, StateQuery, StateValue, TxOutcome};
use guardian_rpc::RpcPool;
use guardian_store::BlockRef;

alloy::sol! {
    function balanceOf(address holder) external view returns (uint256);
}

/// A block header as the follower needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Number, hash and parent hash.
    pub block: BlockRef,
    /// Timestamp in seconds.
    pub timestamp: u64,
}

/// Header of block `number`, or `None` when the node does not have it (yet).
pub async fn header(rpc: &RpcPool, number: u64) -> Result<Option<Header>> {
    let block = rpc
        .call("eth_getBlockByNumber", |p| async move {
            p.get_block_by_number(BlockNumberOrTag::Number(number)).await
        })
        .await?;
    Ok(block.map(|b| Header {
        block: BlockRef {
            number: b.header.number,
            hash: b.header.hash,
            parent_hash: b.header.parent_hash,
        },
        timestamp: b.header.timestamp,
    }))
}

/// Logs of `addresses` (restricted to `topics` when not empty) in blocks `from..=to`.
pub async fn logs(
    rpc: &RpcPool,
    from: u64,
    to: u64,
    addresses: &[Address],
    topics: &[B256],
) -> Result<Vec<Log>> {
    get_logs(rpc, Filter::new().from_block(from).to_block(to), addresses, topics).await
}

/// Logs of one block, by hash (so a reorg between header and logs cannot mix two branches).
pub async fn block_logs(
    rpc: &RpcPool,
    hash: B256,
    addresses: &[Address],
    topics: &[B256],
) -> Result<Vec<Log>> {
    get_logs(rpc, Filter::new().at_block_hash(hash), addresses, topics).await
}

async fn get_logs(
    rpc: &RpcPool,
    blocks: Filter,
    addresses: &[Address],
    topics: &[B256],
) -> Result<Vec<Log>> {
    let mut filter = blocks.address(addresses.to_vec());
    if !topics.is_empty() {
        filter = filter.event_signature(topics.to_vec());
    }
    Ok(rpc
        .call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move { p.get_logs(&filter).await }
        })
        .await?)
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

/// Outcomes of the transactions in block `hash` sent to one of `watched`.
pub async fn tx_outcomes(
    rpc: &RpcPool,
    hash: B256,
    watched: &BTreeSet<Address>,
) -> Result<Vec<TxOutcome>> {
    let receipts =
        rpc.call("eth_getBlockReceipts", |p| async move {
            p.get_block_receipts(BlockId::hash(hash)).await
        })
        .await?
        .ok_or_else(|| eyre!("node has no receipts for block {hash}"))?;
    Ok(receipts
        .into_iter()
        .filter(|r| r.to.is_some_and(|to| watched.contains(&to)))
        .map(|r| TxOutcome { hash: r.transaction_hash, to: r.to, success: r.status() })
        .collect())
}

/// Answer every query at block `hash`. A failing read is kept as [`StateValue::Failed`] (a
/// reverting view call is information); only transport failures are errors.
pub async fn read_state(
    rpc: &RpcPool,
    hash: B256,
    queries: &BTreeSet<StateQuery>,
) -> Result<BTreeMap<StateQuery, StateValue>> {
    let mut out = BTreeMap::new();
    let at = BlockId::hash(hash);
    for query in queries {
        let value = match query {
            StateQuery::NativeBalance(account) => {
                let account = *account;
                StateValue::Uint(
                    rpc.call("eth_getBalance", |p| async move {
                        p.get_balance(account).block_id(at).await
                    })
                    .await?,
                )
            }
            StateQuery::CodeHash(account) => {
                let account = *account;
                let code: Bytes =
                    rpc.call("eth_getCode", |p| async move {
                        p.get_code_at(account).block_id(at).await
                    })
                    .await?;
                StateValue::Word(keccak256(&code))
            }
            StateQuery::Storage { address, slot } => {
                let (address, slot) = (*address, U256::from_be_bytes(slot.0));
                let word: U256 = rpc
                    .call("eth_getStorageAt", |p| async move {
                        p.get_storage_at(address, slot).block_id(at).await
                    })
                    .await?;
                StateValue::Word(B256::from(word))
            }
            StateQuery::Erc20Balance { token, holder } => {
                let data: Bytes = balanceOfCall { holder: *holder }.abi_encode().into();
                match eth_call(rpc, *token, data, at).await? {
                    Ok(bytes) => match balanceOfCall::abi_decode_returns(&bytes) {
                        Ok(balance) => StateValue::Uint(balance),
                        Err(e) => StateValue::Failed(format!("balanceOf returned bad data: {e}")),
                    },
                    Err(reason) => StateValue::Failed(reason),
                }
            }
            StateQuery::Call { to, data } => match eth_call(rpc, *to, data.clone(), at).await? {
                Ok(bytes) => StateValue::Bytes(bytes),
                Err(reason) => StateValue::Failed(reason),
            },
        };
        out.insert(query.clone(), value);
    }
    Ok(out)
}

/// `eth_call`; the inner `Err` is a revert (with its reason), the outer one a transport failure.
async fn eth_call(
    rpc: &RpcPool,
    to: Address,
    data: Bytes,
    at: BlockId,
) -> Result<std::result::Result<Bytes, String>> {
    Ok(rpc
        .call("eth_call", |p| {
            let request = TransactionRequest::default().to(to).input(data.clone().into());
            async move {
                match p.call(request).block(at).await {
                    Ok(bytes) => Ok(Ok(bytes)),
                    Err(error) => match error.as_error_resp() {
                        // The node answered: the call reverted. That is data, not an outage.
                        Some(resp) => Ok(Err(resp.message.to_string())),
                        None => Err(error),
                    },
                }
            }
        })
        .await?)
}
