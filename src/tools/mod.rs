//! The `ringnats` subcommands: `passwd` (bcrypt a password) and `keygen` (nkey pairs).
//!
//! Cold: each runs once and exits; none touches the server.

pub mod keygen;
pub mod passwd;

use crate::cli::Command;

/// Runs a subcommand; the error is one line for standard error.
pub fn run(command: &Command) -> Result<(), String> {
    match command {
        Command::Passwd(args) => passwd::run(args.cost),
        Command::Keygen(args) => keygen::run(args.kind),
    }
}
