//! Sending a transaction so that it lands, once, without a local nonce counter.
//!
//! Lessons from relayers that jam in production: the nonce comes from the chain every time; a
//! transaction that does not mine in time is replaced (same nonce, fees bumped) rather than
//! duplicated; an RPC error or timeout while sending is followed by a look-up by hash before
//! anything is sent again, because the node may have accepted it. The fee model is read from
//! the chain (EIP-1559 with a base fee, a zero-base-fee network like many Besu chains, or legacy)
//! instead of assumed.

use std::time::{Duration, Instant};

use alloy::{
    eips::{BlockNumberOrTag, eip2718::Encodable2718},
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
};
use eyre::{Result, WrapErr, bail, eyre};
use tracing::{info, warn};

/// How the chain prices gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeModel {
    /// EIP-1559 with a positive base fee.
    Eip1559 {
        /// The latest block's base fee (wei).
        base_fee: u128,
    },
    /// EIP-1559 header field present but zero: a free-gas network (common on Besu).
    ZeroBaseFee,
    /// No base fee: legacy gas price.
    Legacy,
}

/// Read the fee model from the latest block.
pub async fn detect_fee_model(provider: &DynProvider) -> Result<FeeModel> {
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .wrap_err("reading the latest block to detect the fee model")?
        .ok_or_else(|| eyre!("the node returned no latest block"))?;
    Ok(match block.header.base_fee_per_gas {
        Some(0) => FeeModel::ZeroBaseFee,
        Some(base) => FeeModel::Eip1559 { base_fee: u128::from(base) },
        None => FeeModel::Legacy,
    })
}

/// The most one unit of gas would cost a transaction sent now (its first attempt's fees, under
/// the chain's fee model): what `guardian_executor_min_balance_wei` multiplies by the gas of one
/// execution.
pub async fn max_fee_per_gas(provider: &DynProvider) -> Result<u128> {
    let model = detect_fee_model(provider).await?;
    Ok(initial_fees(provider, model).await?.max_per_gas())
}

/// Knobs for [`send_reliably`].
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Percent added to the gas estimate.
    pub gas_headroom_percent: u64,
    /// Replace the transaction when it is not mined after this long.
    pub replace_after: Duration,
    /// Percent added to the fees on each replacement (nodes demand at least 10).
    pub fee_bump_percent: u128,
    /// Give up after this many replacements.
    pub max_replacements: u32,
    /// How often to poll for the receipt.
    pub poll: Duration,
    /// Pay at least this priority fee per gas (wei): to be ordered before a pending
    /// transaction in a pool ordered by fees (pre-emption). The max fee rises with it.
    pub min_tip: Option<u128>,
    /// Told each hash the node accepted (the first send and every replacement), as it is
    /// accepted: so a caller can record "sent" before "mined".
    pub on_sent: Option<tokio::sync::mpsc::UnboundedSender<B256>>,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            gas_headroom_percent: 25,
            replace_after: Duration::from_secs(30),
            fee_bump_percent: 20,
            max_replacements: 5,
            poll: Duration::from_millis(250),
            min_tip: None,
            on_sent: None,
        }
    }
}

/// Fees for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fees {
    Eip1559 { max_fee: u128, tip: u128 },
    Legacy { gas_price: u128 },
}

impl Fees {
    /// These fees with a priority fee of at least `tip` (a gas price of at least it, on a
    /// legacy chain), the max fee raised by the same amount.
    fn at_least(self, tip: u128) -> Self {
        match self {
            Self::Eip1559 { max_fee, tip: current } if current < tip => {
                Self::Eip1559 { max_fee: max_fee.saturating_add(tip - current), tip }
            }
            Self::Legacy { gas_price } if gas_price < tip => Self::Legacy { gas_price: tip },
            other => other,
        }
    }

    fn bumped(self, percent: u128) -> Self {
        // At least +1 wei so a zero-fee transaction can still be replaced.
        let bump = |v: u128| v + (v * percent).div_ceil(100).max(1);
        match self {
            Self::Eip1559 { max_fee, tip } => {
                Self::Eip1559 { max_fee: bump(max_fee), tip: bump(tip) }
            }
            Self::Legacy { gas_price } => Self::Legacy { gas_price: bump(gas_price) },
        }
    }

    /// The most one unit of gas can cost at these fees.
    fn max_per_gas(self) -> u128 {
        match self {
            Self::Eip1559 { max_fee, .. } => max_fee,
            Self::Legacy { gas_price } => gas_price,
        }
    }

    fn apply(self, request: TransactionRequest) -> TransactionRequest {
        match self {
            Self::Eip1559 { max_fee, tip } => {
                request.max_fee_per_gas(max_fee).max_priority_fee_per_gas(tip)
            }
            Self::Legacy { gas_price } => request.gas_price(gas_price),
        }
    }
}

async fn initial_fees(provider: &DynProvider, model: FeeModel) -> Result<Fees> {
    Ok(match model {
        FeeModel::Eip1559 { base_fee } => {
            let tip = provider.get_max_priority_fee_per_gas().await.unwrap_or(1_000_000_000);
            Fees::Eip1559 { max_fee: base_fee.saturating_mul(2).saturating_add(tip), tip }
        }
        FeeModel::ZeroBaseFee => {
            let tip = provider.get_max_priority_fee_per_gas().await.unwrap_or(0);
            Fees::Eip1559 { max_fee: tip, tip }
        }
        FeeModel::Legacy => {
            Fees::Legacy { gas_price: provider.get_gas_price().await.wrap_err("eth_gasPrice")? }
        }
    })
}

/// Test-only: when set, the process aborts right after a transaction was accepted by the node
/// and before anything recorded it, as a `kill -9` at the worst moment would. Never set it in
/// production.
pub const CRASH_AFTER_SEND_ENV: &str = "GUARDIAN_TEST_CRASH_AFTER_SEND";

fn crash_after_send() {
    if std::env::var_os(CRASH_AFTER_SEND_ENV).is_some() {
        tracing::error!(
            "{CRASH_AFTER_SEND_ENV} is set: aborting after the send, before the record"
        );
        std::process::abort();
    }
}

/// Test-only: when set, the process aborts right before a transaction is broadcast (signed,
/// simulated, never sent), as a `kill -9` just before the send would. Never set it in
/// production.
pub const CRASH_BEFORE_SEND_ENV: &str = "GUARDIAN_TEST_CRASH_BEFORE_SEND";

fn crash_before_send() {
    if std::env::var_os(CRASH_BEFORE_SEND_ENV).is_some() {
        tracing::error!("{CRASH_BEFORE_SEND_ENV} is set: aborting before the send");
        std::process::abort();
    }
}

/// Sign `request` with `signer` and get it mined: chain-derived nonce, estimated gas with
/// headroom, fees for the chain's model, replacement when stuck, look-up by hash after errors.
///
/// `request` must already have been simulated by the caller; this function only delivers it.
pub async fn send_reliably(
    provider: &DynProvider,
    signer: &PrivateKeySigner,
    request: TransactionRequest,
    options: &SendOptions,
) -> Result<TransactionReceipt> {
    let from: Address = signer.address();
    let wallet = EthereumWallet::from(signer.clone());
    let chain_id = provider.get_chain_id().await.wrap_err("eth_chainId")?;
    let nonce = provider
        .get_transaction_count(from)
        .pending()
        .await
        .wrap_err_with(|| format!("reading the nonce of executor {from}"))?;
    let request = request.from(from).nonce(nonce).with_chain_id(chain_id);
    let estimate = provider
        .estimate_gas(request.clone())
        .await
        .wrap_err("estimating gas (eth_estimateGas)")?;
    let gas = estimate.saturating_mul(100 + options.gas_headroom_percent) / 100;
    let request = request.gas_limit(gas);
    let model = detect_fee_model(provider).await?;
    let mut fees = initial_fees(provider, model).await?;
    if let Some(tip) = options.min_tip {
        fees = fees.at_least(tip);
    }
    // A sender that cannot pay is refused before anything is signed, with the figures: the
    // node would reject it anyway, and retrying for minutes would only hide why.
    let balance = provider
        .get_balance(from)
        .await
        .wrap_err_with(|| format!("reading the balance of executor {from}"))?;
    let needed = U256::from(gas).saturating_mul(U256::from(fees.max_per_gas()));
    if balance < needed {
        bail!(
            "executor {from} holds {balance} wei but the transaction may cost up to {needed} wei \
             ({gas} gas at {} wei): fund the executor",
            fees.max_per_gas()
        );
    }

    let mut sent: Vec<B256> = Vec::new();
    for attempt in 0..=options.max_replacements {
        let envelope =
            fees.apply(request.clone()).build(&wallet).await.wrap_err("signing the transaction")?;
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        let mut in_flight = true;
        crash_before_send();
        match provider.send_raw_transaction(&raw).await {
            Ok(_) => {
                info!(%hash, nonce, attempt, ?fees, "transaction sent");
                crash_after_send();
                if let Some(on_sent) = &options.on_sent {
                    let _ = on_sent.send(hash);
                }
            }
            Err(error) => {
                // The node may have accepted it before the error: look before resending.
                warn!(%hash, error = %error, "sending failed; checking whether the node has it");
                if let Some(receipt) = find_receipt(provider, &sent, hash).await? {
                    return Ok(receipt);
                }
                let known = provider.get_transaction_by_hash(hash).await.ok().flatten().is_some();
                // A JSON-RPC error is the node's answer: it refused this transaction. When it
                // is the first one there is nothing in flight to wait for.
                let refused = error.as_error_resp().is_some();
                if !known && sent.is_empty() && (refused || attempt == options.max_replacements) {
                    return Err(eyre!(error)).wrap_err("sending the transaction");
                }
                // A replacement refused (underpriced, …) is not in flight; the earlier ones may
                // still mine, so they are waited for before the next, higher bump.
                in_flight = known || !refused;
            }
        }
        if in_flight {
            sent.push(hash);
        }

        let deadline = Instant::now() + options.replace_after;
        while Instant::now() < deadline {
            if let Some(receipt) = find_receipt(provider, &sent, hash).await? {
                return Ok(receipt);
            }
            // Our nonce moved on without any of our hashes: something else used it.
            let confirmed = provider.get_transaction_count(from).await.unwrap_or(nonce);
            if confirmed > nonce {
                tokio::time::sleep(options.poll).await;
                if let Some(receipt) = find_receipt(provider, &sent, hash).await? {
                    return Ok(receipt);
                }
                bail!("nonce {nonce} of {from} was used by another transaction");
            }
            tokio::time::sleep(options.poll).await;
        }
        warn!(%hash, nonce, "not mined in {:?}; replacing with higher fees", options.replace_after);
        fees = fees.bumped(options.fee_bump_percent);
    }
    bail!(
        "transaction from {from} with nonce {nonce} not mined after {} replacements (hashes {sent:?})",
        options.max_replacements
    )
}

async fn find_receipt(
    provider: &DynProvider,
    sent: &[B256],
    latest: B256,
) -> Result<Option<TransactionReceipt>> {
    for hash in sent.iter().chain(std::iter::once(&latest)) {
        if let Ok(Some(receipt)) = provider.get_transaction_receipt(*hash).await {
            return Ok(Some(receipt));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_are_at_least_the_percentage_and_never_zero() {
        let fees = Fees::Eip1559 { max_fee: 100, tip: 10 }.bumped(20);
        assert_eq!(fees, Fees::Eip1559 { max_fee: 120, tip: 12 });
        assert_eq!(Fees::Legacy { gas_price: 0 }.bumped(20), Fees::Legacy { gas_price: 1 });
        assert_eq!(Fees::Legacy { gas_price: 7 }.bumped(10), Fees::Legacy { gas_price: 8 });
    }

    #[test]
    fn a_minimum_tip_raises_the_tip_and_the_max_fee_alike() {
        let fees = Fees::Eip1559 { max_fee: 100, tip: 10 };
        assert_eq!(fees.at_least(50), Fees::Eip1559 { max_fee: 140, tip: 50 });
        assert_eq!(fees.at_least(5), fees, "never lowered");
        assert_eq!(Fees::Legacy { gas_price: 7 }.at_least(9), Fees::Legacy { gas_price: 9 });
    }
}
