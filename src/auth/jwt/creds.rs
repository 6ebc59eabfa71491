//! The `.creds` file: a user JWT and its nkey seed between marker lines (spec jwt.md §7).
//!
//! Cold: read by `ringnats bench --creds` and written by `ringnats jwt creds`. Invariants:
//! [`format`] writes the exact layout nsc writes (5 dashes around `BEGIN`, 6 around `END`, the
//! warning banner); [`parse`] finds, as nats.go does, the first non-empty line after a line
//! with 3+ dashes at both ends for the JWT, and the same after the next such opening line for
//! the seed. [`Creds`] keeps the seed in a [`Secret`] and never prints the JWT either.

use std::fmt;

use crate::auth::Secret;

/// A parsed `.creds` file.
pub struct Creds {
    jwt: Secret,
    seed: Secret,
}

impl Creds {
    pub fn jwt(&self) -> &str {
        self.jwt.expose()
    }

    pub fn seed(&self) -> &str {
        self.seed.expose()
    }
}

impl fmt::Debug for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Creds([redacted])")
    }
}

/// Why a `.creds` text was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CredsError {
    #[error("no user JWT found in the credentials")]
    NoJwt,
    #[error("no nkey seed found in the credentials")]
    NoSeed,
}

/// Parses a `.creds` text (nats.go `userFromFile` / `nkeyPairFromSeedFile`).
pub fn parse(text: &str) -> Result<Creds, CredsError> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut blocks = block_starts(&lines);
    let jwt = blocks.next().ok_or(CredsError::NoJwt)?;
    let seed = blocks.next().ok_or(CredsError::NoSeed)?;
    Ok(Creds {
        jwt: Secret::new(jwt),
        seed: Secret::new(seed),
    })
}

/// The first line of each `-----BEGIN …-----` block (skipping the `END` lines and the banner).
fn block_starts<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if is_marker(line) && !line.contains("END") {
                let value = lines
                    .get(i)
                    .copied()
                    .filter(|v| !v.is_empty() && !is_marker(v))?;
                i += 1;
                return Some(value);
            }
        }
        None
    })
}

/// A line of 3+ dashes, text, 3+ dashes (nats.go `userConfigRE`).
fn is_marker(line: &str) -> bool {
    let lead = line.bytes().take_while(|&b| b == b'-').count();
    let trail = line.bytes().rev().take_while(|&b| b == b'-').count();
    lead >= 3 && trail >= 3 && lead + trail <= line.len()
}

/// Writes a `.creds` file as nsc does (nats-io/jwt `FormatUserConfig`).
pub fn format(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_asymmetric_dashes() {
        let text = format("eyJhbGci.eyJqdGki.c2ln", "SUAAMBQG");
        assert!(text.contains("-----BEGIN NATS USER JWT-----\n"));
        assert!(text.contains("------END NATS USER JWT------\n"));
        let creds = parse(&text).unwrap();
        assert_eq!(creds.jwt(), "eyJhbGci.eyJqdGki.c2ln");
        assert_eq!(creds.seed(), "SUAAMBQG");
        assert_eq!(format!("{creds:?}"), "Creds([redacted])");
    }

    #[test]
    fn truncated_creds_are_refused() {
        let text = format("eyJhbGci.eyJqdGki.c2ln", "SUAAMBQG");
        let cut = &text[..text.find("-----BEGIN USER").unwrap()];
        assert_eq!(parse(cut).err(), Some(CredsError::NoSeed));
        assert_eq!(parse("").err(), Some(CredsError::NoJwt));
        assert_eq!(parse("-----BEGIN X-----\n").err(), Some(CredsError::NoJwt));
    }

    #[test]
    fn crlf_and_indentation_are_tolerated() {
        let text = format("a.b.c", "SUX").replace('\n', "\r\n");
        let creds = parse(&text).unwrap();
        assert_eq!((creds.jwt(), creds.seed()), ("a.b.c", "SUX"));
    }
}
