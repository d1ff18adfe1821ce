//! The Safe itself: our hashing agrees with the contract, and pause() goes through only with
//! the threshold of owner approvals.

use alloy::{
    primitives::{Address, Bytes, U256},
    providers::Provider,
    sol_types::SolCall,
};
use guardian_chain::{
    safe::{IPausable, is_paused, sign_safe_tx_hash},
    sender::SendOptions,
};
use guardian_core::safe::{Approvals, OwnerApproval, SafeTx, domain_separator};

use crate::support::{contracts, testbed};

fn pause_tx(target: Address, nonce: U256) -> SafeTx {
    SafeTx::call(target, U256::ZERO, IPausable::pauseCall {}.abi_encode().into(), nonce)
}

#[tokio::test]
async fn rust_hashes_equal_the_safe_contract() {
    let bed = testbed().await;
    assert_eq!(bed.safe.chain_id(), 138);
    assert_eq!(
        bed.safe.onchain_domain_separator().await.expect("domainSeparator"),
        domain_separator(138, bed.safe.address())
    );
    let nonce = bed.safe.nonce().await.expect("nonce");
    for tx in [
        pause_tx(bed.targets.vault_v2, nonce),
        pause_tx(bed.targets.factory, nonce + U256::from(5)),
        SafeTx::call(bed.targets.vault_v1, U256::from(1), Bytes::from(vec![0xab; 100]), nonce),
    ] {
        assert_eq!(
            bed.safe.onchain_tx_hash(&tx).await.expect("getTransactionHash"),
            tx.safe_tx_hash(138, bed.safe.address())
        );
    }
}

#[tokio::test]
async fn two_of_three_pause_executes() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v2;
    assert!(!is_paused(&reader, target).await.expect("paused()"));

    let nonce = bed.safe.nonce().await.expect("nonce");
    let tx = pause_tx(target, nonce);
    let hash = bed.safe.tx_hash(&tx);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|owner| (owner.address(), sign_safe_tx_hash(owner, hash).expect("sign")))
        .collect();

    let execution = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect("executes");
    assert!(execution.success, "ExecutionSuccess for our safeTxHash");
    assert!(is_paused(&reader, target).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce + U256::from(1));
}

#[tokio::test]
async fn one_of_three_is_refused_and_nothing_is_sent() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let target = bed.targets.factory;
    let executor = bed.deployer.address();
    let sent_before = reader.get_transaction_count(executor).await.expect("nonce");

    let nonce = bed.safe.nonce().await.expect("nonce");
    let tx = pause_tx(target, nonce);
    let hash = bed.safe.tx_hash(&tx);
    let approvals: Approvals =
        [(bed.owners[0].address(), sign_safe_tx_hash(&bed.owners[0], hash).expect("sign"))]
            .into_iter()
            .collect();

    let err = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect_err("below threshold");
    let msg = format!("{err:#}");
    assert!(msg.contains("GS020"), "{msg}");
    assert!(msg.contains("nothing was sent"), "{msg}");
    assert!(!is_paused(&reader, target).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce, "Safe nonce unchanged");
    assert_eq!(
        reader.get_transaction_count(executor).await.expect("nonce"),
        sent_before,
        "the executor sent no transaction"
    );
}

#[tokio::test]
async fn signatures_given_in_the_wrong_order_are_sorted() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v1;
    let nonce = bed.safe.nonce().await.expect("nonce");
    let tx = pause_tx(target, nonce);
    let hash = bed.safe.tx_hash(&tx);

    let mut signed: Vec<(Address, OwnerApproval)> = bed.owners[..2]
        .iter()
        .map(|owner| (owner.address(), sign_safe_tx_hash(owner, hash).expect("sign")))
        .collect();
    signed.sort_by_key(|(owner, _)| std::cmp::Reverse(*owner));

    // Concatenated as received (descending), the Safe refuses them: that is the trap.
    let descending: Vec<u8> =
        signed.iter().flat_map(|(owner, approval)| approval.encode(*owner)).collect();
    let raw = guardian_chain::safe::ISafe::new(bed.safe.address(), bed.executor())
        .execTransaction(
            tx.to,
            tx.value,
            tx.data.clone(),
            tx.operation,
            tx.safeTxGas,
            tx.baseGas,
            tx.gasPrice,
            tx.gasToken,
            tx.refundReceiver,
            descending.into(),
        )
        .call()
        .await
        .expect_err("descending order is refused by the Safe");
    let reason = guardian_chain::safe::explain_contract_error(raw, "execTransaction").to_string();
    assert!(reason.contains("GS026"), "{reason}");

    // Collected into Approvals in the same wrong order, they are sorted and execute.
    let approvals: Approvals = signed.into_iter().collect();
    let execution = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect("executes");
    assert!(execution.success);
    assert!(is_paused(&reader, target).await.expect("paused()"));
}

#[tokio::test]
async fn onchain_approve_hash_counts_as_an_approval() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v2;
    let tx = pause_tx(target, bed.safe.nonce().await.expect("nonce"));
    let hash = bed.safe.tx_hash(&tx);

    let approver = &bed.owners[2];
    bed.safe
        .approve_hash_onchain(&bed.devnet.provider_for(approver.clone()), approver.address(), hash)
        .await
        .expect("approveHash");
    assert!(bed.safe.is_hash_approved(approver.address(), hash).await.expect("approvedHashes"));

    let mut approvals = Approvals::new();
    approvals.insert(approver.address(), OwnerApproval::ApprovedHash);
    approvals
        .insert(bed.owners[0].address(), sign_safe_tx_hash(&bed.owners[0], hash).expect("sign"));
    let execution = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect("executes");
    assert!(execution.success);
    assert!(is_paused(&reader, target).await.expect("paused()"));
}

/// forge exits 0 when solc reports an error in `--json` mode: the error must still stop the
/// compile, with solc's message naming the file and line.
#[test]
fn a_solidity_error_stops_the_compile_with_its_file_and_line() {
    let (toolchain, _) = contracts();
    let root = tempfile::tempdir().expect("tempdir");
    let project = root.path().join("contracts");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    std::fs::copy(toolchain.contracts_dir().join("foundry.toml"), project.join("foundry.toml"))
        .expect("copy foundry.toml");
    std::fs::write(
        project.join("src/Broken.sol"),
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Broken {\n    uint256 x = ;\n}\n",
    )
    .expect("write Broken.sol");
    std::os::unix::fs::symlink(toolchain.root().join("toolchain"), root.path().join("toolchain"))
        .expect("link the toolchain");
    let copy = guardian_chain::Toolchain::at(root.path()).expect("toolchain of the copy");
    let err = guardian_chain::compile(&copy).expect_err("a syntax error does not compile");
    let message = format!("{err:#}");
    assert!(message.contains("src/Broken.sol:4:"), "{message}");
    assert!(message.contains("ParserError"), "{message}");
}

#[test]
fn second_compile_reuses_the_cache() {
    let (toolchain, first) = contracts();
    for name in ["Safe", "SafeProxyFactory", "SmartAccountFactory", "VaultV1", "VaultV2"] {
        assert!(first.get(name).is_ok(), "{name} compiled");
    }
    let again = guardian_chain::compile(toolchain).expect("recompile");
    assert!(again.reused_cache(), "an unchanged project compiles nothing");
    assert_eq!(
        again.get("VaultV2").expect("VaultV2").deployed_bytecode,
        first.get("VaultV2").expect("VaultV2").deployed_bytecode
    );
}
