//! NKey users: public key validation at load and nonce signature checks at CONNECT.
//!
//! Cold: once per CONNECT (one Ed25519 verification, tens of microseconds, cheap enough to run
//! on the shard). Invariant: the client signs the nonce **as the ASCII string sent in INFO**;
//! `sig` is base64url without padding, standard base64 accepted as a fallback (nats-server
//! `processClientOrLeafAuthentication`). No signature, key or nonce is ever formatted.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use nkeys::{KeyPair, KeyPairType};

use crate::auth::AuthFailure;

/// Whether `key` is a valid user public nkey (`U...`).
pub fn is_valid_user_key(key: &str) -> bool {
    key.starts_with('U')
        && KeyPair::from_public_key(key).is_ok_and(|kp| kp.key_pair_type() == KeyPairType::User)
}

/// Verifies `sig` over the ASCII bytes of `nonce` with the public key `public_key`.
pub fn verify_signature(
    public_key: &str,
    nonce: Option<&str>,
    sig: Option<&str>,
) -> Result<(), AuthFailure> {
    if sig.is_none() {
        return Err(AuthFailure::MissingSignature);
    }
    let key = PublicNkey::parse(public_key).ok_or(AuthFailure::BadSignature)?;
    key.verify(nonce, sig)
}

/// A public nkey decoded once (base32, checksum, curve point), for repeated verifications.
pub struct PublicNkey(KeyPair);

impl PublicNkey {
    pub fn parse(public_key: &str) -> Option<PublicNkey> {
        KeyPair::from_public_key(public_key).ok().map(PublicNkey)
    }

    /// Verifies `sig` over the ASCII bytes of `nonce`.
    pub fn verify(&self, nonce: Option<&str>, sig: Option<&str>) -> Result<(), AuthFailure> {
        let sig = sig.ok_or(AuthFailure::MissingSignature)?;
        let nonce = nonce.ok_or(AuthFailure::BadSignature)?;
        let raw = decode_signature(sig).ok_or(AuthFailure::BadSignature)?;
        self.0
            .verify(nonce.as_bytes(), &raw)
            .map_err(|_| AuthFailure::BadSignature)
    }
}

impl std::fmt::Debug for PublicNkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A public key is not a secret; it is the user's name in logs already.
        f.debug_tuple("PublicNkey")
            .field(&self.0.public_key())
            .finish()
    }
}

fn decode_signature(sig: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(sig)
        .or_else(|_| STANDARD.decode(sig))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y";
    const PUBLIC: &str = "UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK";
    const NONCE: &str = "XHJzqXOFQGGxAnI";
    const SIG: &str =
        "p86ocos-wWu72xodTO3EYzfDqT3JNFvddyNVXRmTPk2prWX6h7-fm8vWYziykVxT2w8xXd866epcveuX53beBw";

    #[test]
    fn spec_vector_verifies() {
        assert_eq!(verify_signature(PUBLIC, Some(NONCE), Some(SIG)), Ok(()));
        let kp = KeyPair::from_seed(SEED).unwrap();
        assert_eq!(kp.public_key(), PUBLIC);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(kp.sign(NONCE.as_bytes()).unwrap()),
            SIG
        );
    }

    #[test]
    fn standard_base64_is_accepted() {
        let raw = URL_SAFE_NO_PAD.decode(SIG).unwrap();
        let std_sig = STANDARD.encode(raw);
        assert!(std_sig.contains('+') || std_sig.contains('/') || std_sig.ends_with('='));
        assert_eq!(
            verify_signature(PUBLIC, Some(NONCE), Some(&std_sig)),
            Ok(())
        );
    }

    #[test]
    fn bad_signatures_fail() {
        assert_eq!(
            verify_signature(PUBLIC, Some("otherNonce12345"), Some(SIG)),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify_signature(PUBLIC, Some(NONCE), None),
            Err(AuthFailure::MissingSignature)
        );
        assert_eq!(
            verify_signature(PUBLIC, Some(NONCE), Some("!!!not base64")),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify_signature(PUBLIC, None, Some(SIG)),
            Err(AuthFailure::BadSignature)
        );
        let other = KeyPair::new_user();
        assert_eq!(
            verify_signature(&other.public_key(), Some(NONCE), Some(SIG)),
            Err(AuthFailure::BadSignature)
        );
    }

    #[test]
    fn user_key_validation() {
        assert!(is_valid_user_key(PUBLIC));
        assert!(!is_valid_user_key(SEED));
        assert!(!is_valid_user_key(&KeyPair::new_account().public_key()));
        assert!(!is_valid_user_key("UABAD"));
        assert!(!is_valid_user_key(""));
    }
}
