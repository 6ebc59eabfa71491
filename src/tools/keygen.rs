//! `ringnats keygen <kind>` (and `ringnats -k <kind>`): prints a new nkey public key and seed.
//!
//! Cold. Output: two labelled lines, the public key first, so a seed (the private key) is never
//! taken for the key that goes in a config file:
//!
//! ```text
//! User public key: UD…
//! User private key: SUA…
//! ```
//!
//! The label names the kind (`User`, `Account`, `Operator`, `Server`, `Curve`); seeds start
//! with `S` + the kind's letter (`SU`, `SA`, `SO`, `SN`, `SX`). Scripts take the last word of
//! each line.

use crate::cli::KeyKind;

pub fn run(kind: KeyKind) -> Result<(), String> {
    let (seed, public) = generate(kind)?;
    let label = label(kind);
    println!("{label} public key: {public}");
    println!("{label} private key: {seed}");
    Ok(())
}

/// The word that starts each output line for `kind`.
pub fn label(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::User => "User",
        KeyKind::Account => "Account",
        KeyKind::Operator => "Operator",
        KeyKind::Server => "Server",
        KeyKind::Curve => "Curve",
    }
}

/// A fresh (seed, public key) pair of `kind`.
pub fn generate(kind: KeyKind) -> Result<(String, String), String> {
    let pair = match kind {
        KeyKind::User => nkeys::KeyPair::new_user(),
        KeyKind::Account => nkeys::KeyPair::new_account(),
        KeyKind::Operator => nkeys::KeyPair::new_operator(),
        KeyKind::Server => nkeys::KeyPair::new_server(),
        KeyKind::Curve => {
            let key = nkeys::XKey::new();
            let seed = key.seed().map_err(|e| e.to_string())?;
            return Ok((seed, key.public_key()));
        }
    };
    let seed = pair.seed().map_err(|e| e.to_string())?;
    Ok((seed, pair.public_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_prefixes_and_round_trips() {
        let cases = [
            (KeyKind::User, "SU", 'U'),
            (KeyKind::Account, "SA", 'A'),
            (KeyKind::Operator, "SO", 'O'),
            (KeyKind::Server, "SN", 'N'),
            (KeyKind::Curve, "SX", 'X'),
        ];
        for (kind, seed_prefix, public_prefix) in cases {
            let (seed, public) = generate(kind).unwrap();
            assert!(seed.starts_with(seed_prefix), "{kind:?}: seed prefix");
            assert!(public.starts_with(public_prefix), "{kind:?}: public prefix");
            assert_eq!(public.len(), 56);
            if kind != KeyKind::Curve {
                let again = nkeys::KeyPair::from_seed(&seed).unwrap();
                assert_eq!(again.public_key(), public);
            }
        }
    }
}
