//! Safe 1.4.1 transactions: EIP-712 hashing and owner-signature packing.
//!
//! Every daemon replica and every operator computes the same `safeTxHash` from the same
//! (target, calldata, nonce) with these functions, which is what lets guardian work without a
//! coordinator. The constants are checked against the deployed Safe in the integration tests.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, Signature, U256, b256, eip191_hash_message};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};

sol! {
    /// The Safe's EIP-712 transaction struct, field for field as in `Safe.sol` 1.4.1.
    #[derive(Debug, PartialEq, Eq)]
    struct SafeTx {
        address to;
        uint256 value;
        bytes data;
        uint8 operation;
        uint256 safeTxGas;
        uint256 baseGas;
        uint256 gasPrice;
        address gasToken;
        address refundReceiver;
        uint256 nonce;
    }
}

/// `keccak256("EIP712Domain(uint256 chainId,address verifyingContract)")`: Safe's domain has no
/// name and no version.
pub const DOMAIN_TYPEHASH: B256 =
    b256!("0x47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218");

/// `keccak256("SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)")`.
pub const SAFE_TX_TYPEHASH: B256 =
    b256!("0xbb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8");

/// How the Safe performs the inner call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Operation {
    /// A plain `CALL` from the Safe. The only operation guardian ever proposes.
    Call = 0,
    /// `DELEGATECALL`: runs foreign code with the Safe's storage. Never proposed by guardian.
    DelegateCall = 1,
}

impl SafeTx {
    /// A plain call from the Safe with no refund: `safeTxGas`, `baseGas` and `gasPrice` are zero,
    /// so a failing inner call reverts the whole `execTransaction` and the nonce is not consumed.
    pub fn call(to: Address, value: U256, data: Bytes, nonce: U256) -> Self {
        Self {
            to,
            value,
            data,
            operation: Operation::Call as u8,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: Address::ZERO,
            refundReceiver: Address::ZERO,
            nonce,
        }
    }

    /// The hash owners sign and the Safe checks: `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`.
    pub fn safe_tx_hash(&self, chain_id: u64, safe: Address) -> B256 {
        self.eip712_signing_hash(&safe_domain(chain_id, safe))
    }
}

/// The Safe's EIP-712 domain: chain id and the Safe's own address, nothing else.
pub fn safe_domain(chain_id: u64, safe: Address) -> Eip712Domain {
    Eip712Domain {
        name: None,
        version: None,
        chain_id: Some(U256::from(chain_id)),
        verifying_contract: Some(safe),
        salt: None,
    }
}

/// What `domainSeparator()` returns on a Safe at `safe` on chain `chain_id`.
pub fn domain_separator(chain_id: u64, safe: Address) -> B256 {
    safe_domain(chain_id, safe).separator()
}

/// One owner's consent to a `safeTxHash`, in a form the Safe's `checkNSignatures` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerApproval {
    /// An ECDSA signature over the raw `safeTxHash` (v = 27/28 on the wire).
    Signature(Signature),
    /// An ECDSA signature over the EIP-191 "eth_sign" digest of the `safeTxHash` (v = 31/32 on
    /// the wire), as produced by wallets that only offer `personal_sign`.
    EthSign(Signature),
    /// The owner called `approveHash(safeTxHash)` on chain (v = 1 on the wire, r = owner).
    ApprovedHash,
}

impl OwnerApproval {
    /// The 65 bytes `{r}{s}{v}` this approval occupies in `execTransaction`'s `signatures`.
    pub fn encode(&self, owner: Address) -> [u8; 65] {
        match self {
            Self::Signature(sig) => sig.as_bytes(),
            Self::EthSign(sig) => {
                let mut bytes = sig.as_bytes();
                bytes[64] += 4;
                bytes
            }
            Self::ApprovedHash => {
                let mut bytes = [0u8; 65];
                bytes[12..32].copy_from_slice(owner.as_slice());
                bytes[64] = 1;
                bytes
            }
        }
    }
}

/// Why a 65-byte owner signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes.
    #[error("a Safe owner signature is 65 bytes ({{r}}{{s}}{{v}}), got {0}")]
    Length(usize),
    /// v = 0 (EIP-1271 contract signature) or another value the Safe does not define.
    #[error(
        "unsupported signature type v = {0} (expected 27/28 for EIP-712, 31/32 for eth_sign, 1 for approveHash)"
    )]
    UnsupportedV(u8),
    /// r/s do not form a valid secp256k1 signature.
    #[error("signature does not recover to any address: {0}")]
    Unrecoverable(String),
    /// An "approved hash" marker whose `r` is not a left-padded address or whose `s` is not zero.
    #[error("approved-hash marker (v = 1) must carry the owner address in r and zero in s")]
    MalformedApprovedHash,
}

/// Decode a 65-byte owner signature for `safe_tx_hash` and return who gave it.
///
/// For ECDSA forms the owner is recovered; for the approved-hash marker it is read from `r` and
/// the caller must still check `approvedHashes(owner, hash)` on chain. Whether the owner is
/// actually an owner of the Safe is the caller's business too.
pub fn recover_approval(
    safe_tx_hash: B256,
    bytes: &[u8],
) -> Result<(Address, OwnerApproval), SignatureError> {
    let bytes: &[u8; 65] = bytes.try_into().map_err(|_| SignatureError::Length(bytes.len()))?;
    let v = bytes[64];
    let rs = |parity_v: u8| Signature::from_bytes_and_parity(&bytes[..64], parity_v == 28);
    let recover = |sig: Signature, digest: B256| {
        sig.recover_address_from_prehash(&digest)
            .map_err(|e| SignatureError::Unrecoverable(e.to_string()))
    };
    match v {
        27 | 28 => {
            let sig = rs(v);
            Ok((recover(sig, safe_tx_hash)?, OwnerApproval::Signature(sig)))
        }
        31 | 32 => {
            let sig = rs(v - 4);
            let digest = eip191_hash_message(safe_tx_hash);
            Ok((recover(sig, digest)?, OwnerApproval::EthSign(sig)))
        }
        1 => {
            if bytes[..12].iter().any(|b| *b != 0) || bytes[32..64].iter().any(|b| *b != 0) {
                return Err(SignatureError::MalformedApprovedHash);
            }
            Ok((Address::from_slice(&bytes[12..32]), OwnerApproval::ApprovedHash))
        }
        other => Err(SignatureError::UnsupportedV(other)),
    }
}

/// Owner approvals for one `safeTxHash`, kept in the order `execTransaction` demands.
///
/// The Safe requires signatures sorted by owner address, strictly ascending (GS026 otherwise).
/// Keying by owner makes that order, and one approval per owner, structural rather than a step
/// a caller could forget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    by_owner: BTreeMap<Address, OwnerApproval>,
}

impl Approvals {
    /// No approvals yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `owner`'s approval. A second approval from the same owner replaces the first and
    /// returns it (the Safe counts each owner once).
    pub fn insert(&mut self, owner: Address, approval: OwnerApproval) -> Option<OwnerApproval> {
        self.by_owner.insert(owner, approval)
    }

    /// How many distinct owners approved.
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }

    /// Whether nobody approved yet.
    pub fn is_empty(&self) -> bool {
        self.by_owner.is_empty()
    }

    /// Owners who approved, ascending.
    pub fn owners(&self) -> impl Iterator<Item = &Address> {
        self.by_owner.keys()
    }

    /// The `signatures` argument of `execTransaction`: each approval's 65 bytes, ordered by owner
    /// address ascending.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.by_owner.len() * 65);
        for (owner, approval) in &self.by_owner {
            out.extend_from_slice(&approval.encode(*owner));
        }
        out.into()
    }
}

impl FromIterator<(Address, OwnerApproval)> for Approvals {
    fn from_iter<T: IntoIterator<Item = (Address, OwnerApproval)>>(iter: T) -> Self {
        Self { by_owner: iter.into_iter().collect() }
    }
}

/// What a Safe `GSxxx` revert code means, in words an operator can act on.
pub fn explain_error_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "GS000" => "could not finish initialization",
        "GS001" => "threshold needs to be defined",
        "GS010" => "not enough gas to execute the Safe transaction",
        "GS011" => "could not pay gas costs with ether",
        "GS012" => "could not pay gas costs with token",
        "GS013" => {
            "the inner call failed (safeTxGas and gasPrice are 0, so the whole transaction reverts)"
        }
        "GS020" => "signatures data too short: fewer signatures than the threshold",
        "GS021" => "invalid contract signature location: inside static part",
        "GS022" => "invalid contract signature location: length not present",
        "GS023" => "invalid contract signature location: data not complete",
        "GS024" => "invalid contract signature provided",
        "GS025" => "hash has not been approved by that owner",
        "GS026" => {
            "invalid owner: a signature is not from an owner, or signatures are not sorted by owner address"
        }
        "GS030" => "only owners can approve a hash",
        "GS031" => "method can only be called from the Safe itself",
        "GS200" => "owners have already been set up",
        "GS201" => "threshold cannot exceed owner count",
        "GS202" => "threshold needs to be greater than 0",
        "GS203" => "invalid owner address provided",
        "GS204" => "address is already an owner",
        "GS205" => "invalid prevOwner, owner pair provided",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, bytes, keccak256};
    use alloy_sol_types::SolStruct;

    fn pause_tx(nonce: u64) -> SafeTx {
        SafeTx::call(
            address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            U256::ZERO,
            bytes!("8456cb59"),
            U256::from(nonce),
        )
    }

    #[test]
    fn type_hashes_match_safe_source() {
        assert_eq!(
            keccak256("EIP712Domain(uint256 chainId,address verifyingContract)"),
            DOMAIN_TYPEHASH
        );
        assert_eq!(pause_tx(0).eip712_type_hash(), SAFE_TX_TYPEHASH);
        assert_eq!(keccak256(SafeTx::eip712_encode_type().as_bytes()), SAFE_TX_TYPEHASH);
    }

    #[test]
    fn domain_separator_is_abi_encoded_typehash_chain_and_safe() {
        let safe = address!("0x1111111111111111111111111111111111111111");
        let mut preimage = Vec::new();
        preimage.extend_from_slice(DOMAIN_TYPEHASH.as_slice());
        preimage.extend_from_slice(&U256::from(138u64).to_be_bytes::<32>());
        preimage.extend_from_slice(B256::left_padding_from(safe.as_slice()).as_slice());
        assert_eq!(domain_separator(138, safe), keccak256(preimage));
    }

    #[test]
    fn safe_tx_hash_is_eip712_of_struct_hash() {
        // Recompute by hand from the spec in Safe.sol (`encodeTransactionData`).
        let safe = address!("0x2222222222222222222222222222222222222222");
        let tx = pause_tx(7);
        let mut enc = Vec::new();
        enc.extend_from_slice(SAFE_TX_TYPEHASH.as_slice());
        enc.extend_from_slice(B256::left_padding_from(tx.to.as_slice()).as_slice());
        enc.extend_from_slice(&tx.value.to_be_bytes::<32>());
        enc.extend_from_slice(keccak256(&tx.data).as_slice());
        enc.extend_from_slice(&U256::from(tx.operation).to_be_bytes::<32>());
        for word in [tx.safeTxGas, tx.baseGas, tx.gasPrice] {
            enc.extend_from_slice(&word.to_be_bytes::<32>());
        }
        enc.extend_from_slice(B256::left_padding_from(tx.gasToken.as_slice()).as_slice());
        enc.extend_from_slice(B256::left_padding_from(tx.refundReceiver.as_slice()).as_slice());
        enc.extend_from_slice(&tx.nonce.to_be_bytes::<32>());
        let struct_hash = keccak256(enc);
        let mut outer = vec![0x19, 0x01];
        outer.extend_from_slice(domain_separator(138, safe).as_slice());
        outer.extend_from_slice(struct_hash.as_slice());
        assert_eq!(tx.safe_tx_hash(138, safe), keccak256(outer));
    }

    #[test]
    fn hash_binds_chain_safe_nonce_and_calldata() {
        let safe = address!("0x2222222222222222222222222222222222222222");
        let base = pause_tx(3).safe_tx_hash(138, safe);
        assert_ne!(base, pause_tx(3).safe_tx_hash(1, safe), "chain id");
        assert_ne!(base, pause_tx(3).safe_tx_hash(138, Address::ZERO), "safe");
        assert_ne!(base, pause_tx(4).safe_tx_hash(138, safe), "nonce");
        let mut unpause = pause_tx(3);
        unpause.data = bytes!("3f4ba83a");
        assert_ne!(base, unpause.safe_tx_hash(138, safe), "calldata");
        assert_eq!(base, pause_tx(3).safe_tx_hash(138, safe), "deterministic");
    }

    fn sign(key: u8, hash: B256) -> (Address, Signature) {
        use alloy_signer::SignerSync;
        let signer = alloy_signer_local::PrivateKeySigner::from_bytes(&B256::with_last_byte(key))
            .expect("valid test key");
        (signer.address(), signer.sign_hash_sync(&hash).expect("signing works"))
    }

    #[test]
    fn recovers_plain_and_eth_sign_signatures() {
        let hash = keccak256("some safe tx");
        let (owner, sig) = sign(1, hash);
        let plain = OwnerApproval::Signature(sig).encode(owner);
        assert_eq!(recover_approval(hash, &plain), Ok((owner, OwnerApproval::Signature(sig))));
        // The same signature over another hash recovers to somebody else.
        let (other, _) = recover_approval(keccak256("other"), &plain).expect("recoverable");
        assert_ne!(other, owner);

        // eth_sign style: the owner signed the EIP-191 digest of the hash; v is shifted by 4.
        let (owner2, eth_sig) = sign(2, eip191_hash_message(hash));
        let wire = OwnerApproval::EthSign(eth_sig).encode(owner2);
        assert!(wire[64] == 31 || wire[64] == 32);
        assert_eq!(recover_approval(hash, &wire), Ok((owner2, OwnerApproval::EthSign(eth_sig))));
    }

    #[test]
    fn rejects_malformed_signatures_with_distinct_errors() {
        let hash = keccak256("x");
        assert_eq!(recover_approval(hash, &[0u8; 64]), Err(SignatureError::Length(64)));
        let mut zero_v = [0u8; 65];
        assert_eq!(recover_approval(hash, &zero_v), Err(SignatureError::UnsupportedV(0)));
        zero_v[64] = 1;
        zero_v[0] = 1;
        assert_eq!(recover_approval(hash, &zero_v), Err(SignatureError::MalformedApprovedHash));
        let mut garbage = [0u8; 65];
        garbage[64] = 27;
        assert!(matches!(recover_approval(hash, &garbage), Err(SignatureError::Unrecoverable(_))));
    }

    #[test]
    fn explains_the_codes_operators_meet() {
        assert!(explain_error_code("GS026").is_some_and(|m| m.contains("sorted")));
        assert!(explain_error_code("GS020").is_some_and(|m| m.contains("threshold")));
        assert_eq!(explain_error_code("GS999"), None);
    }

    #[test]
    fn approved_hash_marker_roundtrips() {
        let owner = address!("0x00000000000000000000000000000000000000aa");
        let enc = OwnerApproval::ApprovedHash.encode(owner);
        assert_eq!(enc[64], 1);
        assert_eq!(recover_approval(B256::ZERO, &enc), Ok((owner, OwnerApproval::ApprovedHash)));
    }

    #[test]
    fn approvals_encode_sorted_by_owner_one_each() {
        let low = address!("0x0000000000000000000000000000000000000001");
        let high = address!("0xffffffffffffffffffffffffffffffffffffffff");
        let mut approvals = Approvals::new();
        approvals.insert(high, OwnerApproval::ApprovedHash);
        approvals.insert(low, OwnerApproval::ApprovedHash);
        assert!(approvals.insert(low, OwnerApproval::ApprovedHash).is_some());
        assert_eq!(approvals.len(), 2);
        let enc = approvals.encode();
        assert_eq!(enc.len(), 130);
        assert_eq!(&enc[12..32], low.as_slice());
        assert_eq!(&enc[65 + 12..65 + 32], high.as_slice());
    }
}
