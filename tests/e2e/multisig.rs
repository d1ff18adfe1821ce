//! Pause proposals through the real Safe 1.4.1 (2-of-3), driven as the daemon drives them: an
//! incident asks, the responder proposes, owners approve, the responder executes, the chain
//! says who sent it. Rejections, two replicas racing, executions from outside guardian, manual
//! pause and unpause, stale proposals, retractions and an unfunded executor.

use std::{collections::BTreeSet, path::Path};

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
    finding::{Anomaly, Evidence, Finding},
    incident::{Attribution, RollbackStatus, State},
    proposal::{SignedDomain, proposal_tx},
    safe::Approvals,
    severity::{Action, Severity},
};
use guardian_multisig::{ProposalStatus, SubmitError};
use guardian_store::{BlockRef, FindingStatus, Store};

use crate::support::{Replica, testbed};

/// Record an open Critical finding against the vault at block 1, as the follower would.
/// Returns (finding, incident).
fn record_finding(bed: &Testbed, db: &Path, rollback: bool) -> (i64, i64) {
    let mut store = Store::open(db).expect("store");
    store.bind_chain(138).expect("chain");
    let block = BlockRef { number: 1, hash: B256::repeat_byte(1), parent_hash: B256::ZERO };
    let finding = Finding {
        rule: "drain".into(),
        contract: "vault".into(),
        address: bed.targets.vault_v2,
        severity: Severity::Critical,
        action: Action::ProposePause { then_rollback: rollback },
        summary: "withdrawals above 5 ether in 10 blocks".into(),
        evidence: Evidence { block_number: 1, block_hash: block.hash, ..Evidence::default() },
        anomaly: Anomaly::Block,
        magnitude: None,
    };
    let committed = store.commit_blocks(&[(block, vec![finding])]).expect("commit");
    (committed.recorded[0].finding_id(), committed.transitions[0].incident_id)
}

fn signature(owner: &PrivateKeySigner, hash: B256) -> Vec<u8> {
    owner.sign_hash_sync(&hash).expect("sign").as_bytes().to_vec()
}

async fn execution_successes(bed: &Testbed, hash: B256) -> usize {
    let filter = Filter::new()
        .address(bed.safe.address())
        .event_signature(ISafe::ExecutionSuccess::SIGNATURE_HASH)
        .topic1(hash)
        .from_block(0);
    bed.devnet.reader().get_logs(&filter).await.expect("logs").len()
}

/// The incident's pending pause proposal.
fn pending(replica: &Replica, incident: i64) -> B256 {
    replica.incident(incident).pending_proposal().map(|(hash, _)| hash).expect("a pending pause")
}

async fn sign(replica: &Replica, owners: &[PrivateKeySigner], hash: B256) {
    for owner in owners {
        replica
            .ms
            .submit_signature(hash, owner.address(), &signature(owner, hash))
            .await
            .expect("accepted");
    }
}

/// Execute `hash` through the Safe directly, as an owner with cast (or a crashed guardian
/// whose transaction was never recorded) would: two owner signatures, sent by `sender`.
async fn execute_outside(bed: &Testbed, replica: &Replica, hash: B256, sender: &PrivateKeySigner) {
    let p = replica.ms.store().proposal(hash).expect("read").expect("exists");
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, hash).expect("sign")))
        .collect();
    let exec = bed.safe.execute(sender, &p.safe_tx(), &approvals, &SendOptions::default()).await;
    assert!(exec.expect("executes").success);
}

#[tokio::test]
async fn anomaly_to_verified_pause_with_offchain_and_onchain_approvals() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (finding, incident) = record_finding(&bed, &db, false);
    let mut replica = Replica::new(&bed, &db, Some(bed.deployer.clone())).await;
    let reader = bed.devnet.reader();
    let nonce = bed.safe.nonce().await.expect("nonce");

    replica.settle().await;
    let hash = pending(&replica, incident);
    let proposal = replica.ms.store().proposal(hash).expect("read").expect("stored");
    assert_eq!((proposal.incident_id, proposal.nonce), (Some(incident), nonce));
    assert!(proposal.simulation.starts_with("ok"), "{}", proposal.simulation);
    assert_eq!(hash, bed.safe.onchain_tx_hash(&proposal.safe_tx()).await.expect("on-chain hash"));
    assert_eq!(replica.incident(incident).state, State::Responding);
    // Another pass proposes nothing new and writes nothing.
    let before = replica.audit(incident);
    replica.settle().await;
    assert_eq!(replica.audit(incident), before, "a quiet pass writes nothing");

    // One off-chain approval alone: nothing is executed.
    let first = replica
        .ms
        .submit_signature(hash, bed.owners[0].address(), &signature(&bed.owners[0], hash))
        .await
        .expect("accepted");
    assert_eq!((first.added, first.approvals, first.threshold), (true, 1, 2));
    replica.settle().await;
    assert!(!is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce, "nothing executed");

    // The second owner approves on chain with approveHash; the responder counts it, executes.
    bed.safe
        .approve_hash_onchain(
            &bed.devnet.provider_for(bed.owners[1].clone()),
            bed.owners[1].address(),
            hash,
        )
        .await
        .expect("approveHash");
    replica.settle().await;
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(execution_successes(&bed, hash).await, 1);
    let incident_now = replica.incident(incident);
    assert_eq!(incident_now.state, State::Contained);
    let execution = incident_now.execution.expect("recorded");
    assert_eq!(
        (execution.by, execution.sender),
        (Attribution::ThisReplica, bed.deployer.address())
    );
    assert_eq!(
        replica.audit(incident),
        [
            "opened",
            "proposal_made",
            "approval_counted",
            "approval_counted",
            "executed",
            "contained"
        ]
    );
    let stored = replica.ms.store().finding(finding).expect("finding").expect("exists");
    assert_eq!(stored.status, FindingStatus::Resolved, "answered by the verified pause");

    let detail = replica.ms.detail(hash).expect("detail").expect("exists");
    let events: Vec<&str> = detail.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["proposed", "approval", "onchain_approval", "executed"]);
    assert_eq!(detail.proposal.status, ProposalStatus::Executed);

    // Resolving closes the incident: the next anomaly opens a new one.
    replica.desk.resolve(incident, "test", "post-mortem done").expect("resolved");
    assert_eq!(replica.incident(incident).state, State::Resolved);
}

#[tokio::test]
async fn bad_signatures_are_rejected_each_with_its_own_message() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let replica = Replica::new(&bed, &db, None).await;
    let outcome = replica.desk.pause("factory", "test operator", "drill").await.expect("pause");
    let proposal = outcome.proposal.expect("proposed at once").proposal;
    let hash = proposal.safe_tx_hash;
    let owner = &bed.owners[0];
    let stranger = bed.devnet.signer(7).expect("dev key");
    let other_hash =
        proposal_tx(proposal.target, proposal.calldata.clone(), proposal.nonce + U256::from(1))
            .safe_tx_hash(138, bed.safe.address());
    let chain_1 = proposal.safe_tx().safe_tx_hash(1, bed.safe.address());
    let on_chain_1 = SignedDomain { chain_id: 1, safe: bed.safe.address() };
    // personal_sign's answer: the prefixed message signed, v 27/28.
    let prefixed = signature(owner, alloy::primitives::eip191_hash_message(hash));

    let cases: [(&str, Address, Vec<u8>, Option<SignedDomain>); 6] = [
        ("non-owner", stranger.address(), signature(&stranger, hash), None),
        ("other hash", owner.address(), signature(owner, other_hash), None),
        ("chain id 1", owner.address(), signature(owner, chain_1), Some(on_chain_1)),
        ("malformed", owner.address(), vec![0xde, 0xad, 0xbe], None),
        ("other owner", owner.address(), signature(&bed.owners[1], hash), None),
        ("prefixed", owner.address(), prefixed, None),
    ];
    let mut messages = BTreeSet::new();
    for (what, signer, sig, domain) in cases {
        match replica.ms.submit_signature_in(hash, signer, &sig, domain).await {
            Err(SubmitError::Rejected(rejection)) => {
                let message = rejection.to_string();
                match what {
                    "non-owner" => assert!(message.contains("not an owner"), "{message}"),
                    "other hash" => assert!(message.contains("another hash"), "{message}"),
                    "chain id 1" => assert!(message.contains("chain id 1,"), "{message}"),
                    "other owner" => assert!(message.contains("do not match"), "{message}"),
                    "prefixed" => assert!(message.contains("v + 4"), "{message}"),
                    _ => assert!(message.starts_with("malformed"), "{message}"),
                }
                messages.insert(message);
            }
            other => panic!("{what}: expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(messages.len(), 6, "each rejection has its own message");
    let detail = replica.ms.detail(hash).expect("detail").expect("exists");
    assert!(detail.signatures.is_empty(), "nothing stored");
    let rejections: Vec<String> =
        detail.events.iter().filter(|e| e.event == "rejection").map(|e| e.detail.clone()).collect();
    assert_eq!(rejections.len(), 6, "every rejection is audited: {rejections:#?}");
    for message in &messages {
        assert!(rejections.iter().any(|r| r.starts_with(message.as_str())), "{message} audited");
    }

    // The same good signature twice: stored once, the second is a no-op.
    let good = signature(owner, hash);
    assert!(replica.ms.submit_signature(hash, owner.address(), &good).await.expect("ok").added);
    let again = replica.ms.submit_signature(hash, owner.address(), &good).await.expect("ok");
    assert_eq!((again.added, again.approvals), (false, 1));
}

/// Two replicas, their own databases and executor keys, no coordinator: one execution, and
/// each replica names the sender; both are contained and both owe their own rollback.
#[tokio::test]
async fn two_replicas_on_one_safe_execute_exactly_once() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let (_, ia) = record_finding(&bed, &db_a, true);
    let (_, ib) = record_finding(&bed, &db_b, true);
    let (key_a, key_b) = (bed.devnet.signer(4).expect("key"), bed.devnet.signer(5).expect("key"));
    let mut a = Replica::new(&bed, &db_a, Some(key_a.clone())).await;
    let mut b = Replica::new(&bed, &db_b, Some(key_b.clone())).await;
    a.settle().await;
    b.settle().await;
    let hash = pending(&a, ia);
    assert_eq!(hash, pending(&b, ib), "both replicas derive the same proposal");
    sign(&a, &bed.owners[..2], hash).await;
    sign(&b, &bed.owners[..2], hash).await;

    tokio::join!(a.settle(), b.settle());
    assert_eq!(execution_successes(&bed, hash).await, 1);
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
    let (ea, eb) = (
        a.incident(ia).execution.expect("a recorded it"),
        b.incident(ib).execution.expect("b recorded it"),
    );
    assert_eq!(ea.tx, eb.tx, "the same transaction");
    assert_eq!(ea.sender, eb.sender, "both name the same sender");
    let by = [ea.by, eb.by];
    assert!(by.contains(&Attribution::ThisReplica) && by.contains(&Attribution::Outside), "{by:?}");
    assert!([key_a.address(), key_b.address()].contains(&ea.sender));
    for (replica, id) in [(&a, ia), (&b, ib)] {
        let incident = replica.incident(id);
        assert!(incident.state.is_contained(), "{:?}", incident.state);
        assert_ne!(
            incident.rollback,
            RollbackStatus::NotOwed,
            "each host rolls its own configs back"
        );
    }
}

/// After a crash between send and record, the transaction is on chain and the database does
/// not know it: the sender decides, so it is this replica's. An owner's execution (cast) is
/// an outside sender's; the rollback follows either way.
#[tokio::test]
async fn executions_guardian_did_not_record_are_attributed_by_their_sender() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, sender, by) in [
        ("own", bed.deployer.clone(), Attribution::ThisReplica),
        ("owner", bed.owners[2].clone(), Attribution::Outside),
    ] {
        let db = dir.path().join(format!("{name}.sqlite"));
        let (_, incident) = record_finding(&bed, &db, true);
        let mut replica = Replica::new(&bed, &db, Some(bed.deployer.clone())).await;
        replica.settle().await;
        let hash = pending(&replica, incident);
        execute_outside(&bed, &replica, hash, &sender).await;
        replica.settle().await;
        let now = replica.incident(incident);
        let execution = now.execution.expect("seen");
        assert_eq!((execution.by, execution.sender), (by, sender.address()), "{name}");
        assert!(now.state.is_contained(), "{name}: {:?}", now.state);
        assert_ne!(now.rollback, RollbackStatus::NotOwed, "{name}: the rollback follows the pause");
        // The proposal as operators see it names who sent the execution.
        let view = replica.desk.proposal(hash).expect("view");
        let sender_text = sender.address().to_string();
        let executed_by = view.detail.proposal.executed_by.clone().unwrap_or_default();
        assert!(executed_by.contains(&sender_text), "{name}: {executed_by}");
        let by_incident = view.incident.and_then(|i| i.executed_by).unwrap_or_default();
        assert!(
            by_incident.contains(by.as_str()) && by_incident.contains(&sender_text),
            "{by_incident}"
        );
        // Unpause for the next round (the owners' business, at the full threshold).
        let unpause = replica.desk.unpause("vault", "test", "next round").await.expect("unpause");
        let unpause = unpause.proposal().expect("proposed").safe_tx_hash;
        sign(&replica, &bed.owners[..2], unpause).await;
        replica.settle().await;
        assert!(!is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
        assert_eq!(replica.incident(incident).state, State::Resolved, "the unpause closes it");
    }
}

#[tokio::test]
async fn manual_pause_then_unpause_needs_the_threshold() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replica =
        Replica::new(&bed, &dir.path().join("g.sqlite"), Some(bed.deployer.clone())).await;
    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v1;

    let outcome = replica.desk.pause("vault_v1", "alice (CLI)", "drill").await.expect("pause");
    assert!(outcome.opened, "an operator's pause opens an incident");
    let hash = outcome.proposal.expect("proposed").proposal.safe_tx_hash;
    sign(&replica, &bed.owners[1..], hash).await;
    replica.settle().await;
    assert!(is_paused(&reader, target).await.expect("paused()"));
    assert_eq!(replica.incident(outcome.incident).state, State::Contained);
    // Pausing again: nothing to do, and said so.
    let again = replica.desk.pause("vault_v1", "alice (CLI)", "again").await.expect("pause");
    assert!(again.proposal.is_none());
    assert!(again.note.as_deref().is_some_and(|n| n.contains("already paused")), "{again:?}");

    let unpause = replica.desk.unpause("vault_v1", "bob", "fixed").await.expect("unpause");
    let hash = unpause.proposal().expect("proposed").safe_tx_hash;
    sign(&replica, &bed.owners[..1], hash).await;
    replica.settle().await;
    assert!(is_paused(&reader, target).await.expect("paused()"), "one approval unpauses nothing");
    sign(&replica, &bed.owners[2..], hash).await;
    replica.settle().await;
    assert!(!is_paused(&reader, target).await.expect("paused()"));
}

#[tokio::test]
async fn a_pause_whose_nonce_was_consumed_is_proposed_again_and_an_unpause_is_not() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replica =
        Replica::new(&bed, &dir.path().join("g.sqlite"), Some(bed.deployer.clone())).await;
    let outcome = replica.desk.pause("vault", "alice", "odd").await.expect("pause");
    let old = outcome.proposal.expect("proposed").proposal;
    sign(&replica, &bed.owners[..1], old.safe_tx_hash).await;

    // Meanwhile the owners use the same Safe nonce for something else: pausing the factory.
    let other = proposal_tx(bed.targets.factory, old.calldata.clone(), old.nonce);
    let other_hash = bed.safe.tx_hash(&other);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, other_hash).expect("sign")))
        .collect();
    let exec = bed.safe.execute(&bed.deployer, &other, &approvals, &SendOptions::default()).await;
    assert!(exec.expect("executes").success);

    replica.settle().await;
    let stale = replica.ms.detail(old.safe_tx_hash).expect("detail").expect("exists");
    assert_eq!(stale.proposal.status, ProposalStatus::Stale);
    let new = pending(&replica, outcome.incident);
    let fresh = replica.ms.detail(new).expect("detail").expect("exists").proposal;
    assert_eq!((fresh.status, fresh.nonce), (ProposalStatus::Pending, old.nonce + U256::from(1)));
    assert_eq!(fresh.replaces, Some(old.safe_tx_hash));
    assert_eq!(stale.proposal.replaced_by, Some(new));

    // Signing the stale one is refused and points at the replacement.
    let sig = signature(&bed.owners[1], old.safe_tx_hash);
    match replica.ms.submit_signature(old.safe_tx_hash, bed.owners[1].address(), &sig).await {
        Err(e @ SubmitError::NotPending { .. }) => {
            assert!(e.to_string().contains(&new.to_string()), "{e}")
        }
        other => panic!("expected NotPending, got {other:?}"),
    }
    // The replacement executes normally.
    sign(&replica, &bed.owners[..2], new).await;
    replica.settle().await;
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));

    // An unpause whose nonce is consumed is left stale: not proposed again by itself.
    let unpause = replica.desk.unpause("vault", "bob", "fixed").await.expect("unpause");
    let unpause = unpause.proposal().expect("proposed").clone();
    let other = proposal_tx(
        bed.targets.factory,
        guardian_core::proposal::no_arg_calldata("unpause()").expect("cd"),
        unpause.nonce,
    );
    let other_hash = bed.safe.tx_hash(&other);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, other_hash).expect("sign")))
        .collect();
    bed.safe.execute(&bed.deployer, &other, &approvals, &SendOptions::default()).await.expect("ok");
    replica.settle().await;
    let stale = replica.ms.detail(unpause.safe_tx_hash).expect("d").expect("e").proposal;
    assert_eq!(stale.status, ProposalStatus::Stale);
    assert!(replica.ms.list(Some(ProposalStatus::Pending)).expect("list").is_empty());
}

/// A reorg retracted the finding after both owners approved: the proposal is withdrawn, a
/// late approval is refused naming why, and nothing is ever sent.
#[tokio::test]
async fn a_retracted_incident_never_executes_its_proposal() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (_, incident) = record_finding(&bed, &db, true);
    let mut replica = Replica::new(&bed, &db, Some(bed.deployer.clone())).await;
    replica.settle().await;
    let hash = pending(&replica, incident);
    sign(&replica, &bed.owners[..1], hash).await;
    // The finding's block is orphaned (the follower's rewind).
    let mut store = Store::open(&db).expect("store");
    let genesis = BlockRef { number: 0, hash: B256::repeat_byte(0), parent_hash: B256::ZERO };
    assert_eq!(store.rewind(genesis).expect("rewind").len(), 1);
    assert_eq!(replica.incident(incident).state, State::Withdrawn);

    match replica
        .ms
        .submit_signature(hash, bed.owners[1].address(), &signature(&bed.owners[1], hash))
        .await
    {
        Err(e @ SubmitError::NotPending { .. }) => {
            let text = e.to_string();
            assert!(text.contains("withdrawn") && text.contains("retracted"), "{text}");
        }
        other => panic!("expected a refusal naming the retraction, got {other:?}"),
    }
    let refused = replica.ms.detail_to_approve(hash).expect_err("approve refuses before signing");
    assert!(format!("{refused:#}").contains("retracted"), "{refused:#}");
    // Even with the threshold met on chain, the responder sends nothing.
    bed.safe
        .approve_hash_onchain(
            &bed.devnet.provider_for(bed.owners[2].clone()),
            bed.owners[2].address(),
            hash,
        )
        .await
        .expect("approveHash");
    replica.settle().await;
    assert_eq!(execution_successes(&bed, hash).await, 0);
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::ZERO, "no execTransaction");
    assert!(!is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
}

#[tokio::test]
async fn an_unfunded_executor_is_refused_at_once_and_audited_once() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    // An executor with no ether: every attempt fails the same way.
    let broke = PrivateKeySigner::random();
    let (_, incident) = record_finding(&bed, &db, false);
    let mut replica = Replica::new(&bed, &db, Some(broke)).await;
    replica.settle().await;
    let hash = pending(&replica, incident);
    sign(&replica, &bed.owners[..2], hash).await;
    for _ in 0..3 {
        replica.settle().await;
        // The retry waits its backoff; make it due again, as time passing would.
        let store = replica.ms.store();
        for row in store.incident_effects(incident).expect("effects") {
            if row.done_at.is_none() && row.attempts > 0 {
                store
                    .effect_failed(row.id, row.last_error.as_deref().unwrap_or(""), 0)
                    .expect("due");
            }
        }
    }
    let failures: Vec<_> = replica
        .ms
        .store()
        .incident_events(incident)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind.as_str() == "execution_failed")
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let cause = failures[0].event.describe();
    // Refused before signing, with the figures, instead of minutes of retries.
    assert!(cause.contains("holds 0 wei") && cause.contains("fund the executor"), "{cause}");
    let notices: Vec<String> = replica
        .ms
        .store()
        .incident_effects(incident)
        .expect("effects")
        .into_iter()
        .map(|e| e.key)
        .filter(|k| k.contains("execution-failed"))
        .collect();
    assert_eq!(notices.len(), 1, "one notification: {notices:?}");
    assert!(!is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
}
