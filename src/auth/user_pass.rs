//! Passwords: the `Secret` wrapper, bcrypt detection and comparison, and the single-user and
//! users-list password checks.
//!
//! Cold: once per CONNECT. Invariant: a secret is never formatted (its `Debug`/`Display` print
//! `[redacted]`), plaintext comparison is constant-time in the secret's content, and a bcrypt
//! comparison never runs on the shard: it is returned as a [`SlowCheck`] job.

use std::fmt;
use std::sync::Arc;

use crate::auth::{AuthFailure, ClientIdentity, SlowCheck, Verdict};

/// A password, token or other secret. Formatting prints `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret text; call only to compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// nats-server `isBcrypt`: `$2[abxy]$NN$...`.
    pub fn is_bcrypt(&self) -> bool {
        is_bcrypt(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Whether `text` looks like a bcrypt hash: `^\$2[abxy]\$\d{2}\$.*`.
pub fn is_bcrypt(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 7
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Equality whose time depends only on the lengths (nats-server uses
/// `subtle.ConstantTimeCompare`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// nats-server `comparePasswords`: bcrypt hashes become a slow job, plaintext is compared here.
/// `identity` is what a match yields; `failure` what a mismatch yields.
pub(crate) fn compare(
    configured: &Arc<Secret>,
    offered: Option<&str>,
    identity: ClientIdentity,
    failure: AuthFailure,
) -> Verdict {
    let offered = offered.unwrap_or("");
    if configured.is_bcrypt() {
        return Verdict::Slow(SlowCheck {
            hash: Arc::clone(configured),
            offered: Secret::new(offered),
            identity,
            failure,
            pair: None,
        });
    }
    if constant_time_eq(configured.expose().as_bytes(), offered.as_bytes()) {
        Verdict::Done(Ok(identity))
    } else {
        Verdict::Done(Err(failure))
    }
}

/// The bcrypt comparison a [`SlowCheck`] runs. A malformed hash is a mismatch.
pub(crate) fn bcrypt_matches(hash: &Secret, offered: &Secret) -> bool {
    bcrypt::verify(offered.expose(), hash.expose()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_content() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn bcrypt_detection() {
        assert!(is_bcrypt(
            "$2a$11$ksSaLy72tt9X23jfACFCz.0nmfV7uhMpcSfDHEG/kw/1R9WJiY7KO"
        ));
        assert!(is_bcrypt("$2b$11$x"));
        assert!(is_bcrypt("$2y$04$x"));
        assert!(is_bcrypt("$2x$10$x"));
        assert!(!is_bcrypt("$2c$11$x"));
        assert!(!is_bcrypt("$2a$1$x"));
        assert!(!is_bcrypt("2a$11$x"));
        assert!(!is_bcrypt("$2a$11"));
        assert!(!is_bcrypt("password"));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bcrypt_vectors_from_the_spec() {
        let a = Secret::new("$2a$11$ksSaLy72tt9X23jfACFCz.0nmfV7uhMpcSfDHEG/kw/1R9WJiY7KO");
        let b = Secret::new("$2b$11$7Kt4wg2ZyZBc3eH9psNHjOcIO4YRntBF2Fw9MBA51rCZhqRxxZjI.");
        assert!(bcrypt_matches(&a, &Secret::new("s3cr3t")));
        assert!(!bcrypt_matches(&a, &Secret::new("s3cr3T")));
        assert!(bcrypt_matches(&b, &Secret::new("pa$$word")));
        assert!(!bcrypt_matches(
            &Secret::new("$2a$11$garbage"),
            &Secret::new("x")
        ));
    }
}
