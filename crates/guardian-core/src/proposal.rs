//! Pause and unpause proposals: what the Safe is asked to do, and whether an owner's signature
//! for it is acceptable.
//!
//! Pure decisions only. A proposal is fully determined by (chain id, Safe, target, calldata,
//! Safe nonce), so every daemon replica and every operator derives the same `safeTxHash`
//! without talking to each other.

use alloy_primitives::{Address, B256, Bytes, Signature, U256, eip191_hash_message, keccak256};

use crate::safe::{OwnerApproval, SafeTx, SignatureError, recover_approval};

/// What a proposal asks the Safe to do to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalKind {
    /// Stop the target (after a finding, or an operator's `guardian pause`).
    Pause,
    /// Resume the target. Only ever proposed by an operator, never automatically.
    Unpause,
    /// Enable the pause-only module on the Safe (`guardian module deploy`).
    EnableModule,
    /// Disable the pause-only module on the Safe (`guardian module disable`).
    DisableModule,
}

impl ProposalKind {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Unpause => "unpause",
            Self::EnableModule => "enable_module",
            Self::DisableModule => "disable_module",
        }
    }
}

alloy_sol_types::sol! {
    /// Why a pause (or unpause) simulated as the Safe reverts, in the forms it usually takes.
    error OwnableUnauthorizedAccount(address account);
    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);
    error EnforcedPause();
    error ExpectedPause();
    error NotOwner(address caller);
}

/// What the revert data of a pause or unpause simulated as `safe` means, for the operator:
/// the access-control and pausable errors of OpenZeppelin 4 and 5, or a revert string. `None`
/// when the data is none of those (the caller shows it raw).
pub fn explain_revert(data: &[u8], safe: Address) -> Option<String> {
    use alloy_sol_types::{Revert, SolError};
    let not_allowed = |account: Address, what: &str| {
        let who = if account == safe { "the Safe".to_owned() } else { account.to_string() };
        format!("{who} {what}: the Safe cannot pause or unpause this contract")
    };
    if let Ok(e) = OwnableUnauthorizedAccount::abi_decode(data) {
        return Some(not_allowed(e.account, "is not the owner (OwnableUnauthorizedAccount)"));
    }
    if let Ok(e) = NotOwner::abi_decode(data) {
        return Some(not_allowed(e.caller, "is not the owner (NotOwner)"));
    }
    if let Ok(e) = AccessControlUnauthorizedAccount::abi_decode(data) {
        return Some(not_allowed(
            e.account,
            &format!("lacks role {} (AccessControlUnauthorizedAccount)", e.neededRole),
        ));
    }
    if EnforcedPause::abi_decode(data).is_ok() {
        return Some("already paused (EnforcedPause)".to_owned());
    }
    if ExpectedPause::abi_decode(data).is_ok() {
        return Some("not paused (ExpectedPause)".to_owned());
    }
    let reason = Revert::abi_decode(data).ok()?.reason;
    Some(match reason.as_str() {
        "Ownable: caller is not the owner" => {
            format!("{reason}: the Safe cannot pause or unpause this contract")
        }
        "Pausable: paused" => format!("already paused ({reason})"),
        _ => format!("reverted: {reason}"),
    })
}

/// Calldata for a no-argument function given by its signature, e.g. `pause()`.
///
/// Targets name their pause function in the config (`pause()` by default); anything with
/// arguments is refused, because a guardian must not guess argument values.
pub fn no_arg_calldata(signature: &str) -> Result<Bytes, String> {
    let signature = signature.trim();
    let Some(name) = signature.strip_suffix("()") else {
        return Err(format!(
            "pause/unpause function {signature:?} must take no arguments, like \"pause()\""
        ));
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{signature:?} is not a Solidity function signature"));
    }
    Ok(Bytes::copy_from_slice(&keccak256(signature.as_bytes())[..4]))
}

/// The Safe transaction for a proposal: a plain call of `calldata` on `target` at `nonce`.
pub fn proposal_tx(target: Address, calldata: Bytes, nonce: U256) -> SafeTx {
    SafeTx::call(target, U256::ZERO, calldata, nonce)
}

/// The EIP-712 domain a signer says their wallet signed under (Safe 1.4.1's domain is the chain
/// id and the Safe's address). Sent with a signature, it lets a wrong network be named exactly:
/// the signature is recovered under that domain, and if it is the signer's there, the chain or
/// the Safe it was made for is known, not guessed from a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedDomain {
    /// The chain id signed for.
    #[serde(alias = "chainId")]
    pub chain_id: u64,
    /// The Safe signed for (`verifyingContract`).
    #[serde(alias = "verifyingContract")]
    pub safe: Address,
}

/// Why a submitted signature was refused. Each case has its own message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not hexadecimal at all.
    #[error(
        "signature {shown:?} is not hex: expected 0x followed by 130 hex digits ({{r}}{{s}}{{v}}, 65 bytes)"
    )]
    NotHex {
        /// The start of what was sent.
        shown: String,
    },
    /// Not a well-formed 65-byte Safe signature.
    #[error("malformed signature: {0}")]
    Malformed(#[from] SignatureError),
    /// On-chain approvals are read from the chain, not accepted over the API.
    #[error(
        "an approved-hash marker (v = 1) is not a signature; approve on chain with `guardian approve --onchain`"
    )]
    ApprovedHashMarker,
    /// The signature is valid for this proposal but its signer does not own the Safe.
    #[error("{signer} is not an owner of Safe {safe}")]
    NotAnOwner {
        /// Who signed.
        signer: Address,
        /// The Safe.
        safe: Address,
    },
    /// The signer signed this transaction under another chain's EIP-712 domain (recovered
    /// under the domain they said they signed).
    #[error(
        "{signer} signed this transaction for chain id {signed_for}, not {expected}: the wallet is on the wrong network"
    )]
    WrongChain {
        /// Who signed.
        signer: Address,
        /// The chain id the signature is valid for.
        signed_for: u64,
        /// The chain id guardian is bound to.
        expected: u64,
    },
    /// The signer signed this transaction for another Safe (recovered under the domain they
    /// said they signed).
    #[error("{signer} signed this transaction for Safe {signed_for}, not {expected}")]
    WrongSafe {
        /// Who signed.
        signer: Address,
        /// The Safe the signature is valid for.
        signed_for: Address,
        /// The proposal's Safe.
        expected: Address,
    },
    /// The signature is another owner's than the one named with it.
    #[error(
        "the signature is {recovered}'s (an owner of the Safe), not {claimed}'s: the signer and the signature do not match; submit it as {recovered}'s"
    )]
    OtherSigner {
        /// Who the submitter said signed.
        claimed: Address,
        /// The owner it recovers to.
        recovered: Address,
    },
    /// An eth_sign signature (over the prefixed message) sent with the plain v.
    #[error(
        "{claimed} signed safeTxHash as an eth_sign message (\"\\x19Ethereum Signed Message:\\n32\" prefix) but v is {v}: the Safe checks a prefixed signature only with v + 4; send it with v = {}",
        .v + 4
    )]
    PrefixedWithPlainV {
        /// Who signed.
        claimed: Address,
        /// The v it came with (27 or 28).
        v: u8,
    },
    /// The signature is not over this proposal's `safeTxHash` and recovers to no owner.
    #[error(
        "signature does not recover to {claimed} over safeTxHash {hash} (it recovers to {recovered}, not an owner): it was made for another hash, another chain or Safe (send the domain signed to have it named), or with another key"
    )]
    OtherHash {
        /// Who the submitter said signed.
        claimed: Address,
        /// The hash it should cover.
        hash: B256,
        /// Who it recovers to over that hash.
        recovered: Address,
    },
}

impl Rejection {
    /// A signature `text` that is not hex (`shown` keeps its first 20 characters).
    pub fn not_hex(text: &str) -> Self {
        let mut shown: String = text.chars().take(20).collect();
        if text.chars().count() > 20 {
            shown.push('…');
        }
        Self::NotHex { shown }
    }

    /// The kind, for aggregating rejections in the audit trail: `not_hex`, `malformed`,
    /// `approved_hash_marker`, `not_an_owner`, `wrong_chain`, `other_hash`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::NotHex { .. } => "not_hex",
            Self::Malformed(_) => "malformed",
            Self::ApprovedHashMarker => "approved_hash_marker",
            Self::NotAnOwner { .. } => "not_an_owner",
            Self::WrongChain { .. } => "wrong_chain",
            Self::WrongSafe { .. } => "wrong_safe",
            Self::OtherSigner { .. } => "other_signer",
            Self::PrefixedWithPlainV { .. } => "prefixed_with_plain_v",
            Self::OtherHash { .. } => "other_hash",
        }
    }
}

/// Check an owner signature submitted for `tx` on `safe` at chain `chain_id`.
///
/// `claimed` is the signer the submitter names; `owners` the Safe's current owners; `domain`
/// the EIP-712 domain the submitter says was signed, if they say. A signature that does not
/// verify is explained from what it does recover to: under the prefixed (eth_sign) message
/// with its own v (v + 4 was forgotten), under the stated domain (the wallet was on another
/// network, or another Safe), to another owner (signer and signature do not match), or to
/// nobody known (another hash).
pub fn check_signature(
    tx: &SafeTx,
    chain_id: u64,
    safe: Address,
    claimed: Address,
    signature: &[u8],
    owners: &[Address],
    domain: Option<SignedDomain>,
) -> Result<OwnerApproval, Rejection> {
    let hash = tx.safe_tx_hash(chain_id, safe);
    let (recovered, approval) = recover_approval(hash, signature)?;
    if approval == OwnerApproval::ApprovedHash {
        return Err(Rejection::ApprovedHashMarker);
    }
    if recovered == claimed {
        return if owners.contains(&claimed) {
            Ok(approval)
        } else {
            Err(Rejection::NotAnOwner { signer: claimed, safe })
        };
    }
    if let OwnerApproval::Signature(sig) = approval
        && recover(sig, eip191_hash_message(hash)) == Some(claimed)
    {
        return Err(Rejection::PrefixedWithPlainV { claimed, v: signature[64] });
    }
    if let Some(signed) = domain.filter(|d| (d.chain_id, d.safe) != (chain_id, safe)) {
        let under_theirs = tx.safe_tx_hash(signed.chain_id, signed.safe);
        if recover_approval(under_theirs, signature).is_ok_and(|(who, _)| who == claimed) {
            return Err(if signed.chain_id != chain_id {
                Rejection::WrongChain {
                    signer: claimed,
                    signed_for: signed.chain_id,
                    expected: chain_id,
                }
            } else {
                Rejection::WrongSafe { signer: claimed, signed_for: signed.safe, expected: safe }
            });
        }
    }
    if owners.contains(&recovered) {
        return Err(Rejection::OtherSigner { claimed, recovered });
    }
    Err(Rejection::OtherHash { claimed, hash, recovered })
}

fn recover(signature: Signature, digest: B256) -> Option<Address> {
    signature.recover_address_from_prehash(&digest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, bytes};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    const SAFE: Address = address!("0x56c43ebF8e1cF3A29AAa220757750346c0A271f8");
    const TARGET: Address = address!("0x0165878A594ca255338adfa4d48449f69242Eb8F");

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("key")
    }

    fn sign(signer: &PrivateKeySigner, hash: B256) -> Vec<u8> {
        signer.sign_hash_sync(&hash).expect("sign").as_bytes().to_vec()
    }

    fn tx(nonce: u64) -> SafeTx {
        proposal_tx(TARGET, no_arg_calldata("pause()").expect("calldata"), U256::from(nonce))
    }

    #[test]
    fn calldata_is_the_selector_of_no_arg_functions_only() {
        assert_eq!(no_arg_calldata("pause()"), Ok(bytes!("8456cb59")));
        assert_eq!(no_arg_calldata(" unpause() "), Ok(bytes!("3f4ba83a")));
        assert!(no_arg_calldata("pause(uint256)").is_err());
        assert!(no_arg_calldata("pause").is_err());
        assert!(no_arg_calldata("()").is_err());
        assert!(no_arg_calldata("pa use()").is_err());
    }

    #[test]
    fn same_inputs_same_hash_for_every_replica() {
        assert_eq!(tx(4).safe_tx_hash(138, SAFE), tx(4).safe_tx_hash(138, SAFE));
        assert_ne!(tx(4).safe_tx_hash(138, SAFE), tx(5).safe_tx_hash(138, SAFE));
    }

    #[test]
    fn accepts_an_owner_signature_of_this_proposal() {
        let owner = key(1);
        let sig = sign(&owner, tx(0).safe_tx_hash(138, SAFE));
        let got =
            check_signature(&tx(0), 138, SAFE, owner.address(), &sig, &[owner.address()], None);
        assert!(matches!(got, Ok(OwnerApproval::Signature(_))));
    }

    #[test]
    fn each_bad_signature_has_its_own_rejection() {
        let owner = key(1);
        let stranger = key(2);
        let owners = [owner.address()];
        let this = tx(0);
        let hash = this.safe_tx_hash(138, SAFE);

        let not_owner = sign(&stranger, hash);
        assert_eq!(
            check_signature(&this, 138, SAFE, stranger.address(), &not_owner, &owners, None),
            Err(Rejection::NotAnOwner { signer: stranger.address(), safe: SAFE })
        );

        // A wallet on another network: named from the domain the submitter says was signed
        // (any chain id, not a list), and only if the signature is theirs under it.
        for chain in [1, 2_018, 4_242_424_242] {
            let elsewhere = sign(&owner, this.safe_tx_hash(chain, SAFE));
            let domain = SignedDomain { chain_id: chain, safe: SAFE };
            assert_eq!(
                check_signature(
                    &this,
                    138,
                    SAFE,
                    owner.address(),
                    &elsewhere,
                    &owners,
                    Some(domain)
                ),
                Err(Rejection::WrongChain {
                    signer: owner.address(),
                    signed_for: chain,
                    expected: 138
                })
            );
        }
        let other_safe = address!("0x00000000000000000000000000000000000000cc");
        let for_other_safe = sign(&owner, this.safe_tx_hash(138, other_safe));
        let domain = SignedDomain { chain_id: 138, safe: other_safe };
        assert_eq!(
            check_signature(
                &this,
                138,
                SAFE,
                owner.address(),
                &for_other_safe,
                &owners,
                Some(domain)
            ),
            Err(Rejection::WrongSafe {
                signer: owner.address(),
                signed_for: other_safe,
                expected: SAFE
            })
        );
        // A domain that is not where it was signed proves nothing: another hash.
        let wrong_claim = SignedDomain { chain_id: 5, safe: SAFE };
        assert!(matches!(
            check_signature(
                &this,
                138,
                SAFE,
                owner.address(),
                &for_other_safe,
                &owners,
                Some(wrong_claim)
            ),
            Err(Rejection::OtherHash { .. })
        ));

        // Signer and signature do not match: the signature is another owner's.
        let second = key(3);
        let both = [owner.address(), second.address()];
        let by_second = sign(&second, hash);
        assert_eq!(
            check_signature(&this, 138, SAFE, owner.address(), &by_second, &both, None),
            Err(Rejection::OtherSigner { claimed: owner.address(), recovered: second.address() })
        );

        // An eth_sign (prefixed) signature with its plain v: the hint is v + 4.
        let mut prefixed = sign(&owner, alloy_primitives::eip191_hash_message(hash));
        let v = prefixed[64];
        assert_eq!(
            check_signature(&this, 138, SAFE, owner.address(), &prefixed, &owners, None),
            Err(Rejection::PrefixedWithPlainV { claimed: owner.address(), v })
        );
        assert!(
            Rejection::PrefixedWithPlainV { claimed: owner.address(), v: 27 }
                .to_string()
                .contains("v = 31"),
        );
        prefixed[64] += 4;
        assert!(matches!(
            check_signature(&this, 138, SAFE, owner.address(), &prefixed, &owners, None),
            Ok(OwnerApproval::EthSign(_))
        ));

        let other_hash = sign(&owner, tx(1).safe_tx_hash(138, SAFE));
        assert!(matches!(
            check_signature(&this, 138, SAFE, owner.address(), &other_hash, &owners, None),
            Err(Rejection::OtherHash { claimed, hash: h, .. }) if claimed == owner.address() && h == hash
        ));

        assert!(matches!(
            check_signature(&this, 138, SAFE, owner.address(), &[1, 2, 3], &owners, None),
            Err(Rejection::Malformed(SignatureError::Length(3)))
        ));

        let marker = OwnerApproval::ApprovedHash.encode(owner.address());
        assert_eq!(
            check_signature(&this, 138, SAFE, owner.address(), &marker, &owners, None),
            Err(Rejection::ApprovedHashMarker)
        );

        // Messages differ, so the operator can tell what went wrong.
        let messages: std::collections::BTreeSet<String> = [
            Rejection::NotAnOwner { signer: stranger.address(), safe: SAFE }.to_string(),
            Rejection::WrongChain { signer: owner.address(), signed_for: 1, expected: 138 }
                .to_string(),
            Rejection::OtherHash { claimed: owner.address(), hash, recovered: stranger.address() }
                .to_string(),
            Rejection::Malformed(SignatureError::Length(3)).to_string(),
            Rejection::OtherSigner { claimed: owner.address(), recovered: second.address() }
                .to_string(),
            Rejection::PrefixedWithPlainV { claimed: owner.address(), v: 27 }.to_string(),
            Rejection::WrongSafe {
                signer: owner.address(),
                signed_for: other_safe,
                expected: SAFE,
            }
            .to_string(),
            Rejection::not_hex("zz").to_string(),
        ]
        .into();
        assert_eq!(messages.len(), 8);
    }

    #[test]
    fn pause_reverts_are_explained_for_the_operator() {
        use alloy_sol_types::{Revert, SolError};
        let other = address!("0x00000000000000000000000000000000000000aa");
        let explain = |data: Vec<u8>| explain_revert(&data, SAFE).expect("explained");

        let ownable = OwnableUnauthorizedAccount { account: SAFE }.abi_encode();
        assert_eq!(
            explain(ownable),
            "the Safe is not the owner (OwnableUnauthorizedAccount): the Safe cannot pause or unpause this contract"
        );
        let role = AccessControlUnauthorizedAccount { account: other, neededRole: B256::ZERO };
        let text = explain(role.abi_encode());
        assert!(text.starts_with(&format!("{other} lacks role 0x0000")), "{text}");
        assert_eq!(explain(EnforcedPause {}.abi_encode()), "already paused (EnforcedPause)");
        assert_eq!(explain(ExpectedPause {}.abi_encode()), "not paused (ExpectedPause)");
        let oz4 = Revert::from("Ownable: caller is not the owner").abi_encode();
        assert!(explain(oz4).ends_with("the Safe cannot pause or unpause this contract"));
        assert_eq!(explain(Revert::from("boom").abi_encode()), "reverted: boom");
        assert_eq!(explain_revert(&[0xde, 0xad, 0xbe, 0xef], SAFE), None);
        assert_eq!(explain_revert(&[], SAFE), None);
    }
}
