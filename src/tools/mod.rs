//! The `ringnats` subcommands: `passwd` (bcrypt a password), `keygen` (nkey pairs), `jwt`
//! (operator-mode JWTs, `.creds` files, resolver config) and `bench` (a load generator).
//!
//! Cold: each runs once and exits; none is part of the server (`bench` is a client of one).

pub mod bench;
pub mod jwt;
pub mod keygen;
pub mod passwd;

use crate::cli::Command;

/// Runs a subcommand; the error is one line for standard error.
pub fn run(command: &Command) -> Result<(), String> {
    match command {
        Command::Passwd(args) => passwd::run(args.cost),
        Command::Keygen(args) => keygen::run(args.kind),
        Command::Bench(args) => bench::run(args),
        Command::Jwt(args) => jwt::run(&args.command),
    }
}
