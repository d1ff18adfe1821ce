//! Pause proposals through the real Safe 1.4.1 (2-of-3): from an anomaly to a verified pause,
//! owner approvals off and on chain, rejections, two replicas racing, manual pause/unpause and
//! stale proposals.

use std::{collections::BTreeSet, path::Path, sync::Arc};

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    rpc::types::Filter,
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::SolEvent,
};
use guardian_chain::{
    Testbed,
    safe::{ISafe, is_paused, sign_safe_tx_hash},
    sender::SendOptions,
};
use guardian_core::{
    finding::{Evidence, Finding},
    proposal::{ProposalKind, proposal_tx},
    safe::Approvals,
    severity::{Action, Severity},
};
use guardian_multisig::{
    Advanced, Multisig, ProposalStatus, ProposeRequest, Proposed, SubmitError, Target,
};
use guardian_store::{BlockRef, FindingStatus, Store};

use crate::support::testbed;

fn targets(bed: &Testbed) -> Vec<Target> {
    [
        ("vault", bed.targets.vault_v2),
        ("vault_v1", bed.targets.vault_v1),
        ("factory", bed.targets.factory),
    ]
    .into_iter()
    .map(|(name, address)| Target::new(name, address, "pause()").expect("target"))
    .collect()
}

async fn replica(bed: &Testbed, db: &Path, executor: Option<PrivateKeySigner>) -> Multisig {
    Multisig::connect(bed.devnet.reader(), 138, bed.safe.address(), db, targets(bed), executor)
        .await
        .expect("multisig connects")
}

/// Record an open Critical finding against the vault, as the follower would.
fn record_finding(bed: &Testbed, db: &Path) -> i64 {
    let mut store = Store::open(db).expect("store");
    store.bind_chain(138).expect("chain");
    let block = BlockRef { number: 1, hash: B256::repeat_byte(1), parent_hash: B256::ZERO };
    let finding = Finding {
        rule: "drain".into(),
        contract: "vault".into(),
        address: bed.targets.vault_v2,
        severity: Severity::Critical,
        action: Action::ProposePause { then_rollback: false },
        summary: "withdrawals above 5 ether in 10 blocks".into(),
        evidence: Evidence { block_number: 1, block_hash: block.hash, ..Evidence::default() },
    };
    store.commit_blocks(&[(block, vec![finding])]).expect("commit")[0].finding_id()
}

fn signature(owner: &PrivateKeySigner, hash: B256) -> Vec<u8> {
    owner.sign_hash_sync(&hash).expect("sign").as_bytes().to_vec()
}

fn manual(contract: &str, kind: ProposalKind) -> ProposeRequest {
    ProposeRequest {
        contract: contract.into(),
        kind,
        reason: "operator drill".into(),
        finding_id: None,
        then_rollback: false,
        actor: "test operator".into(),
    }
}

async fn execution_successes(bed: &Testbed, hash: B256) -> usize {
    let filter = Filter::new()
        .address(bed.safe.address())
        .event_signature(ISafe::ExecutionSuccess::SIGNATURE_HASH)
        .topic1(hash)
        .from_block(0);
    bed.devnet.reader().get_logs(&filter).await.expect("logs").len()
}

#[tokio::test]
async fn anomaly_to_verified_pause_with_offchain_and_onchain_approvals() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let finding = record_finding(&bed, &db);
    let ms = replica(&bed, &db, Some(bed.deployer.clone())).await;
    let reader = bed.devnet.reader();
    let nonce = bed.safe.nonce().await.expect("nonce");

    let proposed = ms.propose_for_findings().await.expect("propose");
    let [Proposed::New { proposal }] = &proposed[..] else {
        panic!("one new proposal: {proposed:?}")
    };
    assert_eq!(proposal.finding_id, Some(finding));
    assert_eq!(proposal.nonce, nonce);
    assert!(proposal.simulation.starts_with("ok"), "{}", proposal.simulation);
    let hash = proposal.safe_tx_hash;
    assert_eq!(hash, bed.safe.onchain_tx_hash(&proposal.safe_tx()).await.expect("on-chain hash"));
    // A second pass proposes nothing new.
    assert!(ms.propose_for_findings().await.expect("again").is_empty());

    // One off-chain approval alone: nothing is executed.
    let sig = signature(&bed.owners[0], hash);
    let first = ms.submit_signature(hash, bed.owners[0].address(), &sig).await.expect("accepted");
    assert_eq!((first.added, first.approvals, first.threshold), (true, 1, 2));
    let ticked = ms.tick().await.expect("tick");
    assert!(matches!(ticked[..], [Advanced::Waiting { approvals: 1, threshold: 2, .. }]));
    assert!(!is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce, "nothing executed");

    // The second owner approves on chain with approveHash.
    bed.safe
        .approve_hash_onchain(
            &bed.devnet.provider_for(bed.owners[1].clone()),
            bed.owners[1].address(),
            hash,
        )
        .await
        .expect("approveHash");
    let ticked = ms.tick().await.expect("tick");
    let [Advanced::Executed { proposal, by_this_replica: true }] = &ticked[..] else {
        panic!("executed: {ticked:?}")
    };
    assert_eq!(proposal.status, ProposalStatus::Executed);
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(execution_successes(&bed, hash).await, 1);
    let store = Store::open(&db).expect("store");
    assert_eq!(
        store.finding(finding).expect("finding").expect("exists").status,
        FindingStatus::Resolved
    );

    let detail = ms.detail(hash).expect("detail").expect("exists");
    let events: Vec<&str> = detail.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["proposed", "approval", "onchain_approval", "executed"]);
    // Nothing pending is left.
    assert!(ms.tick().await.expect("tick").is_empty());
}

#[tokio::test]
async fn bad_signatures_are_rejected_each_with_its_own_message() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let ms = replica(&bed, &db, None).await;
    let proposed = ms.propose(&manual("factory", ProposalKind::Pause)).await.expect("propose");
    let proposal = proposed.proposal().clone();
    let hash = proposal.safe_tx_hash;
    let owner = &bed.owners[0];
    let stranger = bed.devnet.signer(7).expect("dev key");
    let other_hash =
        proposal_tx(proposal.target, proposal.calldata.clone(), proposal.nonce + U256::from(1))
            .safe_tx_hash(138, bed.safe.address());
    let chain_1 = proposal.safe_tx().safe_tx_hash(1, bed.safe.address());

    let cases: [(&str, Address, Vec<u8>); 4] = [
        ("non-owner", stranger.address(), signature(&stranger, hash)),
        ("other hash", owner.address(), signature(owner, other_hash)),
        ("chain id 1", owner.address(), signature(owner, chain_1)),
        ("malformed", owner.address(), vec![0xde, 0xad, 0xbe]),
    ];
    let mut messages = BTreeSet::new();
    for (what, signer, sig) in cases {
        match ms.submit_signature(hash, signer, &sig).await {
            Err(SubmitError::Rejected(rejection)) => {
                let message = rejection.to_string();
                match what {
                    "non-owner" => assert!(message.contains("not an owner"), "{message}"),
                    "other hash" => assert!(message.contains("another hash"), "{message}"),
                    "chain id 1" => assert!(message.contains("chain id 1,"), "{message}"),
                    _ => assert!(message.starts_with("malformed"), "{message}"),
                }
                messages.insert(message);
            }
            other => panic!("{what}: expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(messages.len(), 4, "each rejection has its own message");
    let detail = ms.detail(hash).expect("detail").expect("exists");
    assert!(detail.signatures.is_empty(), "nothing stored");
    let rejections: BTreeSet<String> =
        detail.events.iter().filter(|e| e.event == "rejection").map(|e| e.detail.clone()).collect();
    assert_eq!(rejections, messages, "every rejection is audited with its message");

    // The same good signature twice: stored once, the second is a no-op.
    let good = signature(owner, hash);
    assert!(ms.submit_signature(hash, owner.address(), &good).await.expect("ok").added);
    let again = ms.submit_signature(hash, owner.address(), &good).await.expect("ok");
    assert_eq!((again.added, again.approvals), (false, 1));
}

#[tokio::test]
async fn two_replicas_on_one_safe_execute_exactly_once() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    record_finding(&bed, &db_a);
    record_finding(&bed, &db_b);
    let a = Arc::new(replica(&bed, &db_a, Some(bed.devnet.signer(4).expect("key"))).await);
    let b = Arc::new(replica(&bed, &db_b, Some(bed.devnet.signer(5).expect("key"))).await);

    let pa = a.propose_for_findings().await.expect("a proposes");
    let pb = b.propose_for_findings().await.expect("b proposes");
    let hash = pa[0].proposal().safe_tx_hash;
    assert_eq!(hash, pb[0].proposal().safe_tx_hash, "both replicas derive the same proposal");
    for owner in &bed.owners[..2] {
        for ms in [&a, &b] {
            ms.submit_signature(hash, owner.address(), &signature(owner, hash)).await.expect("ok");
        }
    }

    let (ra, rb) = tokio::join!(
        {
            let a = a.clone();
            async move { a.tick().await }
        },
        {
            let b = b.clone();
            async move { b.tick().await }
        },
    );
    let mut ours = 0;
    for outcome in [ra.expect("a ticks"), rb.expect("b ticks")] {
        match &outcome[..] {
            [Advanced::Executed { proposal, by_this_replica }] => {
                assert_eq!(proposal.status, ProposalStatus::Executed);
                ours += usize::from(*by_this_replica);
            }
            other => panic!("each replica ends with the proposal executed: {other:?}"),
        }
    }
    assert_eq!(ours, 1, "exactly one replica's execTransaction succeeded");
    assert_eq!(execution_successes(&bed, hash).await, 1);
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
    let loser = if a.detail(hash).expect("d").expect("e").proposal.executed_by.as_deref()
        == Some("another replica")
    {
        a.clone()
    } else {
        b.clone()
    };
    let events = loser.detail(hash).expect("detail").expect("exists").events;
    assert!(events.iter().any(|e| e.event == "executed_elsewhere"), "{events:?}");
}

#[tokio::test]
async fn manual_pause_then_unpause_needs_the_threshold() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ms = replica(&bed, &dir.path().join("g.sqlite"), Some(bed.deployer.clone())).await;
    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v1;

    let pause = ms.propose(&manual("vault_v1", ProposalKind::Pause)).await.expect("pause");
    let Proposed::New { proposal } = pause else { panic!("new: {pause:?}") };
    for owner in &bed.owners[1..] {
        let sig = signature(owner, proposal.safe_tx_hash);
        ms.submit_signature(proposal.safe_tx_hash, owner.address(), &sig).await.expect("ok");
    }
    assert!(matches!(ms.tick().await.expect("tick")[..], [Advanced::Executed { .. }]));
    assert!(is_paused(&reader, target).await.expect("paused()"));
    // Pausing again: nothing to do, recorded as skipped.
    let again = ms.propose(&manual("vault_v1", ProposalKind::Pause)).await.expect("pause");
    assert!(matches!(again, Proposed::Skipped { .. }), "{again:?}");

    let unpause = ms.propose(&manual("vault_v1", ProposalKind::Unpause)).await.expect("unpause");
    let hash = unpause.proposal().safe_tx_hash;
    let owner = &bed.owners[0];
    ms.submit_signature(hash, owner.address(), &signature(owner, hash)).await.expect("ok");
    assert!(matches!(ms.tick().await.expect("tick")[..], [Advanced::Waiting { approvals: 1, .. }]));
    assert!(is_paused(&reader, target).await.expect("paused()"), "one approval unpauses nothing");
    let owner = &bed.owners[2];
    ms.submit_signature(hash, owner.address(), &signature(owner, hash)).await.expect("ok");
    assert!(matches!(ms.tick().await.expect("tick")[..], [Advanced::Executed { .. }]));
    assert!(!is_paused(&reader, target).await.expect("paused()"));
}

#[tokio::test]
async fn proposal_whose_nonce_was_consumed_is_reproposed() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ms = replica(&bed, &dir.path().join("g.sqlite"), Some(bed.deployer.clone())).await;
    let proposed = ms.propose(&manual("vault", ProposalKind::Pause)).await.expect("propose");
    let old = proposed.proposal().clone();
    let owner = &bed.owners[0];
    let sig = signature(owner, old.safe_tx_hash);
    ms.submit_signature(old.safe_tx_hash, owner.address(), &sig).await.expect("ok");

    // Meanwhile the owners use the same Safe nonce for something else: pausing the factory.
    let other = proposal_tx(bed.targets.factory, old.calldata.clone(), old.nonce);
    let other_hash = bed.safe.tx_hash(&other);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, other_hash).expect("sign")))
        .collect();
    let exec = bed.safe.execute(&bed.deployer, &other, &approvals, &SendOptions::default()).await;
    assert!(exec.expect("executes").success);

    let ticked = ms.tick().await.expect("tick");
    let [Advanced::Stale { hash, replaced_by: Some(new) }] = ticked[..] else {
        panic!("stale and re-proposed: {ticked:?}")
    };
    assert_eq!(hash, old.safe_tx_hash);
    let stale = ms.detail(old.safe_tx_hash).expect("detail").expect("exists");
    assert_eq!(stale.proposal.status, ProposalStatus::Stale);
    assert_eq!(stale.proposal.replaced_by, Some(new));
    let fresh = ms.detail(new).expect("detail").expect("exists").proposal;
    assert_eq!((fresh.status, fresh.nonce), (ProposalStatus::Pending, old.nonce + U256::from(1)));
    assert_eq!(fresh.replaces, Some(old.safe_tx_hash));

    // Signing the stale one is refused and points at the replacement.
    let sig = signature(&bed.owners[1], old.safe_tx_hash);
    match ms.submit_signature(old.safe_tx_hash, bed.owners[1].address(), &sig).await {
        Err(e @ SubmitError::NotPending { .. }) => {
            assert!(e.to_string().contains(&new.to_string()), "{e}")
        }
        other => panic!("expected NotPending, got {other:?}"),
    }
    // The replacement executes normally.
    for owner in &bed.owners[..2] {
        ms.submit_signature(new, owner.address(), &signature(owner, new)).await.expect("ok");
    }
    assert!(matches!(ms.tick().await.expect("tick")[..], [Advanced::Executed { .. }]));
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
}

#[tokio::test]
async fn an_unfunded_executor_is_refused_at_once_and_audited_once() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    // An executor with no ether: every attempt fails the same way.
    let broke = PrivateKeySigner::random();
    let ms = replica(&bed, &db, Some(broke)).await;
    let Proposed::New { proposal } =
        ms.propose(&manual("vault", ProposalKind::Pause)).await.expect("propose")
    else {
        panic!("a new proposal");
    };
    let hash = proposal.safe_tx_hash;
    for owner in &bed.owners[..2] {
        ms.submit_signature(hash, owner.address(), &signature(owner, hash)).await.expect("ok");
    }
    for _ in 0..3 {
        let advanced = ms.tick().await.expect("tick");
        let error = advanced
            .iter()
            .find_map(|a| match a {
                Advanced::Failed { hash: h, error } if *h == hash => Some(error.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a failed execution: {advanced:?}"));
        // Refused before signing, with the figures, instead of minutes of retries.
        assert!(error.contains("holds 0 wei") && error.contains("fund the executor"), "{error}");
    }
    let failures: Vec<_> = ms
        .detail(hash)
        .expect("detail")
        .expect("proposal")
        .events
        .into_iter()
        .filter(|e| e.event == "execution_failed")
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(!is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
}
