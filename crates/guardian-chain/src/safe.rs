//! Deploying and driving a Safe 1.4.1.
//!
//! Chain 138 has no official Safe deployment, so guardian deploys the singleton, the proxy factory
//! and the fallback handler itself, then creates Safes through the factory exactly as the Safe
//! tooling does. Execution always simulates first (`eth_call` of `execTransaction`) and refuses
//! to send a transaction that would revert, explaining the Safe's `GSxxx` code.

use alloy::{
    contract::Error as ContractError,
    eips::BlockId,
    network::TransactionBuilder,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
    sol_types::{SolError, SolEvent, SolValue},
};
use eyre::{Result, WrapErr, ensure, eyre};
use guardian_core::safe::{Approvals, SafeTx, explain_error_code};
use tracing::{debug, info};

use crate::{
    CompiledContract, Contracts,
    sender::{SendOptions, send_reliably},
};

/// The Safe version guardian speaks.
pub const SAFE_VERSION: &str = "1.4.1";

/// Solidity bindings generated from the ABIs guardian calls.
#[allow(clippy::too_many_arguments, reason = "generated from the Safe ABI, arguments as on chain")]
mod bindings {
    use alloy::sol;

    sol! {
        /// The parts of Safe 1.4.1 guardian uses.
        #[sol(rpc)]
        interface ISafe {
            function setup(address[] owners, uint256 threshold, address to, bytes data, address fallbackHandler, address paymentToken, uint256 payment, address paymentReceiver) external;
            function execTransaction(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes signatures) external payable returns (bool success);
            function getTransactionHash(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, uint256 nonce) external view returns (bytes32);
            function domainSeparator() external view returns (bytes32);
            function nonce() external view returns (uint256);
            function getThreshold() external view returns (uint256);
            function getOwners() external view returns (address[]);
            function isOwner(address owner) external view returns (bool);
            function approveHash(bytes32 hashToApprove) external;
            function approvedHashes(address owner, bytes32 hash) external view returns (uint256);
            function VERSION() external view returns (string);

            event ExecutionSuccess(bytes32 indexed txHash, uint256 payment);
            event ExecutionFailure(bytes32 indexed txHash, uint256 payment);
            event ApproveHash(bytes32 indexed approvedHash, address indexed owner);
        }

        /// Safe 1.4.1's proxy factory.
        #[sol(rpc)]
        interface ISafeProxyFactory {
            function createProxyWithNonce(address singleton, bytes initializer, uint256 saltNonce) external returns (address proxy);
            event ProxyCreation(address indexed proxy, address singleton);
        }

        /// OpenZeppelin `Pausable` with owner-gated `pause()` / `unpause()`.
        #[sol(rpc)]
        interface IPausable {
            function pause() external;
            function unpause() external;
            function paused() external view returns (bool);
            event Paused(address account);
            event Unpaused(address account);
        }
    }
}
pub use bindings::{IPausable, ISafe, ISafeProxyFactory};

/// Deploy `contract` with ABI-encoded constructor `args`; returns its address.
pub async fn deploy(
    provider: &DynProvider,
    contract: &CompiledContract,
    args: &[u8],
) -> Result<Address> {
    let mut code = contract.bytecode.to_vec();
    code.extend_from_slice(args);
    let request = TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(request)
        .await
        .wrap_err_with(|| format!("sending the deployment of {}", contract.name))?
        .get_receipt()
        .await
        .wrap_err_with(|| format!("waiting for the deployment of {}", contract.name))?;
    ensure!(
        receipt.status(),
        "deployment of {} reverted (tx {})",
        contract.name,
        receipt.transaction_hash
    );
    let address = receipt
        .contract_address
        .ok_or_else(|| eyre!("deployment of {} has no contract address", contract.name))?;
    debug!(contract = %contract.name, %address, "deployed");
    Ok(address)
}

/// The three shared contracts every Safe on a chain uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafeSingletons {
    /// `Safe` 1.4.1 singleton (the proxies' implementation).
    pub singleton: Address,
    /// `SafeProxyFactory`.
    pub proxy_factory: Address,
    /// `CompatibilityFallbackHandler` (EIP-1271 and friends).
    pub fallback_handler: Address,
}

impl SafeSingletons {
    /// Deploy the singleton, the proxy factory and the fallback handler from `contracts/`.
    pub async fn deploy(provider: &DynProvider, contracts: &Contracts) -> Result<Self> {
        let singleton = deploy(provider, contracts.get("Safe")?, &[]).await?;
        let proxy_factory = deploy(provider, contracts.get("SafeProxyFactory")?, &[]).await?;
        let fallback_handler =
            deploy(provider, contracts.get("CompatibilityFallbackHandler")?, &[]).await?;
        Ok(Self { singleton, proxy_factory, fallback_handler })
    }

    /// Create a Safe proxy with `owners` and `threshold` through the factory.
    pub async fn create_safe(
        &self,
        provider: &DynProvider,
        owners: &[Address],
        threshold: u64,
        salt_nonce: U256,
    ) -> Result<Address> {
        ensure!(!owners.is_empty(), "a Safe needs at least one owner");
        ensure!(
            threshold >= 1 && threshold as usize <= owners.len(),
            "threshold {threshold} must be between 1 and the number of owners ({})",
            owners.len()
        );
        let initializer = ISafe::setupCall {
            owners: owners.to_vec(),
            threshold: U256::from(threshold),
            to: Address::ZERO,
            data: Bytes::new(),
            fallbackHandler: self.fallback_handler,
            paymentToken: Address::ZERO,
            payment: U256::ZERO,
            paymentReceiver: Address::ZERO,
        };
        let factory = ISafeProxyFactory::new(self.proxy_factory, provider);
        let call = factory.createProxyWithNonce(
            self.singleton,
            alloy::sol_types::SolCall::abi_encode(&initializer).into(),
            salt_nonce,
        );
        let receipt = call
            .send()
            .await
            .map_err(|e| explain_contract_error(e, "createProxyWithNonce"))?
            .get_receipt()
            .await
            .wrap_err("waiting for the Safe proxy creation")?;
        ensure!(receipt.status(), "Safe proxy creation reverted (tx {})", receipt.transaction_hash);
        let proxy = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<ISafeProxyFactory::ProxyCreation>().ok())
            .map(|log| log.inner.data.proxy)
            .ok_or_else(|| eyre!("no ProxyCreation event in tx {}", receipt.transaction_hash))?;
        info!(safe = %proxy, ?owners, threshold, "created Safe");
        Ok(proxy)
    }
}

/// What an `execTransaction` did.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The Ethereum transaction that carried it.
    pub receipt: TransactionReceipt,
    /// True when the Safe emitted `ExecutionSuccess` for our `safeTxHash`.
    pub success: bool,
}

/// A handle on one deployed Safe, bound to the chain id the node reports.
#[derive(Debug, Clone)]
pub struct SafeClient {
    address: Address,
    chain_id: u64,
    provider: DynProvider,
}

impl SafeClient {
    /// Connect to the Safe at `address`, checking it runs Safe 1.4.1.
    pub async fn connect(provider: DynProvider, address: Address) -> Result<Self> {
        let chain_id = provider.get_chain_id().await.wrap_err("reading eth_chainId")?;
        let version = ISafe::new(address, &provider)
            .VERSION()
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "VERSION()"))
            .wrap_err_with(|| format!("{address} does not answer as a Safe"))?;
        ensure!(
            version == SAFE_VERSION,
            "the Safe at {address} is version {version}; guardian speaks Safe {SAFE_VERSION}"
        );
        Ok(Self { address, chain_id, provider })
    }

    /// The Safe's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain id the Safe's EIP-712 domain is bound to.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The node's head block number: read first, it pins several reads to one block.
    pub async fn head(&self) -> Result<u64> {
        self.provider.get_block_number().await.wrap_err("reading eth_blockNumber")
    }

    fn contract(&self) -> ISafe::ISafeInstance<&DynProvider> {
        ISafe::new(self.address, &self.provider)
    }

    /// The next nonce `execTransaction` will consume.
    pub async fn nonce(&self) -> Result<U256> {
        self.contract().nonce().call().await.map_err(|e| explain_contract_error(e, "nonce()"))
    }

    /// The nonce in the node's pending state: above [`SafeClient::nonce`] when an execution
    /// of the current nonce waits in the node's pool (a node without a pending state answers
    /// the latest).
    pub async fn pending_nonce(&self) -> Result<U256> {
        self.contract()
            .nonce()
            .call()
            .block(BlockId::pending())
            .await
            .map_err(|e| explain_contract_error(e, "nonce() at the pending block"))
    }

    /// How many owner approvals execution needs.
    pub async fn threshold(&self) -> Result<u64> {
        self.threshold_at(BlockId::latest()).await
    }

    /// [`SafeClient::threshold`] at `block`.
    pub async fn threshold_at(&self, block: BlockId) -> Result<u64> {
        let t = self
            .contract()
            .getThreshold()
            .call()
            .block(block)
            .await
            .map_err(|e| explain_contract_error(e, "getThreshold()"))?;
        u64::try_from(t).map_err(|_| eyre!("threshold {t} does not fit in u64"))
    }

    /// Current owners.
    pub async fn owners(&self) -> Result<Vec<Address>> {
        self.owners_at(BlockId::latest()).await
    }

    /// [`SafeClient::owners`] at `block`.
    pub async fn owners_at(&self, block: BlockId) -> Result<Vec<Address>> {
        self.contract()
            .getOwners()
            .call()
            .block(block)
            .await
            .map_err(|e| explain_contract_error(e, "getOwners()"))
    }

    /// `domainSeparator()` as the contract computes it.
    pub async fn onchain_domain_separator(&self) -> Result<B256> {
        self.contract()
            .domainSeparator()
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "domainSeparator()"))
    }

    /// `getTransactionHash(...)` as the contract computes it.
    pub async fn onchain_tx_hash(&self, tx: &SafeTx) -> Result<B256> {
        self.contract()
            .getTransactionHash(
                tx.to,
                tx.value,
                tx.data.clone(),
                tx.operation,
                tx.safeTxGas,
                tx.baseGas,
                tx.gasPrice,
                tx.gasToken,
                tx.refundReceiver,
                tx.nonce,
            )
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "getTransactionHash()"))
    }

    /// `safeTxHash` computed locally for this Safe and chain.
    pub fn tx_hash(&self, tx: &SafeTx) -> B256 {
        tx.safe_tx_hash(self.chain_id, self.address)
    }

    /// Whether `owner` has called `approveHash(hash)`.
    pub async fn is_hash_approved(&self, owner: Address, hash: B256) -> Result<bool> {
        self.is_hash_approved_at(owner, hash, BlockId::latest()).await
    }

    /// [`SafeClient::is_hash_approved`] at `block`.
    pub async fn is_hash_approved_at(
        &self,
        owner: Address,
        hash: B256,
        block: BlockId,
    ) -> Result<bool> {
        let approved = self
            .contract()
            .approvedHashes(owner, hash)
            .call()
            .block(block)
            .await
            .map_err(|e| explain_contract_error(e, "approvedHashes()"))?;
        Ok(!approved.is_zero())
    }

    /// Approve `hash` on chain as `owner`, sent through `from`: a provider that signs as
    /// `owner`, or (on an Anvil fork) one whose node impersonates it. The call is simulated as
    /// `owner` first, so a non-owner is refused before anything is sent.
    pub async fn approve_hash_onchain(
        &self,
        from: &DynProvider,
        owner: Address,
        hash: B256,
    ) -> Result<TransactionReceipt> {
        let safe = ISafe::new(self.address, from);
        let call = safe.approveHash(hash).from(owner);
        call.call().await.map_err(|e| explain_contract_error(e, "approveHash()"))?;
        let receipt = call
            .send()
            .await
            .map_err(|e| explain_contract_error(e, "approveHash()"))?
            .get_receipt()
            .await
            .wrap_err("waiting for approveHash")?;
        ensure!(receipt.status(), "approveHash({hash}) reverted (tx {})", receipt.transaction_hash);
        Ok(receipt)
    }

    /// Simulate, then send `execTransaction` for `tx` with `approvals`, signed by `executor`
    /// (any funded key: the Safe checks the owners' approvals, not the sender).
    ///
    /// Refuses (without sending anything) when the simulation reverts, naming the Safe's reason.
    /// Delivery goes through [`send_reliably`](crate::sender::send_reliably): chain-derived
    /// nonce, fee model read from the chain, replacement when stuck.
    pub async fn execute(
        &self,
        executor: &PrivateKeySigner,
        tx: &SafeTx,
        approvals: &Approvals,
        options: &SendOptions,
    ) -> Result<Execution> {
        let safe_tx_hash = self.tx_hash(tx);
        let calldata = self.exec_calldata(tx, approvals);
        let request = TransactionRequest::default()
            .from(executor.address())
            .to(self.address)
            .input(calldata.clone().into());
        match self.provider.call(request.clone()).await {
            Ok(ret) => {
                let ok = ISafe::execTransactionCall::abi_decode_returns(&ret).unwrap_or(false);
                ensure!(
                    ok,
                    "simulated execTransaction of {safe_tx_hash} returns false; not sending"
                );
            }
            Err(error) => {
                return Err(explain_rpc_error(error, "execTransaction").wrap_err(format!(
                    "simulation of execTransaction for safeTxHash {safe_tx_hash} on Safe {} failed; nothing was sent",
                    self.address
                )));
            }
        }
        let receipt = send_reliably(&self.provider, executor, request, options).await?;
        let success = receipt.status()
            && receipt.inner.logs().iter().any(|log| {
                log.address() == self.address
                    && log.topics().first() == Some(&ISafe::ExecutionSuccess::SIGNATURE_HASH)
                    && log.topics().get(1) == Some(&safe_tx_hash)
            });
        info!(safe = %self.address, %safe_tx_hash, tx = %receipt.transaction_hash, success, "execTransaction mined");
        Ok(Execution { receipt, success })
    }

    /// ABI-encoded `execTransaction(...)` for `tx` with `approvals` (ordered by owner).
    pub fn exec_calldata(&self, tx: &SafeTx, approvals: &Approvals) -> Bytes {
        ISafe::execTransactionCall {
            to: tx.to,
            value: tx.value,
            data: tx.data.clone(),
            operation: tx.operation,
            safeTxGas: tx.safeTxGas,
            baseGas: tx.baseGas,
            gasPrice: tx.gasPrice,
            gasToken: tx.gasToken,
            refundReceiver: tx.refundReceiver,
            signatures: approvals.encode(),
        }
        .abi_encode()
        .into()
    }
}

/// Whether the OpenZeppelin-Pausable contract at `target` is paused.
pub async fn is_paused(provider: &DynProvider, target: Address) -> Result<bool> {
    IPausable::new(target, provider)
        .paused()
        .call()
        .await
        .map_err(|e| explain_contract_error(e, "paused()"))
        .wrap_err_with(|| format!("reading paused() of {target}"))
}

/// Turn an alloy contract error into one that carries the revert reason and, for Safe `GSxxx`
/// codes, what they mean.
pub fn explain_contract_error(error: ContractError, what: &str) -> eyre::Report {
    let reason = error
        .as_revert_data()
        .and_then(|data| alloy::sol_types::Revert::abi_decode(&data).ok())
        .map(|revert| revert.reason);
    explain_reason(reason, what, || eyre::Report::new(error))
}

/// Like [`explain_contract_error`], for a raw RPC error (e.g. a failed `eth_call`).
pub fn explain_rpc_error(error: alloy::transports::TransportError, what: &str) -> eyre::Report {
    let reason = error
        .as_error_resp()
        .and_then(|resp| resp.as_revert_data())
        .and_then(|data| alloy::sol_types::Revert::abi_decode(&data).ok())
        .map(|revert| revert.reason);
    explain_reason(reason, what, || eyre::Report::new(error))
}

fn explain_reason(
    reason: Option<String>,
    what: &str,
    otherwise: impl FnOnce() -> eyre::Report,
) -> eyre::Report {
    match reason {
        Some(code) => match explain_error_code(&code) {
            Some(meaning) => eyre!("{what} reverted with {code}: {meaning}"),
            None => eyre!("{what} reverted: {code}"),
        },
        None => otherwise().wrap_err(format!("{what} failed")),
    }
}

/// `eth_call` of `calldata` on `target` from `safe`: does the Safe's pause (or unpause) go
/// through right now? A revert is explained for the operator ("the Safe is not the owner …",
/// "already paused …") where its data allows.
pub async fn simulate_as_safe(
    provider: &DynProvider,
    safe: Address,
    target: Address,
    calldata: Bytes,
) -> Result<()> {
    let request = TransactionRequest::default().from(safe).to(target).with_input(calldata);
    provider.call(request).await.map(drop).map_err(|error| {
        let why = error
            .as_error_resp()
            .and_then(|resp| resp.as_revert_data())
            .and_then(|data| guardian_core::proposal::explain_revert(&data, safe));
        match why {
            Some(why) => eyre!("{why}"),
            None => eyre::Report::new(error),
        }
    })
}

/// ABI-encode one address (a constructor argument).
pub fn encode_address(address: Address) -> Vec<u8> {
    address.abi_encode()
}

/// Sign `safe_tx_hash` as a Safe owner (plain EIP-712 signature, v = 27/28).
pub fn sign_safe_tx_hash(
    signer: &alloy::signers::local::PrivateKeySigner,
    safe_tx_hash: B256,
) -> Result<guardian_core::safe::OwnerApproval> {
    Ok(guardian_core::safe::OwnerApproval::Signature(sign_hash(signer, safe_tx_hash)?))
}

/// [`sign_safe_tx_hash`] as the 65 bytes (r, s, v) that the Safe and guardian's API take.
pub fn owner_signature(
    signer: &alloy::signers::local::PrivateKeySigner,
    safe_tx_hash: B256,
) -> Result<[u8; 65]> {
    Ok(sign_hash(signer, safe_tx_hash)?.as_bytes())
}

fn sign_hash(
    signer: &alloy::signers::local::PrivateKeySigner,
    safe_tx_hash: B256,
) -> Result<alloy::signers::Signature> {
    use alloy::signers::SignerSync;
    signer
        .sign_hash_sync(&safe_tx_hash)
        .wrap_err_with(|| format!("signing safeTxHash {safe_tx_hash}"))
}
