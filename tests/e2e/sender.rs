//! Delivering a transaction on a real Anvil: a transaction stuck in the pool is replaced with
//! bumped fees under the same nonce, and exactly one of the variants is mined.

use std::time::Duration;

use alloy::{
    network::TransactionBuilder,
    primitives::U256,
    providers::{Provider, ext::AnvilApi},
    rpc::types::TransactionRequest,
};
use guardian_chain::sender::{SendOptions, send_reliably};

use crate::support::testbed;

#[tokio::test]
async fn a_stuck_transaction_is_replaced_with_higher_fees_and_mined_once() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let sender = bed.devnet.signer(6).expect("key");
    let to = bed.devnet.signer(5).expect("key").address();
    let nonce_before = reader.get_transaction_count(sender.address()).await.expect("nonce");
    let initial_tip = reader.get_max_priority_fee_per_gas().await.expect("tip");

    // Nothing is mined until the test says so: the first variant sits in the pool.
    reader.anvil_set_auto_mine(false).await.expect("automine off");
    let miner = {
        let reader = reader.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            reader.anvil_mine(Some(1), None).await.expect("mine");
        })
    };
    let options = SendOptions {
        replace_after: Duration::from_millis(400),
        poll: Duration::from_millis(50),
        ..SendOptions::default()
    };
    let request = TransactionRequest::default().with_to(to).with_value(U256::from(1));
    let receipt = send_reliably(&reader, &sender, request, &options).await.expect("delivered");
    miner.await.expect("miner");
    reader.anvil_set_auto_mine(true).await.expect("automine on");

    assert!(receipt.status());
    let block = reader
        .get_block_by_number(receipt.block_number.expect("mined").into())
        .await
        .expect("rpc")
        .expect("block");
    let base = u128::from(block.header.base_fee_per_gas.unwrap_or_default());
    assert!(
        receipt.effective_gas_price - base > initial_tip,
        "the mined variant pays a bumped tip ({} over base, first offer {initial_tip})",
        receipt.effective_gas_price - base
    );
    assert_eq!(block.transactions.len(), 1, "only one variant was mined");
    assert_eq!(
        reader.get_transaction_count(sender.address()).await.expect("nonce"),
        nonce_before + 1,
        "one nonce used"
    );
}
