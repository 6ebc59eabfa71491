//! `ringnats passwd`: prints a bcrypt hash for a configuration file's `password`.
//!
//! Cold. On a terminal it asks twice without echo; otherwise it reads one line from standard
//! input, so scripts can pipe a password in. Cost 11 by default, as `nats server passwd`.

use std::io::{BufRead, IsTerminal, Write};

/// bcrypt's own bounds on the cost factor.
const COST_MIN: u32 = 4;
const COST_MAX: u32 = 31;
/// Shorter passwords are refused, as `nats server passwd` refuses them.
const PASSWORD_LEN_MIN: usize = 1;

pub fn run(cost: u32) -> Result<(), String> {
    if !(COST_MIN..=COST_MAX).contains(&cost) {
        return Err(format!(
            "bcrypt cost must be between {COST_MIN} and {COST_MAX}, got {cost}"
        ));
    }
    let password = read_password()?;
    let hash = hash(&password, cost)?;
    println!("{hash}");
    Ok(())
}

/// The bcrypt hash of `password` at `cost` (`$2b$` form, which nats-server accepts).
pub fn hash(password: &str, cost: u32) -> Result<String, String> {
    if password.len() < PASSWORD_LEN_MIN {
        return Err("the password is empty".to_string());
    }
    bcrypt::hash(password, cost).map_err(|e| format!("bcrypt failed: {e}"))
}

fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Enter Password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Reenter Password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the passwords do not match".to_string());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let _ = std::io::stderr().flush();
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_carry_the_cost() {
        let h = hash("s3cret", 4).unwrap();
        assert!(h.starts_with("$2b$04$"), "{h}");
        assert!(bcrypt::verify("s3cret", &h).unwrap());
        assert!(!bcrypt::verify("other", &h).unwrap());
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(hash("", 4).is_err());
        assert!(run(3).is_err());
        assert!(run(32).is_err());
    }
}
