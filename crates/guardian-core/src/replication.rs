//! Several replicas acting as one guardian, without a coordinator: deterministic ranks.
//!
//! Every replica computes the same order from facts they share (the proposal's `safeTxHash`
//! and the executors' addresses; the incident's key and the replicas' names), so they agree on
//! who goes first without talking:
//! - **one sender:** the executor of rank 0 sends a proposal's `execTransaction` as soon as the
//!   threshold is met; rank k sends only if the Safe's nonce has not moved k × the sender delay
//!   later. No replica sends for a nonce already consumed.
//! - **one alert (leader mode):** the replica of rank 0 for an incident sends its
//!   notifications; rank k sends one only when no replica ranked before it did within k × the
//!   leader timeout.
//!
//! The rank of a participant is its place among all participants ordered by
//! `keccak256(subject ‖ participant)`, so it changes from one proposal (or incident) to the
//! next: no replica is always first, and a dead one delays only the proposals it leads.

use std::time::Duration;

use alloy_primitives::{Address, B256, keccak256};

fn score(subject: &[u8], participant: &[u8]) -> B256 {
    let mut preimage = Vec::with_capacity(subject.len() + participant.len());
    preimage.extend_from_slice(subject);
    preimage.extend_from_slice(participant);
    keccak256(preimage)
}

/// The participants of `all` ranked before `me` for `subject`, first first: the others (each
/// once, `me` left out wherever it stands) that score lower.
fn before<'a, T: AsRef<[u8]> + PartialEq>(subject: &[u8], me: &T, all: &'a [T]) -> Vec<&'a T> {
    let mine = score(subject, me.as_ref());
    let mut before: Vec<(&T, B256)> = Vec::with_capacity(all.len());
    for other in all {
        if other != me && !before.iter().any(|(seen, _)| *seen == other) {
            before.push((other, score(subject, other.as_ref())));
        }
    }
    before.retain(|(_, s)| *s < mine);
    before.sort_by_key(|(_, s)| *s);
    before.into_iter().map(|(other, _)| other).collect()
}

/// The rank of executor `me` among `executors` for proposal `safe_tx_hash`: 0 sends first.
pub fn sender_rank(safe_tx_hash: B256, me: Address, executors: &[Address]) -> usize {
    before(safe_tx_hash.as_slice(), &me, executors).len()
}

/// How long the executor of `rank` waits after the threshold before it may send, if the
/// Safe's nonce has not moved by then.
pub fn sender_wait(rank: usize, delay: Duration) -> Duration {
    delay.saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX))
}

/// The rank of replica `me` among `names` for the incident `incident_key`: 0 is its leader.
pub fn leader_rank(incident_key: &str, me: &str, names: &[String]) -> usize {
    ranked_before(incident_key, me, names).len()
}

/// The replicas ranked before `me` for `incident_key`, first first: the ones whose delivery
/// `me` checks before it sends.
pub fn ranked_before<'a>(incident_key: &str, me: &str, names: &'a [String]) -> Vec<&'a str> {
    let me = me.to_owned();
    before(incident_key.as_bytes(), &me, names).into_iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256};

    const A: Address = address!("0x00000000000000000000000000000000000000aa");
    const B: Address = address!("0x00000000000000000000000000000000000000bb");
    const C: Address = address!("0x00000000000000000000000000000000000000cc");

    #[test]
    fn executors_get_distinct_ranks_that_every_replica_agrees_on() {
        for seed in 0u8..32 {
            let hash = keccak256([seed]);
            // Each replica knows the same three executors, listed in its own order.
            let views = [[A, B, C], [C, A, B], [B, C, A]];
            let ranks: Vec<[usize; 3]> = views
                .iter()
                .map(|all| {
                    [
                        sender_rank(hash, A, all),
                        sender_rank(hash, B, all),
                        sender_rank(hash, C, all),
                    ]
                })
                .collect();
            assert!(ranks.windows(2).all(|w| w[0] == w[1]), "views disagree: {ranks:?}");
            let mut sorted = ranks[0];
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "distinct ranks for {hash}");
        }
    }

    #[test]
    fn the_rank_changes_with_the_proposal() {
        let firsts: std::collections::BTreeSet<Address> = (0u8..32)
            .map(|seed| {
                let hash = keccak256([seed]);
                *[A, B, C]
                    .iter()
                    .find(|e| sender_rank(hash, **e, &[A, B, C]) == 0)
                    .expect("a first")
            })
            .collect();
        assert_eq!(firsts.len(), 3, "every executor leads some proposals");
    }

    #[test]
    fn a_replica_missing_from_its_own_list_or_listed_twice_ranks_the_same() {
        let hash = b256!("0x1111111111111111111111111111111111111111111111111111111111111111");
        let with_me = sender_rank(hash, A, &[A, B, C]);
        assert_eq!(with_me, sender_rank(hash, A, &[B, C]));
        assert_eq!(with_me, sender_rank(hash, A, &[B, B, C, A]));
        assert_eq!(sender_rank(hash, A, &[]), 0, "alone: first");
    }

    #[test]
    fn the_wait_is_rank_times_the_delay() {
        let delay = Duration::from_secs(2);
        assert_eq!(sender_wait(0, delay), Duration::ZERO);
        assert_eq!(sender_wait(1, delay), delay);
        assert_eq!(sender_wait(2, delay), Duration::from_secs(4));
    }

    #[test]
    fn leaders_follow_the_incident_and_the_ones_before_are_in_order() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut leaders = std::collections::BTreeSet::new();
        for n in 0..32 {
            let key = format!("inc-{n:016x}");
            let ranks: Vec<usize> = names.iter().map(|me| leader_rank(&key, me, &names)).collect();
            let mut sorted = ranks.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2]);
            for (me, rank) in names.iter().zip(&ranks) {
                let before = ranked_before(&key, me, &names);
                assert_eq!(before.len(), *rank, "{me} has {rank} before it");
                for (i, other) in before.iter().enumerate() {
                    assert_eq!(leader_rank(&key, other, &names), i, "in rank order");
                }
            }
            leaders.insert(names[ranks.iter().position(|r| *r == 0).expect("leader")].clone());
        }
        assert_eq!(leaders.len(), 3, "every replica leads some incidents");
    }
}
