//! Structure of the nats-server config format: entries, maps, arrays, `include` and variables.
//!
//! Cold: config load only. Invariants: nesting (maps, arrays, includes, environment variables
//! parsed as values) is bounded by `NESTING_MAX` so hostile input cannot overflow the stack;
//! every value carries its position; a `$NAME` reference is resolved innermost map outward, then
//! from the process environment (nats-server `lookupVariable`), and the referenced entry is
//! marked as a used variable.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ConfigError;
use crate::config::lexer::{Cursor, Scalar};
use crate::config::value::{Map, Pos, Value, ValueKind};

/// Maximum depth of maps, arrays, includes and environment variables inside one another.
const NESTING_MAX: usize = 64;
/// Maximum depth of `include` inside included files (catches include cycles).
const INCLUDE_DEPTH_MAX: usize = 10;
/// Largest config file we read (an include of `/dev/zero` must not eat all memory).
const FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Key under which an environment variable's text is parsed (nats-server uses `pk`).
const ENV_KEY: &str = "pk";

/// Whether `include` may read files (the fuzz entry point turns it off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Includes {
    Allowed,
    Denied,
}

/// Reads and parses a config file into its top-level map.
pub fn parse_file(path: &Path) -> Result<Map, ConfigError> {
    let text = read_config(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses config text; `origin` names it in positions and anchors relative includes.
pub fn parse_str(text: &str, origin: &Path) -> Result<Map, ConfigError> {
    parse_nested(text, origin, Depth::default(), Includes::Allowed)
}

pub(crate) fn parse_str_with(
    text: &str,
    origin: &Path,
    includes: Includes,
) -> Result<Map, ConfigError> {
    parse_nested(text, origin, Depth::default(), includes)
}

#[derive(Clone, Copy, Debug, Default)]
struct Depth {
    nesting: usize,
    includes: usize,
}

fn parse_nested(
    text: &str,
    origin: &Path,
    depth: Depth,
    includes: Includes,
) -> Result<Map, ConfigError> {
    let mut parser = Parser {
        cursor: Cursor::new(text),
        file: Arc::from(origin),
        scopes: Vec::new(),
        depth,
        includes,
    };
    parser.document()
}

fn read_config(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(FILE_BYTES_MAX)
        .read_to_string(&mut text)?;
    Ok(text)
}

struct Parser<'a> {
    cursor: Cursor<'a>,
    file: Arc<Path>,
    /// Maps being built, outermost first; variables are looked up from the end.
    scopes: Vec<Map>,
    depth: Depth,
    includes: Includes,
}

/// What closes the list of entries being parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    Eof,
    Brace,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            file: self.file.clone(),
            line: self.cursor.line(),
        }
    }

    fn parse_error(&self, msg: String) -> ConfigError {
        ConfigError::Parse {
            pos: self.pos(),
            msg,
        }
    }

    fn document(&mut self) -> Result<Map, ConfigError> {
        self.scopes.push(Map::new());
        self.entries(Closing::Eof)?;
        Ok(self.scopes.pop().unwrap_or_default())
    }

    /// Entries into the innermost scope until `closing` (consumed when it is `}`).
    fn entries(&mut self, closing: Closing) -> Result<(), ConfigError> {
        loop {
            self.cursor.skip_blank(true);
            match (self.cursor.peek(), closing) {
                (None, Closing::Eof) => return Ok(()),
                (None, Closing::Brace) => {
                    return Err(self.parse_error("Unexpected EOF processing map.".into()));
                }
                (Some(b'}'), Closing::Brace) => {
                    self.cursor.bump();
                    return Ok(());
                }
                (Some(b'}'), Closing::Eof) => {
                    return Err(self.parse_error("Unexpected '}' at top level.".into()));
                }
                _ => self.entry(closing)?,
            }
        }
    }

    fn entry(&mut self, closing: Closing) -> Result<(), ConfigError> {
        let pos = self.pos();
        let key = self.cursor.key().map_err(|m| self.parse_error(m))?;
        if key.eq_ignore_ascii_case("include") && matches!(self.cursor.peek(), Some(b' ' | b'\t')) {
            self.cursor.skip_inline_ws();
            if !matches!(self.cursor.peek(), Some(b':' | b'=')) {
                self.include(pos)?;
                return self.value_end(closing);
            }
        }
        self.cursor.skip_inline_ws();
        if matches!(self.cursor.peek(), Some(b':' | b'=')) {
            self.cursor.bump();
            self.cursor.skip_inline_ws();
        }
        let value = self.value()?;
        self.value_end(closing)?;
        self.innermost().push(key, pos, value);
        Ok(())
    }

    fn innermost(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    /// After a value: optional spaces, then a newline, `;`, `,`, a comment, the end, or `}`.
    fn value_end(&mut self, closing: Closing) -> Result<(), ConfigError> {
        self.cursor.skip_inline_ws();
        if self.cursor.at_line_end() || self.cursor.at_comment() {
            return Ok(());
        }
        match (self.cursor.peek(), closing) {
            (Some(b';' | b','), _) => Ok(()),
            (Some(b'}'), Closing::Brace) => Ok(()),
            (Some(c), Closing::Eof) => Err(self.parse_error(format!(
                "Expected a top-level value to end with a new line, comment or EOF, but got \
                 '{}' instead.",
                char::from(c)
            ))),
            (Some(c), Closing::Brace) => Err(self.parse_error(format!(
                "Expected a map value to end with a new line, comment, '}}' or EOF, but got \
                 '{}' instead.",
                char::from(c)
            ))),
            (None, _) => Ok(()),
        }
    }

    fn value(&mut self) -> Result<Value, ConfigError> {
        let pos = self.pos();
        match self.cursor.peek() {
            Some(b'{') => self.nested(|p| p.map(), pos),
            Some(b'[') => self.nested(|p| p.array(), pos),
            _ => {
                let scalar = self.cursor.scalar().map_err(|m| self.parse_error(m))?;
                self.resolve(scalar, pos)
            }
        }
    }

    fn nested(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<ValueKind, ConfigError>,
        pos: Pos,
    ) -> Result<Value, ConfigError> {
        if self.depth.nesting >= NESTING_MAX {
            return Err(self.parse_error(format!("nesting deeper than {NESTING_MAX} levels")));
        }
        self.depth.nesting += 1;
        let kind = inner(self);
        self.depth.nesting -= 1;
        Ok(Value { kind: kind?, pos })
    }

    fn map(&mut self) -> Result<ValueKind, ConfigError> {
        self.cursor.bump(); // `{`
        self.scopes.push(Map::new());
        let result = self.entries(Closing::Brace);
        let map = self.scopes.pop().unwrap_or_default();
        result.map(|()| ValueKind::Map(map))
    }

    fn array(&mut self) -> Result<ValueKind, ConfigError> {
        self.cursor.bump(); // `[`
        let mut items = Vec::new();
        loop {
            self.cursor.skip_blank(false);
            match self.cursor.peek() {
                None => return Err(self.parse_error("Unexpected EOF processing array.".into())),
                Some(b']') => {
                    self.cursor.bump();
                    return Ok(ValueKind::Array(items));
                }
                _ => {}
            }
            items.push(self.value()?);
            self.array_value_end()?;
        }
    }

    fn array_value_end(&mut self) -> Result<(), ConfigError> {
        self.cursor.skip_inline_ws();
        if self.cursor.at_comment() {
            self.cursor.skip_to_eol();
        }
        match self.cursor.peek() {
            Some(b',') => {
                self.cursor.bump();
                Ok(())
            }
            None | Some(b']' | b'\n' | b'\r') => Ok(()),
            Some(c) => Err(self.parse_error(format!(
                "Expected an array value terminator \",\" or an array terminator \"]\", but got \
                 '{}' instead.",
                char::from(c)
            ))),
        }
    }

    fn resolve(&mut self, scalar: Scalar, pos: Pos) -> Result<Value, ConfigError> {
        let kind = match scalar {
            Scalar::Str(s) => ValueKind::String(s),
            Scalar::Int(i) => ValueKind::Integer(i),
            Scalar::Float(f) => ValueKind::Float(f),
            Scalar::Bool(b) => ValueKind::Bool(b),
            Scalar::DateTime(d) => ValueKind::DateTime(d),
            Scalar::Variable(name) => return self.variable(&name, pos),
        };
        Ok(Value { kind, pos })
    }

    /// `$NAME`: innermost map outward, then the environment (parsed as a value).
    fn variable(&mut self, name: &str, pos: Pos) -> Result<Value, ConfigError> {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(mut value) = scope.take_variable(name) {
                value.pos = pos;
                return Ok(value);
            }
        }
        let Some(text) = std::env::var(name).ok() else {
            return Err(ConfigError::UndefinedVariable {
                pos,
                name: name.to_string(),
            });
        };
        self.env_variable(name, &text, pos)
    }

    fn env_variable(&mut self, name: &str, text: &str, pos: Pos) -> Result<Value, ConfigError> {
        let env_error = |source: ConfigError| ConfigError::EnvVariable {
            pos: pos.clone(),
            name: name.to_string(),
            source: Box::new(source),
        };
        if self.depth.nesting >= NESTING_MAX {
            return Err(env_error(
                self.parse_error("environment variables nest too deeply".into()),
            ));
        }
        let depth = Depth {
            nesting: self.depth.nesting + 1,
            ..self.depth
        };
        let origin = PathBuf::from(format!("${name}"));
        let doc = format!("{ENV_KEY}={text}");
        let map = parse_nested(&doc, &origin, depth, self.includes).map_err(env_error)?;
        let mut value = match map.get(ENV_KEY) {
            Some(v) => v.clone(),
            None => {
                return Err(ConfigError::UndefinedVariable {
                    pos,
                    name: name.to_string(),
                });
            }
        };
        relocate(&mut value, &pos);
        Ok(value)
    }

    /// `include <path>`: parse the file on its own and add its entries to the innermost map.
    fn include(&mut self, pos: Pos) -> Result<(), ConfigError> {
        let raw = self
            .cursor
            .include_path()
            .map_err(|m| self.parse_error(m))?;
        if self.includes == Includes::Denied {
            return Err(self.parse_error("include is not allowed here".into()));
        }
        if self.depth.includes >= INCLUDE_DEPTH_MAX {
            return Err(self.parse_error(format!(
                "includes nest deeper than {INCLUDE_DEPTH_MAX} levels (include cycle?)"
            )));
        }
        let path = match self.file.parent() {
            Some(dir) => dir.join(&raw),
            None => PathBuf::from(&raw),
        };
        let text = read_config(&path).map_err(|source| ConfigError::Include {
            pos: pos.clone(),
            include: raw.clone(),
            source,
        })?;
        let depth = Depth {
            includes: self.depth.includes + 1,
            ..self.depth
        };
        let map = parse_nested(&text, &path, depth, self.includes)?;
        self.innermost().append(map);
        Ok(())
    }
}

/// Gives an environment-sourced value (and everything in it) the position of the reference.
fn relocate(value: &mut Value, pos: &Pos) {
    value.pos = pos.clone();
    match &mut value.kind {
        ValueKind::Array(items) => items.iter_mut().for_each(|v| relocate(v, pos)),
        ValueKind::Map(map) => {
            let mut relocated = Map::new();
            for entry in map.iter() {
                let mut v = entry.value.clone();
                relocate(&mut v, pos);
                relocated.push(entry.key.clone(), pos.clone(), v);
            }
            *map = relocated;
        }
        _ => {}
    }
}
