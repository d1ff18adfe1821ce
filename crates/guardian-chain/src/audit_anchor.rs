//! `contracts/src/AuditAnchor.sol`: publish the audit log's head as an event, and find every
//! published head again with `eth_getLogs`.

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256},
    providers::{DynProvider, Provider},
    rpc::types::{Filter, TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol,
    sol_types::{SolCall, SolEvent, SolValue},
};
use eyre::{Result, WrapErr, ensure, eyre};
use guardian_core::audit::Anchor;

use crate::{
    Contracts,
    sender::{SendOptions, send_reliably},
};

sol! {
    /// `contracts/src/AuditAnchor.sol`.
    interface IAuditAnchor {
        event Anchored(uint64 indexed seq, bytes32 head);
        error NotAnchorer(address caller);
        function anchorer() external view returns (address);
        function anchor(uint64 seq, bytes32 head) external;
    }
}

/// Deploy an `AuditAnchor` whose only publisher is `anchorer`, sent by `deployer`; returns its
/// address and the block it was deployed in (where `audit verify --onchain` starts looking).
pub async fn deploy(
    provider: &DynProvider,
    contracts: &Contracts,
    deployer: &PrivateKeySigner,
    anchorer: Address,
) -> Result<(Address, u64)> {
    let contract = contracts.get("AuditAnchor")?;
    let mut code = contract.bytecode.to_vec();
    code.extend_from_slice(&anchorer.abi_encode());
    let request = TransactionRequest::default().from(deployer.address()).with_deploy_code(code);
    provider.call(request.clone()).await.wrap_err("simulating the AuditAnchor deployment")?;
    let receipt = send_reliably(provider, deployer, request, &SendOptions::default()).await?;
    ensure!(
        receipt.status(),
        "the AuditAnchor deployment reverted (tx {})",
        receipt.transaction_hash
    );
    let address = receipt.contract_address.ok_or_else(|| {
        eyre!("the AuditAnchor deployment {} has no address", receipt.transaction_hash)
    })?;
    Ok((address, receipt.block_number.unwrap_or_default()))
}

/// Publish entry `seq`'s hash from `key` (simulated first: a key that is not the anchorer is
/// refused before anything is sent).
pub async fn publish(
    provider: &DynProvider,
    key: &PrivateKeySigner,
    contract: Address,
    seq: u64,
    head: B256,
) -> Result<TransactionReceipt> {
    let data = IAuditAnchor::anchorCall { seq, head }.abi_encode();
    let request = TransactionRequest::default().from(key.address()).to(contract).with_input(data);
    provider.call(request.clone()).await.map_err(|e| {
        eyre!(
            "anchoring entry {seq} on {contract} would revert ({e}); is {} its anchorer?",
            key.address()
        )
    })?;
    let receipt = send_reliably(provider, key, request, &SendOptions::default()).await?;
    ensure!(
        receipt.status(),
        "the anchor of entry {seq} reverted (tx {})",
        receipt.transaction_hash
    );
    Ok(receipt)
}

/// Every head `contract` published between `from` and `to` (inclusive), oldest first, read in
/// ranges of at most `max_range` blocks.
pub async fn anchors(
    provider: &DynProvider,
    contract: Address,
    from: u64,
    to: u64,
    max_range: u64,
) -> Result<Vec<Anchor>> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(max_range.max(1) - 1));
        let filter = Filter::new()
            .address(contract)
            .event_signature(IAuditAnchor::Anchored::SIGNATURE_HASH)
            .from_block(start)
            .to_block(end);
        for log in provider
            .get_logs(&filter)
            .await
            .wrap_err_with(|| format!("eth_getLogs {start}..{end}"))?
        {
            let decoded = log
                .log_decode::<IAuditAnchor::Anchored>()
                .wrap_err("an Anchored log that does not decode")?;
            out.push(Anchor {
                seq: decoded.inner.data.seq,
                head: decoded.inner.data.head,
                tx: log.transaction_hash.unwrap_or_default(),
            });
        }
        start = end + 1;
    }
    Ok(out)
}
