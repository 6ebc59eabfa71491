//! How the bench client proves who it is: a token, a user and password, an nkey seed file
//! (`--nkey`), or a `.creds` file (`--creds`: a user JWT and its nkey seed), as nats.go sends
//! them in `CONNECT`.
//!
//! Cold: loaded once per run, used once per connection. Invariant: secrets (token, password,
//! seed) never reach an error message or a `Debug` print; a signature is made only over the
//! nonce the server sent in its INFO.

use std::fmt;
use std::path::Path;

use base64::Engine;
use nkeys::KeyPair;
use serde_json::{Map, Value};

use crate::auth::Secret;

/// One way to authenticate, chosen from the command line (at most one).
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
    Nkey(KeyPair),
    /// A user JWT and the seed that signs nonces for it.
    Jwt {
        jwt: String,
        key: KeyPair,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Token(_) => "Token([redacted])",
            Credentials::UserPassword { .. } => "UserPassword([redacted])",
            Credentials::Nkey(_) => "Nkey([redacted])",
            Credentials::Jwt { .. } => "Jwt([redacted])",
        };
        f.write_str(kind)
    }
}

/// The credential flags as given.
#[derive(Clone, Copy, Debug, Default)]
pub struct CredentialFlags<'a> {
    pub token: Option<&'a str>,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub nkey: Option<&'a Path>,
    pub creds: Option<&'a Path>,
}

impl Credentials {
    /// Builds credentials from the flags, reading `--nkey` and `--creds` files.
    pub fn from_flags(flags: CredentialFlags<'_>) -> Result<Credentials, String> {
        let given = [
            flags.token.is_some(),
            flags.user.is_some() || flags.password.is_some(),
            flags.nkey.is_some(),
            flags.creds.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err(
                "give only one of --token, --user/--password, --nkey and --creds".to_string(),
            );
        }
        if let Some(token) = flags.token {
            return Ok(Credentials::Token(Secret::new(token)));
        }
        if flags.user.is_some() || flags.password.is_some() {
            let user = flags.user.ok_or("--password needs --user")?;
            let password = Secret::new(flags.password.unwrap_or_default());
            let user = user.to_string();
            return Ok(Credentials::UserPassword { user, password });
        }
        if let Some(path) = flags.nkey {
            return Ok(Credentials::Nkey(load_seed_file(path)?));
        }
        if let Some(path) = flags.creds {
            return load_creds_file(path);
        }
        Ok(Credentials::Anonymous)
    }

    /// Adds this method's `CONNECT` fields; `nonce` is the INFO `nonce`, if any.
    pub fn add_connect_fields(
        &self,
        nonce: Option<&str>,
        fields: &mut Map<String, Value>,
    ) -> Result<(), String> {
        match self {
            Credentials::Anonymous => {}
            Credentials::Token(token) => {
                fields.insert("auth_token".into(), token.expose().into());
            }
            Credentials::UserPassword { user, password } => {
                fields.insert("user".into(), user.as_str().into());
                fields.insert("pass".into(), password.expose().into());
            }
            Credentials::Nkey(key) => {
                fields.insert("nkey".into(), key.public_key().into());
                add_signature(key, nonce, fields)?;
            }
            Credentials::Jwt { jwt, key } => {
                fields.insert("jwt".into(), jwt.as_str().into());
                add_signature(key, nonce, fields)?;
            }
        }
        Ok(())
    }
}

/// Signs the server's nonce as nats.go does: ed25519 over the nonce's bytes, base64url
/// without padding. No nonce means nothing to sign (the server will say whether it minds).
fn add_signature(
    key: &KeyPair,
    nonce: Option<&str>,
    fields: &mut Map<String, Value>,
) -> Result<(), String> {
    let Some(nonce) = nonce else {
        return Ok(());
    };
    let sig = key
        .sign(nonce.as_bytes())
        .map_err(|_| "cannot sign the server nonce with the nkey seed".to_string())?;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    fields.insert("sig".into(), sig.into());
    Ok(())
}

/// `--nkey FILE`: the first word that looks like a user seed (`SU...`: a bare seed, or
/// `ringnats keygen`'s `User private key: SU...` line), else the whole file.
fn load_seed_file(path: &Path) -> Result<KeyPair, String> {
    let text = read_text(path)?;
    let seed = text
        .split_whitespace()
        .find(|word| word.starts_with("SU"))
        .unwrap_or_else(|| text.trim());
    KeyPair::from_seed(seed).map_err(|_| format!("{}: no valid nkey seed", path.display()))
}

/// `--creds FILE`: the first armored block is the user JWT, the second the user seed.
fn load_creds_file(path: &Path) -> Result<Credentials, String> {
    let text = read_text(path)?;
    let blocks = armored_blocks(&text);
    let (Some(jwt), Some(seed)) = (blocks.first(), blocks.get(1)) else {
        return Err(format!(
            "{}: expected a JWT block and a seed block (a .creds file)",
            path.display()
        ));
    };
    let key = KeyPair::from_seed(seed).map_err(|_| {
        format!(
            "{}: the second block is not a valid nkey seed",
            path.display()
        )
    })?;
    Ok(Credentials::Jwt {
        jwt: (*jwt).to_string(),
        key,
    })
}

/// The first non-empty line inside each `-----BEGIN ...-----` / `------END ...------` pair,
/// in order (the layout `nsc` writes and nats.go reads).
pub fn armored_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut inside = false;
    let mut taken = false;
    for line in text.lines().map(str::trim) {
        if is_armor_line(line) {
            inside = !inside;
            taken = false;
            continue;
        }
        if inside && !taken && !line.is_empty() {
            blocks.push(line);
            taken = true;
        }
    }
    blocks
}

fn is_armor_line(line: &str) -> bool {
    line.len() >= 6 && line.starts_with("---") && line.ends_with("---")
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "-----BEGIN NATS USER JWT-----\neyJhbGciOi.payload.sig\n\
        ------END NATS USER JWT------\n\n************************* IMPORTANT *************\n\
        NKEYs are sensitive.\n\n-----BEGIN USER NKEY SEED-----\nSEED_HERE\n\
        ------END USER NKEY SEED------\n\n*************************************************\n";

    #[test]
    fn creds_blocks_in_order() {
        assert_eq!(
            armored_blocks(CREDS),
            vec!["eyJhbGciOi.payload.sig", "SEED_HERE"]
        );
        assert!(armored_blocks("no armor here\n").is_empty());
        assert_eq!(
            armored_blocks("-----BEGIN X-----\r\n  abc  \r\n"),
            vec!["abc"]
        );
    }

    #[test]
    fn creds_file_loads_and_signs_the_nonce() {
        let key = KeyPair::new_user();
        let seed = key.seed().unwrap();
        let text = CREDS.replace("SEED_HERE", &seed);
        let dir = std::env::temp_dir().join(format!("ringnats-bench-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user.creds");
        std::fs::write(&path, text).unwrap();
        let flags = CredentialFlags {
            creds: Some(&path),
            ..Default::default()
        };
        let creds = Credentials::from_flags(flags).unwrap();
        let mut fields = Map::new();
        creds
            .add_connect_fields(Some("nonce123"), &mut fields)
            .unwrap();
        assert_eq!(fields["jwt"], "eyJhbGciOi.payload.sig");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(fields["sig"].as_str().unwrap())
            .unwrap();
        assert!(key.verify(b"nonce123", &sig).is_ok());
        assert!(!format!("{creds:?}").contains(&seed));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nkey_file_may_hold_keygen_output() {
        let (seed, public) = crate::tools::keygen::generate(crate::cli::KeyKind::User).unwrap();
        let dir = std::env::temp_dir().join(format!("ringnats-bench-nk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user.nk");
        let text = format!("User public key: {public}\nUser private key: {seed}\n");
        std::fs::write(&path, text).unwrap();
        let key = load_seed_file(&path).unwrap();
        assert_eq!(key.public_key(), public);
        std::fs::write(&path, format!("{seed}\n")).unwrap();
        assert_eq!(load_seed_file(&path).unwrap().public_key(), public);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_pick_one_method() {
        let token = CredentialFlags {
            token: Some("t"),
            ..Default::default()
        };
        let mut fields = Map::new();
        let creds = Credentials::from_flags(token).unwrap();
        creds.add_connect_fields(None, &mut fields).unwrap();
        assert_eq!(fields["auth_token"], "t");
        assert_eq!(format!("{creds:?}"), "Token([redacted])");
        let both = CredentialFlags {
            token: Some("t"),
            user: Some("u"),
            ..Default::default()
        };
        assert!(Credentials::from_flags(both).is_err());
        let no_user = CredentialFlags {
            password: Some("p"),
            ..Default::default()
        };
        assert!(Credentials::from_flags(no_user).is_err());
        let missing = CredentialFlags {
            nkey: Some(Path::new("/nonexistent/seed")),
            ..Default::default()
        };
        assert!(
            Credentials::from_flags(missing)
                .unwrap_err()
                .contains("/nonexistent/seed")
        );
    }
}
