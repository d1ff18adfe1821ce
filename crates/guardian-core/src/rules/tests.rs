//! The engine without a chain: each rule kind fires above its threshold and stays silent at it.

use alloy_primitives::{Address, B256, Bytes, U256, address, b256};
use alloy_sol_types::{SolCall, SolEvent, sol};

use super::*;
use crate::{
    finding::{BlockInput, ObservedLog, StateValue, TxOutcome},
    severity::{Action, Severity, SeverityPolicy},
};

sol! {
    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    event Paused(address account);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event Upgraded(address indexed implementation);
    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
    event Transfer(address indexed from, address indexed to, uint256 value);
    function solvent() external view returns (bool);
    function totalDeposits() external view returns (uint256);
    function balanceOf(address holder) external view returns (uint256);
}

const VAULT: Address = address!("0x00000000000000000000000000000000000000aa");
const TOKEN: Address = address!("0x00000000000000000000000000000000000000bb");
const SAFE: Address = address!("0x00000000000000000000000000000000000005af");
const ALICE: Address = address!("0x0000000000000000000000000000000000000a11");
const WITHDRAWN: &str = "Withdrawn(address indexed account, address indexed to, uint256 amount)";
const ETHER: u128 = 1_000_000_000_000_000_000;

fn contracts() -> Vec<WatchedContract> {
    vec![
        WatchedContract { name: "vault".into(), address: VAULT, policy: ContractPolicy::default() },
        WatchedContract { name: "token".into(), address: TOKEN, policy: ContractPolicy::default() },
        WatchedContract { name: "safe".into(), address: SAFE, policy: ContractPolicy::default() },
    ]
}

fn rule(name: &str, severity: Option<Severity>, contracts: &[&str], kind: RuleKind) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        severity,
        contracts: contracts.iter().map(|c| (*c).to_owned()).collect(),
        kind,
    }
}

fn engine(rules: Vec<RuleSpec>) -> RuleEngine {
    RuleEngine::new(contracts(), rules, SeverityPolicy::default()).expect("rules compile")
}

fn event_rule(name: &str, signature: &str, predicates: &[&str]) -> RuleSpec {
    rule(
        name,
        Some(Severity::High),
        &["vault"],
        RuleKind::Event(EventSpec {
            signature: signature.into(),
            predicates: predicates.iter().map(|p| (*p).to_owned()).collect(),
        }),
    )
}

fn block(number: u64) -> BlockInput {
    BlockInput {
        number,
        hash: B256::with_last_byte(number as u8),
        parent_hash: B256::with_last_byte(number.wrapping_sub(1) as u8),
        timestamp: 1_700_000_000 + number,
        ..BlockInput::default()
    }
}

fn log(address: Address, event: &impl SolEvent, index: u64) -> ObservedLog {
    let data = event.encode_log_data();
    ObservedLog {
        address,
        topics: data.topics().to_vec(),
        data: data.data,
        tx_hash: B256::with_last_byte(0xf0 + index as u8),
        log_index: index,
    }
}

fn withdrawn(amount: u128) -> Withdrawn {
    Withdrawn { account: ALICE, to: ALICE, amount: U256::from(amount) }
}

fn block_with_logs(number: u64, logs: Vec<ObservedLog>) -> BlockInput {
    BlockInput { logs, ..block(number) }
}

// ---------------------------------------------------------------- event

#[test]
fn event_fires_strictly_above_the_threshold_with_evidence() {
    let mut engine = engine(vec![event_rule("big-withdrawal", WITHDRAWN, &["amount > 5 ether"])]);
    let at = block_with_logs(1, vec![log(VAULT, &withdrawn(5 * ETHER), 0)]);
    assert!(engine.evaluate(&at).is_empty(), "exactly 5 ether is not above 5 ether");

    let above = block_with_logs(2, vec![log(VAULT, &withdrawn(5 * ETHER + 1), 3)]);
    let findings = engine.evaluate(&above);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(
        (f.rule.as_str(), f.contract.as_str(), f.address),
        ("big-withdrawal", "vault", VAULT)
    );
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.action, Action::ProposePause { then_rollback: false });
    assert_eq!(f.evidence.block_number, 2);
    assert_eq!(f.evidence.block_hash, above.hash);
    assert_eq!(f.evidence.tx_hash, Some(above.logs[0].tx_hash));
    assert_eq!(f.evidence.log_index, Some(3));
    assert_eq!(f.evidence.values["amount"], (5 * ETHER + 1).to_string());
    assert_eq!(f.evidence.values["to"], ALICE.to_checksum(None));
    assert_eq!(f.evidence.threshold, "Withdrawn where amount > 5 ether");
    assert!(f.summary.contains("vault emitted Withdrawn"), "{}", f.summary);
}

#[test]
fn event_without_predicates_fires_on_every_log_and_only_for_its_contracts() {
    let mut engine = engine(vec![event_rule(
        "owner-change",
        "event OwnershipTransferred(address indexed previousOwner, address indexed newOwner)",
        &[],
    )]);
    let ev = OwnershipTransferred { previousOwner: SAFE, newOwner: ALICE };
    let findings = engine.evaluate(&block_with_logs(
        1,
        vec![log(VAULT, &ev, 0), log(VAULT, &ev, 1), log(TOKEN, &ev, 2)],
    ));
    assert_eq!(findings.len(), 2, "token is not one of the rule's contracts");
    assert_eq!(findings[1].evidence.values["newOwner"], ALICE.to_checksum(None));
    assert!(engine.evaluate(&block(2)).is_empty(), "an empty block finds nothing");
}

#[test]
fn paused_by_an_unexpected_account() {
    let mut engine = engine(vec![event_rule(
        "unexpected-pause",
        "Paused(address account)",
        &["account not in [safe, 0x0000000000000000000000000000000000000001]"],
    )]);
    let by_safe = block_with_logs(1, vec![log(VAULT, &Paused { account: SAFE }, 0)]);
    assert!(engine.evaluate(&by_safe).is_empty());
    let by_alice = block_with_logs(2, vec![log(VAULT, &Paused { account: ALICE }, 0)]);
    assert_eq!(engine.evaluate(&by_alice).len(), 1);

    let mut only_alice = self::engine(vec![event_rule(
        "alice-pause",
        "Paused(address account)",
        &[&format!("account in [{ALICE}]")],
    )]);
    assert_eq!(only_alice.evaluate(&by_alice).len(), 1);
    assert!(only_alice.evaluate(&block_with_logs(3, by_safe.logs.clone())).is_empty());
}

#[test]
fn equality_predicates_on_addresses_and_bytes32() {
    let admin_role = B256::ZERO;
    let mut engine = engine(vec![
        event_rule(
            "upgraded",
            "Upgraded(address indexed implementation)",
            &[&format!("implementation != {ALICE}")],
        ),
        event_rule(
            "admin-granted",
            "RoleGranted(bytes32 indexed role, address indexed account, address indexed sender)",
            &[&format!("role == {admin_role}")],
        ),
    ]);
    let logs = vec![
        log(VAULT, &Upgraded { implementation: ALICE }, 0),
        log(VAULT, &Upgraded { implementation: SAFE }, 1),
        log(VAULT, &RoleGranted { role: admin_role, account: ALICE, sender: SAFE }, 2),
        log(VAULT, &RoleGranted { role: B256::with_last_byte(1), account: ALICE, sender: SAFE }, 3),
    ];
    let findings = engine.evaluate(&block_with_logs(1, logs));
    let hits: Vec<_> = findings.iter().map(|f| (f.rule.as_str(), f.evidence.log_index)).collect();
    assert_eq!(hits, [("upgraded", Some(1)), ("admin-granted", Some(2))]);
}

#[test]
fn logs_that_share_topic0_but_not_the_layout_are_not_matches() {
    // ERC-721 Transfer: same topic0 as ERC-20's, three indexed fields and no data.
    let mut engine = engine(vec![event_rule(
        "erc20-out",
        "Transfer(address indexed from, address indexed to, uint256 value)",
        &["from == vault"],
    )]);
    let erc20 = log(VAULT, &Transfer { from: VAULT, to: ALICE, value: U256::from(1) }, 0);
    let mut erc721 = erc20.clone();
    erc721.topics.push(B256::with_last_byte(9));
    erc721.data = Bytes::new();
    let mut garbage = erc20.clone();
    garbage.data = Bytes::from_static(&[1, 2, 3]);
    let findings = engine.evaluate(&block_with_logs(1, vec![erc721, garbage, erc20]));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.log_index, Some(0));
}

// ---------------------------------------------------------------- window

fn window_rule(measure: WindowMeasure, threshold: &str, blocks: u64) -> RuleSpec {
    rule(
        "drain",
        Some(Severity::Critical),
        &["vault"],
        RuleKind::Window(WindowSpec {
            event: EventSpec { signature: WITHDRAWN.into(), predicates: vec![] },
            blocks,
            measure,
            threshold: threshold.into(),
        }),
    )
}

#[test]
fn window_sum_catches_a_drain_of_small_withdrawals() {
    let mut engine = engine(vec![window_rule(WindowMeasure::Sum("amount".into()), "10 ether", 5)]);
    assert_eq!(engine.warmup_blocks(), 5);
    // Blocks 1..=5: two withdrawals of 1 ether each → 10 ether over the window: not above.
    for n in 1..=5 {
        let logs = vec![log(VAULT, &withdrawn(ETHER), 0), log(VAULT, &withdrawn(ETHER), 1)];
        assert!(engine.evaluate(&block_with_logs(n, logs)).is_empty(), "block {n}");
    }
    // Block 6: block 1 leaves the window (8 ether), 2 ether + 1 wei arrive → 10 ether + 1 wei.
    let logs = vec![log(VAULT, &withdrawn(2 * ETHER + 1), 4)];
    let findings = engine.evaluate(&block_with_logs(6, logs));
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.evidence.values["sum"], (10 * ETHER + 1).to_string());
    assert_eq!(f.evidence.values["first_block"], "2");
    assert_eq!(f.evidence.log_index, Some(4));
    assert_eq!(f.evidence.threshold, "sum(amount) of Withdrawn > 10 ether in 5 blocks");
    // A quiet block: block 2 leaves the window (8 ether + 1 wei remain) and the rule falls silent.
    assert!(engine.evaluate(&block(7)).is_empty());
}

#[test]
fn window_count_fires_on_the_count_above_threshold() {
    let mut engine = engine(vec![window_rule(WindowMeasure::Count, "3", 10)]);
    let one = |n, i| block_with_logs(n, vec![log(VAULT, &withdrawn(1), i)]);
    assert!(engine.evaluate(&one(1, 0)).is_empty());
    assert!(engine.evaluate(&one(2, 0)).is_empty());
    assert!(engine.evaluate(&one(3, 0)).is_empty(), "3 is not above 3");
    let findings = engine.evaluate(&one(4, 7));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["count"], "4");
}

#[test]
fn window_rewind_forgets_orphaned_blocks() {
    let mut engine = engine(vec![window_rule(WindowMeasure::Count, "1", 10)]);
    let one = |n| block_with_logs(n, vec![log(VAULT, &withdrawn(1), 0)]);
    assert!(engine.evaluate(&one(1)).is_empty());
    // A reorg replaces block 2: feeding another block 2 must not count the orphan.
    assert!(engine.evaluate(&one(2)).len() == 1);
    assert!(engine.evaluate(&block(2)).is_empty(), "orphaned block 2 was dropped");
    engine.rewind(0);
    assert_eq!(engine.last_block(), Some(0));
    assert!(engine.evaluate(&one(1)).is_empty(), "block 1 was rewound too");
}

// ---------------------------------------------------------------- revert rate

fn txs(number: u64, ok: usize, failed: usize) -> BlockInput {
    let mut transactions = Vec::new();
    for i in 0..ok + failed {
        transactions.push(TxOutcome {
            hash: B256::with_last_byte(i as u8),
            to: Some(VAULT),
            success: i < ok,
        });
    }
    // Transactions to other contracts do not count.
    transactions.push(TxOutcome { hash: B256::repeat_byte(0xee), to: Some(TOKEN), success: false });
    BlockInput { transactions, ..block(number) }
}

fn revert_rule(threshold: Option<Ratio>, min_sample: u64) -> RuleSpec {
    rule(
        "reverts",
        None,
        &["vault"],
        RuleKind::RevertRate(RevertRateSpec { blocks: 3, threshold, min_sample }),
    )
}

#[test]
fn revert_rate_above_ten_percent_is_critical_and_ten_percent_is_not() {
    let mut engine = engine(vec![revert_rule(None, 10)]);
    assert!(engine.evaluate(&txs(1, 9, 1)).is_empty(), "1 of 10 = 10 %: not above");
    let findings = engine.evaluate(&txs(2, 8, 1));
    assert_eq!(findings.len(), 1, "2 of 19 ≈ 10.5 %");
    let f = &findings[0];
    assert_eq!(f.severity, Severity::Critical, "the matrix's default for revert rates");
    assert!(f.action.proposes_pause());
    assert_eq!(f.evidence.values["failed"], "2");
    assert_eq!(f.evidence.values["total"], "19");
    assert_eq!(f.evidence.values["rate"], "10.52%");
    assert_eq!(f.evidence.tx_hash, Some(B256::with_last_byte(8)));
    assert!(f.evidence.threshold.starts_with("failed/total > 10% in 3 blocks"));
}

#[test]
fn revert_rate_needs_its_minimum_sample_and_forgets_old_blocks() {
    let mut engine = engine(vec![revert_rule(Some("50%".parse().expect("ratio")), 4)]);
    assert!(engine.evaluate(&txs(1, 0, 3)).is_empty(), "3 txs < min sample 4, even all failed");
    assert_eq!(engine.evaluate(&txs(2, 0, 1)).len(), 1, "4 of 4 failed");
    assert!(engine.evaluate(&txs(3, 4, 0)).is_empty(), "4 of 8 = 50 %: not above");
    // The window is 3 blocks: at block 4, block 1's three failures are gone: 4 of 8 again,
    // where counting block 1 would give 7 of 11.
    assert!(engine.evaluate(&txs(4, 0, 3)).is_empty());
    assert_eq!(engine.evaluate(&txs(5, 0, 2)).len(), 1, "blocks 3..=5: 5 of 9 failed");
}

// ---------------------------------------------------------------- balance drop

fn balance_rule(asset: BalanceAsset) -> RuleSpec {
    rule(
        "outflow",
        Some(Severity::High),
        &["vault"],
        RuleKind::BalanceDrop(BalanceDropSpec {
            asset,
            drop: "30%".parse().expect("ratio"),
            blocks: 3,
        }),
    )
}

fn with_balance(number: u64, query: &StateQuery, value: Option<StateValue>) -> BlockInput {
    let mut b = block(number);
    if let Some(value) = value {
        b.state.insert(query.clone(), value);
    }
    b
}

#[test]
fn balance_drop_against_the_window_maximum() {
    let mut engine = engine(vec![balance_rule(BalanceAsset::Native)]);
    let q = StateQuery::NativeBalance(VAULT);
    assert!(engine.queries().contains(&q));
    assert_eq!(engine.warmup_blocks(), 4);
    let bal = |n, v: u64| with_balance(n, &q, Some(StateValue::Uint(U256::from(v))));
    assert!(engine.evaluate(&bal(1, 1000)).is_empty());
    assert!(engine.evaluate(&bal(2, 800)).is_empty());
    assert!(engine.evaluate(&bal(3, 700)).is_empty(), "exactly 30 % below 1000");
    let findings = engine.evaluate(&bal(4, 699));
    assert_eq!(findings.len(), 1, "30.1 % below block 1's 1000, still in the window");
    let f = &findings[0];
    assert_eq!(f.evidence.values["max"], "1000");
    assert_eq!(f.evidence.values["max_block"], "1");
    assert_eq!(f.evidence.values["drop_percent"], "30.10%");
    // Block 5: block 1 left the window; the max is now 800 and 699 is 12.6 % below it.
    assert!(engine.evaluate(&bal(5, 699)).is_empty());
}

#[test]
fn balance_drop_skips_missing_and_failed_reads() {
    let token = BalanceAsset::Erc20(TOKEN);
    let mut engine = engine(vec![balance_rule(token)]);
    let q = StateQuery::Erc20Balance { token: TOKEN, holder: VAULT };
    assert!(engine.queries().contains(&q));
    assert!(
        engine.evaluate(&with_balance(1, &q, Some(StateValue::Uint(U256::from(100))))).is_empty()
    );
    assert!(engine.evaluate(&with_balance(2, &q, None)).is_empty());
    assert!(
        engine
            .evaluate(&with_balance(3, &q, Some(StateValue::Failed("execution reverted".into()))))
            .is_empty()
    );
    let word = StateValue::Word(B256::from(U256::from(10)));
    assert_eq!(engine.evaluate(&with_balance(4, &q, Some(word))).len(), 1, "90 % below");
}

#[test]
fn balance_drop_rewind_rebuilds_the_maximum() {
    let mut engine = engine(vec![balance_rule(BalanceAsset::Native)]);
    let q = StateQuery::NativeBalance(VAULT);
    let bal = |n, v: u64| with_balance(n, &q, Some(StateValue::Uint(U256::from(v))));
    engine.evaluate(&bal(1, 100));
    engine.evaluate(&bal(2, 1000)); // will be orphaned
    // Reorg: block 2 is replaced. 69 is 31 % below 100 (block 1), not 93 % below the orphan.
    let findings = engine.evaluate(&bal(2, 69));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["max"], "100");
}

// ---------------------------------------------------------------- code change

fn code_rule(target: CodeTarget, expected: Option<&str>) -> RuleSpec {
    rule(
        "code",
        Some(Severity::Critical),
        &["vault"],
        RuleKind::CodeChange(CodeChangeSpec { target, expected: expected.map(str::to_owned) }),
    )
}

#[test]
fn code_hash_change_against_the_first_value_seen() {
    let mut engine = engine(vec![code_rule(CodeTarget::CodeHash, None)]);
    let q = StateQuery::CodeHash(VAULT);
    let code = |n, h: u8| with_balance(n, &q, Some(StateValue::Word(B256::repeat_byte(h))));
    assert!(engine.evaluate(&code(1, 1)).is_empty(), "first value is the baseline");
    assert!(engine.evaluate(&code(2, 1)).is_empty());
    assert!(engine.evaluate(&with_balance(3, &q, None)).is_empty(), "missing read");
    let findings = engine.evaluate(&code(4, 2));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["expected"], B256::repeat_byte(1).to_string());
    assert_eq!(findings[0].evidence.values["baseline_block"], "1");
    // A reorg down to before the baseline forgets it: the next value seen is the new baseline.
    engine.rewind(0);
    assert!(engine.evaluate(&code(1, 2)).is_empty());
}

#[test]
fn a_learned_baseline_is_relearned_from_the_last_block_seen_before_a_restart() {
    let q = StateQuery::CodeHash(VAULT);
    let code = |n, h: u8| with_balance(n, &q, Some(StateValue::Word(B256::repeat_byte(h))));
    let learned = engine(vec![code_rule(CodeTarget::CodeHash, None)]);
    assert_eq!(learned.warmup_blocks(), 1, "the cursor block is replayed");
    let configured = engine(vec![code_rule(CodeTarget::CodeHash, Some(&B256::ZERO.to_string()))]);
    assert_eq!(configured.warmup_blocks(), 0, "nothing to relearn");

    // Before the restart guardian saw block 5 with code 1; the code changed while it was down.
    let mut restarted = learned;
    assert!(restarted.evaluate(&code(5, 1)).is_empty(), "replayed cursor block: the baseline");
    let findings = restarted.evaluate(&code(9, 2));
    assert_eq!(findings.len(), 1, "the change made during the downtime is caught");
    assert_eq!(findings[0].evidence.values["baseline_block"], "5");
}

#[test]
fn implementation_slot_against_the_configured_implementation() {
    let expected = address!("0x1111111111111111111111111111111111111111");
    let mut engine =
        engine(vec![code_rule(CodeTarget::Implementation, Some(&expected.to_string()))]);
    let q = StateQuery::Storage {
        address: VAULT,
        slot: b256!("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc"),
    };
    assert!(engine.queries().contains(&q));
    let slot = |n, a: Address| with_balance(n, &q, Some(StateValue::Word(a.into_word())));
    assert!(engine.evaluate(&slot(1, expected)).is_empty());
    let findings = engine.evaluate(&slot(2, ALICE));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["actual"], ALICE.to_checksum(None));
    assert_eq!(findings[0].evidence.values["expected"], expected.to_checksum(None));
    assert_eq!(
        findings[0].evidence.threshold,
        format!("EIP-1967 implementation != {}", expected.to_checksum(None))
    );
}

// ---------------------------------------------------------------- invariant

fn call(signature: &str) -> CallSpec {
    CallSpec { signature: signature.into(), args: vec![], contract: None }
}

fn invariant_rule(left: CallSpec, op: CmpOp, other: Operand) -> RuleSpec {
    rule(
        "invariant",
        Some(Severity::Critical),
        &["vault"],
        RuleKind::Invariant(InvariantSpec { call: left, op, other }),
    )
}

fn call_query(to: Address, data: Vec<u8>) -> StateQuery {
    StateQuery::Call { to, data: data.into() }
}

fn returns(value: U256) -> StateValue {
    StateValue::Bytes(Bytes::copy_from_slice(&value.to_be_bytes::<32>()))
}

#[test]
fn invariant_with_a_constant() {
    let mut engine = engine(vec![invariant_rule(
        call("solvent() returns (bool)"),
        CmpOp::Eq,
        Operand::Value("true".into()),
    )]);
    let q = call_query(VAULT, solventCall {}.abi_encode());
    assert_eq!(engine.queries().iter().collect::<Vec<_>>(), [&q]);
    assert!(engine.evaluate(&with_balance(1, &q, Some(returns(U256::from(1))))).is_empty());
    assert!(
        engine
            .evaluate(&with_balance(2, &q, Some(StateValue::Failed("execution reverted".into()))))
            .is_empty()
    );
    assert!(
        engine.evaluate(&with_balance(3, &q, Some(StateValue::Bytes(Bytes::new())))).is_empty(),
        "undecodable"
    );
    let findings = engine.evaluate(&with_balance(4, &q, Some(returns(U256::ZERO))));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["solvent()"], "false");
    assert_eq!(findings[0].evidence.threshold, "solvent() == true must hold");
}

#[test]
fn invariant_at_the_boundary_of_an_amount() {
    let mut engine = engine(vec![invariant_rule(
        call("totalDeposits() returns (uint256)"),
        CmpOp::Le,
        Operand::Value("100 ether".into()),
    )]);
    let q = call_query(VAULT, totalDepositsCall {}.abi_encode());
    assert!(
        engine.evaluate(&with_balance(1, &q, Some(returns(U256::from(100 * ETHER))))).is_empty()
    );
    assert_eq!(
        engine.evaluate(&with_balance(2, &q, Some(returns(U256::from(100 * ETHER + 1))))).len(),
        1
    );
}

#[test]
fn invariant_between_two_calls_on_two_contracts() {
    // token.balanceOf(vault) >= vault.totalDeposits()
    let mut engine = engine(vec![invariant_rule(
        CallSpec {
            signature: "balanceOf(address) returns (uint256)".into(),
            args: vec!["self".into()],
            contract: Some("token".into()),
        },
        CmpOp::Ge,
        Operand::Call(call("totalDeposits() returns (uint256)")),
    )]);
    let held = call_query(TOKEN, balanceOfCall { holder: VAULT }.abi_encode());
    let owed = call_query(VAULT, totalDepositsCall {}.abi_encode());
    assert_eq!(engine.queries().len(), 2);
    let at = |n, h: u64, o: u64| {
        let mut b = block(n);
        b.state.insert(held.clone(), returns(U256::from(h)));
        b.state.insert(owed.clone(), returns(U256::from(o)));
        b
    };
    assert!(engine.evaluate(&at(1, 10, 10)).is_empty());
    let findings = engine.evaluate(&at(2, 9, 10));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence.values["balanceOf(self)"], "9");
    assert_eq!(findings[0].evidence.values["totalDeposits()"], "10");
    // One side missing: no judgement.
    let mut partial = at(3, 0, 10);
    partial.state.remove(&owed);
    assert!(engine.evaluate(&partial).is_empty());
}

// ---------------------------------------------------------------- engine

#[test]
fn contract_policy_turns_pause_into_pause_then_rollback() {
    let mut contracts = contracts();
    contracts[0].policy.rollback_after_pause = true;
    contracts[0]
        .policy
        .overrides
        .insert(Severity::Medium, Action::ProposePause { then_rollback: false });
    let mut spec = event_rule("any-withdrawal", WITHDRAWN, &[]);
    spec.severity = Some(Severity::Medium);
    let mut engine =
        RuleEngine::new(contracts, vec![spec], SeverityPolicy::default()).expect("compiles");
    let findings = engine.evaluate(&block_with_logs(1, vec![log(VAULT, &withdrawn(1), 0)]));
    assert_eq!(findings[0].action, Action::ProposePause { then_rollback: true });

    let low = event_rule("low", WITHDRAWN, &[]);
    let engine = RuleEngine::new(
        self::contracts(),
        vec![RuleSpec { severity: Some(Severity::Low), ..low }],
        SeverityPolicy::default(),
    )
    .expect("compiles");
    let summary: Vec<_> = engine.rules().collect();
    assert_eq!(summary[0].targets, [("vault", Action::Log)]);
}

#[test]
fn engine_reports_what_the_follower_must_fetch() {
    let engine = engine(vec![
        event_rule("w", WITHDRAWN, &[]),
        window_rule(WindowMeasure::Count, "3", 50),
        code_rule(CodeTarget::CodeHash, None),
    ]);
    assert_eq!(engine.topics().iter().collect::<Vec<_>>(), [&Withdrawn::SIGNATURE_HASH]);
    assert_eq!(engine.watched_addresses().into_iter().collect::<Vec<_>>(), [VAULT, TOKEN, SAFE]);
    assert_eq!(engine.queries().iter().collect::<Vec<_>>(), [&StateQuery::CodeHash(VAULT)]);
    assert_eq!(engine.warmup_blocks(), 50);
}

#[test]
fn state_is_a_function_of_the_blocks_fed() {
    let rules = || {
        vec![
            window_rule(WindowMeasure::Sum("amount".into()), "3 ether", 4),
            revert_rule(None, 1),
            event_rule("w", WITHDRAWN, &["amount >= 1 ether"]),
        ]
    };
    let blocks: Vec<_> = (1..=12)
        .map(|n| {
            let mut b = txs(n, 3, usize::from(n % 3 == 0));
            b.logs = vec![log(VAULT, &withdrawn(ETHER), 0)];
            b
        })
        .collect();
    let mut live = engine(rules());
    let all: Vec<_> = blocks.iter().map(|b| live.evaluate(b)).collect();
    // A restarted engine fed only the last warmup_blocks blocks agrees from then on.
    let mut restarted = engine(rules());
    let from = blocks.len() - restarted.warmup_blocks() as usize;
    let replayed: Vec<_> = blocks[from..].iter().map(|b| restarted.evaluate(b)).collect();
    assert_eq!(replayed.last(), all.last());
    assert!(!all.last().expect("findings").is_empty());
    // And the same blocks always give the same findings.
    let mut again = engine(rules());
    assert_eq!(blocks.iter().map(|b| again.evaluate(b)).collect::<Vec<_>>(), all);
}

fn compile_error(spec: RuleSpec) -> RuleError {
    match RuleEngine::new(contracts(), vec![spec], SeverityPolicy::default()) {
        Err(EngineError::Rule(e)) => e,
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn invalid_rules_are_refused_naming_the_key() {
    let mut unknown = event_rule("r", WITHDRAWN, &[]);
    unknown.contracts = vec!["vault".into(), "treasury".into()];
    let e = compile_error(unknown);
    assert_eq!((e.key, e.index), ("contracts", Some(1)));
    assert!(e.message.contains("unknown contract \"treasury\""), "{e}");

    let e = compile_error(event_rule("r", "Withdrawn(address indexed account,", &[]));
    assert_eq!(e.key, "event");

    let e = compile_error(event_rule("r", WITHDRAWN, &["amount > 1 ether", "amout > 2"]));
    assert_eq!((e.key, e.index), ("where", Some(1)));
    assert!(e.message.contains("no field \"amout\""), "{e}");

    for bad in [
        "amount >",
        "amount ~ 1",
        "to > 0x0000000000000000000000000000000000000001",
        "to == 0x12",
        "amount in 1",
    ] {
        let e = compile_error(event_rule("r", WITHDRAWN, &[bad]));
        assert_eq!(e.key, "where", "{bad}");
    }

    let mut no_severity = event_rule("r", WITHDRAWN, &[]);
    no_severity.severity = None;
    assert_eq!(compile_error(no_severity).key, "severity");

    assert_eq!(compile_error(window_rule(WindowMeasure::Count, "3", 0)).key, "blocks");
    assert_eq!(compile_error(window_rule(WindowMeasure::Count, "3 ether", 5)).key, "threshold");
    assert_eq!(compile_error(window_rule(WindowMeasure::Sum("to".into()), "3", 5)).key, "sum");

    let mut two = code_rule(CodeTarget::CodeHash, Some("0x12"));
    assert_eq!(compile_error(two.clone()).key, "expected");
    two.contracts.push("token".into());
    two.kind = RuleKind::CodeChange(CodeChangeSpec {
        target: CodeTarget::CodeHash,
        expected: Some(B256::ZERO.to_string()),
    });
    assert_eq!(compile_error(two).key, "expected");

    let e =
        compile_error(invariant_rule(call("solvent()"), CmpOp::Eq, Operand::Value("true".into())));
    assert_eq!(e.key, "call");
    let e = compile_error(invariant_rule(
        call("solvent() returns (bool)"),
        CmpOp::Lt,
        Operand::Value("true".into()),
    ));
    assert_eq!(e.key, "op");
    let e = compile_error(invariant_rule(
        call("solvent() returns (bool)"),
        CmpOp::Eq,
        Operand::Value("1".into()),
    ));
    assert_eq!(e.key, "value");

    let dup = RuleEngine::new(
        contracts(),
        vec![event_rule("same", WITHDRAWN, &[]), event_rule("same", WITHDRAWN, &[])],
        SeverityPolicy::default(),
    );
    assert!(matches!(dup, Err(EngineError::Rule(RuleError { key: "name", .. }))));

    let mut twice = contracts();
    twice[1].address = VAULT;
    assert!(matches!(
        RuleEngine::new(twice, vec![], SeverityPolicy::default()),
        Err(EngineError::Contract { .. })
    ));
}
