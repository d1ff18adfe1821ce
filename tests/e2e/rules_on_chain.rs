//! Every rule kind on a real chain: silent when the chain sits exactly at the threshold, firing
//! one step past it. Each test writes a TOML config with the testbed's addresses and runs it
//! through what `guardian run` runs: `Config::parse` → `Config::rule_engine` → `Engine` →
//! `Follower` → `Store`. The anomalies are real transactions (or Anvil state edits) on Anvil.

use alloy::{
    primitives::{Address, B256, U256, keccak256, utils::parse_ether},
    providers::{DynProvider, Provider, ext::AnvilApi},
    rpc::types::{TransactionReceipt, TransactionRequest},
};
use guardian_chain::{Testbed, TestbedOptions, testbed::IVault};
use guardian_config::Config;
use guardian_core::{
    rules::EIP1967_IMPLEMENTATION_SLOT,
    severity::{Action, Severity},
};
use guardian_daemon::{Engine, Follower, FollowerOptions, Step};
use guardian_store::{Occurrence, Store, StoredFinding};

use crate::support::{GuardianToml, drain_until_idle, mined, pool, testbed, testbed_with};

/// A follower running `rules` against the testbed's vault, from the next block on.
struct Watch {
    bed: Testbed,
    follower: Follower<Engine>,
    /// Dev account 7: an ordinary depositor.
    user: IVault::IVaultInstance<DynProvider>,
    /// Dev account 8: the attacker calling VaultV2's unchecked `sponsoredWithdraw`.
    attacker: IVault::IVaultInstance<DynProvider>,
    _dir: tempfile::TempDir,
}

impl Watch {
    async fn start(bed: Testbed, rules: &str) -> Self {
        let start = bed.devnet.reader().get_block_number().await.expect("head") + 1;
        Self::start_at(
            bed,
            rules,
            FollowerOptions { start_block: Some(start), ..Default::default() },
        )
        .await
    }

    /// A follower with `options` (its start block among them).
    async fn start_at(bed: Testbed, rules: &str, options: FollowerOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = GuardianToml::new(&bed, &dir.path().join("guardian.sqlite"), rules);
        let config = Config::parse(&toml.render(), &dir.path().join("guardian.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("test config is valid: {e}"));
        let engine = Engine::new(config.rule_engine().expect("rules compile"));
        let urls: Vec<String> = config.rpc.iter().map(|r| r.url.expose().to_owned()).collect();
        let follower = Follower::new(
            pool(&urls),
            Store::open(&config.storage.path).expect("store"),
            engine,
            options,
        );
        let vault = bed.targets.vault_v2;
        let user = IVault::new(vault, bed.devnet.provider_for(bed.devnet.signer(7).expect("key")));
        let attacker =
            IVault::new(vault, bed.devnet.provider_for(bed.devnet.signer(8).expect("key")));
        Self { bed, follower, user, attacker, _dir: dir }
    }

    /// Let the follower process every block mined so far.
    async fn settle(&mut self) {
        drain_until_idle(&mut self.follower).await;
    }

    fn findings(&self, rule: &str) -> Vec<StoredFinding> {
        let all = self.follower.store().findings(None).expect("findings");
        all.into_iter().filter(|f| f.finding.rule == rule).collect()
    }

    fn occurrences(&self, rule: &str) -> Vec<Occurrence> {
        let all = self.follower.store().occurrences().expect("occurrences");
        all.into_iter().filter(|o| o.rule == rule).collect()
    }

    /// The one finding `rule` recorded, with its occurrences.
    fn only_finding(&self, rule: &str) -> StoredFinding {
        let found = self.findings(rule);
        assert_eq!(found.len(), 1, "{rule}: {found:#?}");
        found.into_iter().next().expect("one")
    }

    fn assert_silent(&self, rule: &str, when: &str) {
        let found = self.findings(rule);
        assert!(found.is_empty(), "{rule} must stay silent {when}: {found:#?}");
    }

    async fn deposit(&self, wei: U256) -> TransactionReceipt {
        let tx = self.user.deposit().value(wei).into_transaction_request();
        self.send(self.user.provider(), tx).await
    }

    async fn withdraw(&self, wei: U256) -> TransactionReceipt {
        self.send(self.user.provider(), self.user.withdraw(wei).into_transaction_request()).await
    }

    /// VaultV2's bug: pays out without touching anyone's balance or `totalDeposits`.
    async fn drain(&self, wei: U256) -> TransactionReceipt {
        let to = self.bed.devnet.signer(8).expect("key").address();
        let tx = self.attacker.sponsoredWithdraw(to, wei).into_transaction_request();
        self.send(self.attacker.provider(), tx).await
    }

    async fn send(&self, from: &DynProvider, tx: TransactionRequest) -> TransactionReceipt {
        let receipt = mined(from, tx).await;
        assert!(receipt.status(), "transaction {} reverted", receipt.transaction_hash);
        receipt
    }

    fn vault(&self) -> Address {
        self.bed.targets.vault_v2
    }
}

/// The vault's native balance may not drop by 30 % or more within 10 blocks.
const BALANCE_DROP_30: &str = r#"
[[rules]]
name = "vault-balance-drop"
kind = "balance_drop"
severity = "critical"
contracts = ["vault"]
asset = "native"
drop = "30%"
blocks = 10
"#;

/// VaultV2's `solvent()` must hold.
const SOLVENT: &str = r#"
[[rules]]
name = "vault-solvent"
kind = "invariant"
severity = "critical"
contracts = ["vault"]
call = "solvent() returns (bool)"
op = "=="
value = true
"#;

fn wei(n: u64) -> U256 {
    U256::from(n)
}

fn ether(n: &str) -> U256 {
    parse_ether(n).expect("ether")
}

#[tokio::test]
async fn event_rule_fires_just_above_its_predicate() {
    let rules = r#"
[[rules]]
name = "large-withdrawal"
kind = "event"
severity = "high"
contracts = ["vault"]
event = "Withdrawn"
where = ["amount > 1000 wei"]
"#;
    let mut w = Watch::start(testbed().await, rules).await;
    w.deposit(ether("1")).await;
    w.withdraw(wei(1_000)).await;
    w.settle().await;
    w.assert_silent("large-withdrawal", "for a withdrawal of exactly 1000 wei");

    let over = w.withdraw(wei(1_001)).await;
    w.settle().await;
    let found = w.only_finding("large-withdrawal");
    assert_eq!(found.occurrences, 1);
    let f = &found.finding;
    assert_eq!((f.contract.as_str(), f.address), ("vault", w.vault()));
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.action, Action::ProposePause { then_rollback: false });
    assert_eq!(f.evidence.tx_hash, Some(over.transaction_hash));
    assert_eq!(f.evidence.block_number, over.block_number.expect("block"));
    assert_eq!(f.evidence.values.get("amount").map(String::as_str), Some("1001"));
}

#[tokio::test]
async fn window_rules_catch_a_drain_of_small_withdrawals() {
    let rules = r#"
[[rules]]
name = "drain-sum"
kind = "window"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
sum = "amount"
blocks = 20
threshold = "5000 wei"

[[rules]]
name = "drain-count"
kind = "window"
severity = "medium"
contracts = ["vault"]
event = "Withdrawn"
blocks = 20
threshold = 5
"#;
    let mut w = Watch::start(testbed().await, rules).await;
    w.deposit(ether("1")).await;
    // Five withdrawals of 1000 wei, one block each: sum 5000, count 5, both exactly at the limit.
    for _ in 0..5 {
        w.withdraw(wei(1_000)).await;
    }
    w.settle().await;
    w.assert_silent("drain-sum", "at a sum of exactly 5000 wei");
    w.assert_silent("drain-count", "at exactly 5 withdrawals");

    // One more wei in a sixth withdrawal tips both.
    let last = w.withdraw(wei(1)).await;
    w.settle().await;
    let sum = w.only_finding("drain-sum");
    assert_eq!(sum.finding.severity, Severity::Critical);
    assert_eq!(sum.finding.evidence.values.get("sum").map(String::as_str), Some("5001"));
    assert_eq!(sum.finding.evidence.values.get("matching_blocks").map(String::as_str), Some("6"));
    assert_eq!(sum.finding.evidence.tx_hash, Some(last.transaction_hash));
    let count = w.only_finding("drain-count");
    assert_eq!(count.finding.action, Action::Alert, "medium alerts under the default policy");
    assert_eq!(count.finding.evidence.values.get("count").map(String::as_str), Some("6"));
    assert_eq!((sum.occurrences, count.occurrences), (1, 1));
}

#[tokio::test]
async fn revert_rate_above_ten_percent_is_critical() {
    // No severity: revert_rate defaults to critical (above 10 % is Critical in the matrix).
    let rules = r#"
[[rules]]
name = "vault-revert-rate"
kind = "revert_rate"
contracts = ["vault"]
blocks = 100
threshold = "10%"
min_sample = 10
"#;
    let mut w = Watch::start(testbed().await, rules).await;
    // Nine successful calls: a deposit and eight withdrawals.
    w.deposit(ether("1")).await;
    for _ in 0..8 {
        w.withdraw(wei(1)).await;
    }
    // A withdrawal above the balance reverts (InsufficientBalance). The explicit gas limit makes
    // the wallet skip estimation, so Anvil mines the failing transaction instead of refusing it.
    let failing = w.user.withdraw(ether("100")).gas(200_000).into_transaction_request();
    let first = mined(w.user.provider(), failing.clone()).await;
    assert!(!first.status(), "the withdrawal above the balance reverts on chain");
    w.settle().await;
    w.assert_silent("vault-revert-rate", "at exactly 1 failure in 10 transactions (10 %)");

    let second = mined(w.user.provider(), failing.clone()).await;
    assert!(!second.status());
    w.settle().await;
    let found = w.only_finding("vault-revert-rate");
    let f = &found.finding;
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.action, Action::PauseNow { then_rollback: false });
    assert_eq!(f.evidence.tx_hash, Some(second.transaction_hash), "the last failed transaction");
    assert_eq!(f.evidence.values.get("failed").map(String::as_str), Some("2"));
    assert_eq!(f.evidence.values.get("total").map(String::as_str), Some("11"));
}

#[tokio::test]
async fn balance_drop_fires_just_past_the_allowed_share() {
    let mut w = Watch::start(testbed().await, BALANCE_DROP_30).await;
    w.deposit(ether("10")).await;
    w.drain(ether("3")).await; // 10 → 7 ether: exactly 30 % below the window's maximum
    w.settle().await;
    w.assert_silent("vault-balance-drop", "at a drop of exactly 30 %");

    let tip = w.drain(wei(1)).await;
    w.settle().await;
    let found = w.only_finding("vault-balance-drop");
    let f = &found.finding;
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.evidence.block_number, tip.block_number.expect("block"));
    assert_eq!(f.evidence.values.get("max").map(String::as_str), Some("10000000000000000000"));
    assert_eq!(f.evidence.values.get("drop").map(String::as_str), Some("3000000000000000001"));
    assert_eq!(found.occurrences, 1);
}

#[tokio::test]
async fn code_change_catches_new_code_and_a_new_implementation() {
    let bed = testbed().await;
    let reader = bed.devnet.reader();
    let vault = bed.targets.vault_v2;
    let code = reader.get_code_at(vault).await.expect("code");
    let rules = format!(
        r#"
[[rules]]
name = "vault-code"
kind = "code_change"
severity = "critical"
contracts = ["vault"]
target = "code_hash"
expected = "{}"

[[rules]]
name = "vault-implementation"
kind = "code_change"
severity = "critical"
contracts = ["vault"]
target = "implementation"
"#,
        keccak256(&code)
    );
    let mut w = Watch::start(bed, &rules).await;
    let slot = U256::from_be_bytes(EIP1967_IMPLEMENTATION_SLOT.0);

    // Rewriting the same code and the same (empty) slot changes nothing.
    reader.anvil_set_code(vault, code.clone()).await.expect("setCode");
    reader.anvil_set_storage_at(vault, slot, B256::ZERO).await.expect("setStorageAt");
    reader.anvil_mine(Some(2), None).await.expect("mine");
    w.settle().await;
    w.assert_silent("vault-code", "while the runtime code is the expected one");
    w.assert_silent("vault-implementation", "while the slot keeps its first value");

    // An upgrade: the EIP-1967 slot now points at another contract.
    let new_impl = w.bed.targets.vault_v1;
    reader.anvil_set_storage_at(vault, slot, new_impl.into_word()).await.expect("setStorageAt");
    reader.anvil_mine(Some(1), None).await.expect("mine");
    w.settle().await;
    let upgraded = w.only_finding("vault-implementation");
    let values = &upgraded.finding.evidence.values;
    assert_eq!(values.get("actual"), Some(&new_impl.to_checksum(None)));
    assert_eq!(values.get("expected"), Some(&Address::ZERO.to_checksum(None)));
    w.assert_silent("vault-code", "when only the implementation slot changed");

    // New runtime code at the vault's address.
    let other = reader.get_code_at(new_impl).await.expect("code");
    reader.anvil_set_code(vault, other.clone()).await.expect("setCode");
    reader.anvil_mine(Some(1), None).await.expect("mine");
    w.settle().await;
    let replaced = w.only_finding("vault-code");
    assert_eq!(replaced.finding.severity, Severity::Critical);
    let actual = replaced.finding.evidence.values.get("actual").cloned();
    assert_eq!(actual, Some(keccak256(&other).to_string()));
    assert_eq!(w.occurrences("vault-code").len(), 1);
}

#[tokio::test]
async fn invariants_break_one_wei_past_their_bound() {
    let rules = SOLVENT.to_owned()
        + r#"
[[rules]]
name = "vault-deposits-cap"
kind = "invariant"
severity = "medium"
contracts = ["vault"]
call = "totalDeposits() returns (uint256)"
op = "<="
value = "10 ether"
"#;
    let mut w = Watch::start(testbed().await, &rules).await;
    let reader = w.bed.devnet.reader();
    w.deposit(ether("10")).await; // totalDeposits exactly at the cap; balance == deposits
    // One wei of surplus, then drain exactly that wei: balance == totalDeposits, still solvent.
    reader.anvil_set_balance(w.vault(), ether("10") + wei(1)).await.expect("setBalance");
    w.drain(wei(1)).await;
    w.settle().await;
    w.assert_silent("vault-solvent", "while the balance equals totalDeposits");
    w.assert_silent("vault-deposits-cap", "at exactly 10 ether of deposits");

    // One more wei out: insolvent.
    let broke = w.drain(wei(1)).await;
    w.settle().await;
    let solvent = w.only_finding("vault-solvent");
    assert_eq!(solvent.finding.evidence.block_number, broke.block_number.expect("block"));
    assert_eq!(solvent.finding.evidence.values.get("solvent()").map(String::as_str), Some("false"));
    w.assert_silent("vault-deposits-cap", "while deposits stay at the cap");

    // One more wei in: above the cap (and still insolvent, a second occurrence).
    w.deposit(wei(1)).await;
    w.settle().await;
    let cap = w.only_finding("vault-deposits-cap");
    assert_eq!(cap.finding.action, Action::Alert);
    let total = cap.finding.evidence.values.get("totalDeposits()").map(String::as_str);
    assert_eq!(total, Some("10000000000000000001"));
    assert_eq!(w.only_finding("vault-solvent").occurrences, 2);
}

/// `balance_drop` and `invariant` on history (a start block in the past: the backfill reads
/// ranges of blocks in batches), then live, on a chain with or without Multicall3.
async fn state_rules_in_backfill_then_live(multicall3: bool) {
    let rules = format!("{BALANCE_DROP_30}\n{SOLVENT}");
    let bed = testbed_with(TestbedOptions { multicall3, ..TestbedOptions::default() }).await;
    let reader = bed.devnet.reader();
    assert_eq!(
        reader.get_code_at(guardian_chain::multicall::MULTICALL3).await.expect("code").is_empty(),
        !multicall3,
        "the stage has Multicall3 exactly when asked"
    );
    let start = reader.get_block_number().await.expect("head") + 1;
    let options =
        FollowerOptions { start_block: Some(start), backfill_threshold: 4, ..Default::default() };
    let mut w = Watch::start_at(bed, &rules, options).await;
    // History: a deposit, 150 quiet blocks, a 40 % drain (insolvent from then on), 150 more.
    w.deposit(ether("10")).await;
    reader.anvil_mine(Some(150), None).await.expect("mine");
    let drained = w.drain(ether("4")).await;
    reader.anvil_mine(Some(150), None).await.expect("mine");
    // The history is read by ranges of blocks (headers, logs, receipts and state in batches),
    // not block by block.
    let mut widest = 0;
    for _ in 0..1_000 {
        match w.follower.step().await.expect("step") {
            Step::Idle => break,
            Step::Processed { from, to, .. } => widest = widest.max(to - from + 1),
            other => panic!("no reorg on this chain: {other:?}"),
        }
    }
    assert!(widest >= 100, "history read by ranges of blocks: widest step {widest}");
    let expected = multicall3.then_some(guardian_chain::multicall::MULTICALL3);
    assert_eq!(w.follower.multicall3(), expected, "state read through Multicall3 when present");
    let block = drained.block_number.expect("block");
    let drop = w.only_finding("vault-balance-drop");
    assert_eq!(drop.finding.evidence.block_number, block, "found in the backfill, at the drain");
    assert_eq!(
        drop.finding.evidence.values.get("drop").map(String::as_str),
        Some("4000000000000000000")
    );
    let solvent = w.only_finding("vault-solvent");
    assert_eq!(solvent.finding.evidence.block_number, block);
    assert_eq!(solvent.finding.evidence.values.get("solvent()").map(String::as_str), Some("false"));
    let backfilled = solvent.occurrences;
    assert!(backfilled > 100, "every insolvent block of the history: {backfilled}");

    // Live: one more block, one more occurrence of the broken invariant.
    reader.anvil_mine(Some(1), None).await.expect("mine");
    w.settle().await;
    assert_eq!(w.only_finding("vault-solvent").occurrences, backfilled + 1);
}

#[tokio::test]
async fn state_rules_read_through_multicall3_in_backfill_and_live() {
    state_rules_in_backfill_then_live(true).await;
}

#[tokio::test]
async fn state_rules_read_through_batches_without_multicall3() {
    state_rules_in_backfill_then_live(false).await;
}
