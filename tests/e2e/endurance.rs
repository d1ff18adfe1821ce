//! Long runs of the whole loop: replicas over many incidents in a row (issue 16), against a
//! real Anvil and Safe 1.4.1, with the replica harness of [`crate::replicas`].
//!
//! libtest starts tests in the order of their names: the suite's longest test lives here, near
//! the front, so that it runs beside the first ones instead of alone at the end (it takes about
//! a minute of mostly waiting for blocks; started last, it added half a minute to every run).

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{B256, U256};
use guardian_chain::safe::is_paused;
use guardian_core::replication::sender_rank;

use crate::{
    replicas::{
        DEADLINE, Sent, Setup, approve_onchain, deposit, executions, mesh, one_second_blocks,
        peers_known, sent_to_safe, signer, tails, until, withdraw,
    },
    support::{safe_tx_hash, testbed_with},
};

/// Ten incidents, each paused and then unpaused with on-chain approvals (owners approve in the
/// same block, 1 s blocks), two replicas with funded executors and the default sender delay:
/// every transaction the executors sent to the Safe succeeded, one per nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_incidents_with_onchain_approvals_send_one_exec_transaction_per_nonce() {
    const ROUNDS: usize = 10;
    let bed = testbed_with(one_second_blocks()).await;
    let mut rs =
        mesh(&bed, &[("alpha", signer(&bed, 4)), ("bravo", signer(&bed, 5))], &Setup::default())
            .await;
    for r in &mut rs {
        r.start().await;
    }
    peers_known(&mut rs).await;
    // Enough for every drain (sponsoredWithdraw checks no balance, the vault's ether does).
    deposit(&bed, "25").await;
    let reader = bed.devnet.reader();
    for round in 1..=ROUNDS {
        withdraw(&bed).await;
        let pause =
            until(&format!("round {round}: the pause proposal on both"), DEADLINE, &mut rs, |rs| {
                let (a, b) = (rs[0].pending_pause()?, rs[1].pending_pause()?);
                (a == b).then_some(a)
            })
            .await;
        approve_onchain(&bed, &pause).await;
        until(&format!("round {round}: the pause executed on both"), DEADLINE, &mut rs, |rs| {
            rs.iter()
                .all(|r| r.proposal_status(&pause).as_deref() == Some("executed"))
                .then_some(())
        })
        .await;
        assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));

        let (ok, stdout, stderr) =
            rs[0].cli(&["unpause", "vault", "--reason", &format!("round {round} over")], &[]);
        assert!(ok, "unpause failed:\n{stdout}\n{stderr}");
        let unpause = safe_tx_hash(&stdout);
        until(&format!("round {round}: the unpause relayed to bravo"), DEADLINE, &mut rs, |rs| {
            (rs[1].proposal_status(&unpause).as_deref() == Some("pending")).then_some(())
        })
        .await;
        approve_onchain(&bed, &unpause).await;
        until(&format!("round {round}: unpaused and resolved on both"), DEADLINE, &mut rs, |rs| {
            rs.iter()
                .all(|r| {
                    r.proposal_status(&unpause).as_deref() == Some("executed") && {
                        let list = r.incidents();
                        list.len() == round && list.iter().all(|i| i["state"] == "resolved")
                    }
                })
                .then_some(())
        })
        .await;
        assert!(!is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    }

    let (exec_a, exec_b) = (rs[0].exec(), rs[1].exec());
    let sent = sent_to_safe(&bed, &[exec_a, exec_b]).await;
    let reverted: Vec<&Sent> = sent.iter().filter(|s| !s.success).collect();
    assert!(reverted.is_empty(), "execTransactions that lost a race: {reverted:?}\n{}", tails(&rs));
    assert_eq!(sent.len(), 2 * ROUNDS, "one per pause and per unpause: {sent:?}");
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(2 * ROUNDS));
    let done = executions(&bed).await;
    let hashes: BTreeSet<B256> = done.iter().map(|(h, _)| *h).collect();
    assert_eq!(hashes.len(), 2 * ROUNDS, "{done:?}");
    // The rank follows the proposal: both executors sent some.
    let by_a = sent.iter().filter(|s| s.from == exec_a).count();
    assert!(by_a > 0 && by_a < sent.len(), "alpha sent {by_a} of {}", sent.len());
    // How many went out from their proposal's rank-0 executor (the others after a delay).
    let by_tx: BTreeMap<B256, B256> = done.iter().map(|(h, tx)| (*tx, *h)).collect();
    let first =
        sent.iter().filter(|s| sender_rank(by_tx[&s.tx], s.from, &[exec_a, exec_b]) == 0).count();
    for r in &rs {
        assert!(!r.log().contains("GS025"), "{} logged a signature error:\n{}", r.name, r.tail());
    }
    assert!(first > 0, "some executions went out from their rank-0 executor: {sent:?}");
}
