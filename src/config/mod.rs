//! The nats-server configuration format: lexer, parser, includes, variables and the
//! `ServerOptions` model.
//!
//! Cold: runs once at start-up (and on `-t`). Invariant: no input panics; every error names the
//! file and line it came from (and the key when there is one), worded as nats-server 2.9.10
//! words it where it has a wording. `parser` turns text into a generic `Value` tree with
//! positions; `model` reads the keys ringnats implements out of that tree into
//! `ServerOptions`, refuses unknown keys like nats-server, and keeps the auth/security sections
//! as raw `Value`s for `auth/` to walk.

pub mod duration;
mod lexer;
pub mod model;
pub mod parser;
pub mod reload;
pub mod value;

use std::path::{Path, PathBuf};

pub use duration::parse_go_duration;
pub use model::{
    IGNORED_KEYS, SECURITY_KEYS, ServerOptions, check_supported, load_file, load_str,
    options_from_map,
};
pub use parser::{parse_file, parse_str};
pub use value::{DateTime, Entry, Map, Pos, Value, ValueKind};

/// Everything that can go wrong loading a config file or applying command-line flags.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text does not follow the config grammar.
    #[error("{pos}: parse error: {msg}")]
    Parse { pos: Pos, msg: String },
    /// The top-level config file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An `include`d file could not be read.
    #[error("{pos}: error parsing include file '{include}', {source}")]
    Include {
        pos: Pos,
        include: String,
        #[source]
        source: std::io::Error,
    },
    /// `$NAME` is neither an enclosing map key nor an environment variable.
    #[error("{pos}: variable reference for '{name}' on line {} can not be found", pos.line)]
    UndefinedVariable { pos: Pos, name: String },
    /// An environment variable's text is not a valid config value.
    #[error("{pos}: variable reference for '{name}' on line {} could not be parsed: {source}",
        pos.line)]
    EnvVariable {
        pos: Pos,
        name: String,
        #[source]
        source: Box<ConfigError>,
    },
    /// A key nats-server 2.9.10 does not know.
    #[error("{pos}: unknown field \"{key}\"")]
    UnknownField { pos: Pos, key: String },
    /// A security key this build parses but cannot enforce yet.
    #[error("{pos}: \"{key}\" is not supported yet by this ringnats build")]
    NotSupported { pos: Pos, key: String },
    /// A known key with a bad value.
    #[error("{pos}: {key}: {msg}")]
    Invalid { pos: Pos, key: String, msg: String },
    /// A bad command-line flag value.
    #[error("{flag}: {msg}")]
    Flag { flag: &'static str, msg: String },
}

/// Fuzz entry point: parses arbitrary bytes as a config and builds options. Never panics;
/// `include` is refused so the fuzzer cannot read files.
pub fn fuzz_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz.conf");
    if let Ok(map) = parser::parse_str_with(text, origin, parser::Includes::Denied) {
        let _ = options_from_map(&map, origin);
    }
}

#[cfg(test)]
mod tests;
