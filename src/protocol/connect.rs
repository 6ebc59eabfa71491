//! CONNECT options (client to server) and INFO (server to client) as JSON.
//!
//! Cold: runs once per connection (and on the rare async INFO). Allocates freely.
//! Invariant: decoding accepts and rejects what nats-server 2.9.10's `json.Unmarshal` into
//! `ClientOpts` does, and `ServerInfo::to_json` writes the bytes Go's `encoding/json` writes for
//! `Info` (field order, `omitempty`, HTML-safe escaping). Secrets never reach `Debug` or an error.
//!
//! Facts checked against a live nats-server 2.9.10 [live]:
//! - With no CONNECT, or a CONNECT that leaves them out, `verbose`, `pedantic` and `echo` are
//!   **true** (nats-server starts each client from `defaultOpts`): `SUB foo 1` with no CONNECT
//!   gets `+OK`, and `PUB foo.* 0` gets `-ERR 'Invalid Publish Subject'`.
//! - A CONNECT is decoded on top of the current options: absent and `null` fields keep their
//!   value; keys match case-insensitively (`"Verbose":true` works); a repeated key: the last
//!   wins; unknown keys are ignored; `null` as the whole document changes nothing.
//! - Malformed JSON, a top-level non-object, trailing junk or a wrongly typed known field
//!   (`"verbose":"x"`, `"protocol":1.0`, `"user":5`, `"new_account":"x"`, `"import":5`) closes
//!   the connection without `-ERR`. Invalid UTF-8 inside a string is accepted (Go replaces it
//!   with U+FFFD; so do we).

use std::fmt;
use std::io;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// The fields of a client's CONNECT, with nats-server's starting values.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Send `+OK` after each accepted op. Starts **true** in nats-server.
    pub verbose: bool,
    /// Strict publish-subject checks. Starts **true** in nats-server.
    pub pedantic: bool,
    pub tls_required: bool,
    pub auth_token: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub name: String,
    pub lang: String,
    pub version: String,
    /// 0 or 1; anything else is [`ConnectError::InvalidProtocol`].
    pub protocol: i64,
    /// Receive own publishes. Starts true.
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub sig: Option<String>,
    pub nkey: Option<String>,
    pub jwt: Option<String>,
    /// Legacy; any value is an auth failure.
    pub account: Option<String>,
    /// Legacy; `true` is an auth failure.
    pub new_account: bool,
}

impl Default for ConnectOptions {
    /// nats-server `defaultOpts`: `Verbose: true, Pedantic: true, Echo: true`.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            tls_required: false,
            auth_token: None,
            user: None,
            pass: None,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            protocol: 0,
            echo: true,
            headers: false,
            no_responders: false,
            sig: None,
            nkey: None,
            jwt: None,
            account: None,
            new_account: false,
        }
    }
}

impl ConnectOptions {
    /// Decode a CONNECT argument on top of the defaults.
    pub fn parse(json: &[u8]) -> Result<Self, ConnectError> {
        let mut options = ConnectOptions::default();
        options.apply_json(json)?;
        Ok(options)
    }

    /// Decode a CONNECT argument on top of the current options, as nats-server does for a
    /// second CONNECT. On error the connection is closed without `-ERR`; `self` may then be
    /// partly updated.
    pub fn apply_json(&mut self, json: &[u8]) -> Result<(), ConnectError> {
        let text = String::from_utf8_lossy(json);
        let mut de = serde_json::Deserializer::from_str(&text);
        OptionsSeed(self)
            .deserialize(&mut de)
            .map_err(ConnectError::from_json)?;
        de.end().map_err(ConnectError::from_json)
    }

    fn apply_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key.to_ascii_lowercase().as_str() {
            "verbose" => keep_or_set(&mut self.verbose, map.next_value()?),
            "pedantic" => keep_or_set(&mut self.pedantic, map.next_value()?),
            "tls_required" => keep_or_set(&mut self.tls_required, map.next_value()?),
            "auth_token" => set_text(&mut self.auth_token, map.next_value()?),
            "user" => set_text(&mut self.user, map.next_value()?),
            "pass" => set_text(&mut self.pass, map.next_value()?),
            "name" => keep_or_set(&mut self.name, map.next_value()?),
            "lang" => keep_or_set(&mut self.lang, map.next_value()?),
            "version" => keep_or_set(&mut self.version, map.next_value()?),
            "protocol" => keep_or_set(&mut self.protocol, map.next_value()?),
            "echo" => keep_or_set(&mut self.echo, map.next_value()?),
            "headers" => keep_or_set(&mut self.headers, map.next_value()?),
            "no_responders" => keep_or_set(&mut self.no_responders, map.next_value()?),
            "sig" => set_text(&mut self.sig, map.next_value()?),
            "nkey" => set_text(&mut self.nkey, map.next_value()?),
            "jwt" => set_text(&mut self.jwt, map.next_value()?),
            "account" => set_text(&mut self.account, map.next_value()?),
            "new_account" => keep_or_set(&mut self.new_account, map.next_value()?),
            // Route and leafnode fields of nats-server's ClientOpts: ignored, but typed.
            "import" | "export" => {
                map.next_value::<Option<SubjectPermissionShape>>()?;
            }
            "remote_account" => {
                map.next_value::<Option<String>>()?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ConnectOptions {
    /// Same rules as [`ConnectOptions::parse`] (starting from the defaults).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut options = ConnectOptions::default();
        OptionsSeed(&mut options).deserialize(deserializer)?;
        Ok(options)
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("verbose", &self.verbose)
            .field("pedantic", &self.pedantic)
            .field("tls_required", &self.tls_required)
            .field("auth_token", &Redacted(&self.auth_token))
            .field("user", &self.user)
            .field("pass", &Redacted(&self.pass))
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .field("protocol", &self.protocol)
            .field("echo", &self.echo)
            .field("headers", &self.headers)
            .field("no_responders", &self.no_responders)
            .field("sig", &Redacted(&self.sig))
            .field("nkey", &self.nkey)
            .field("jwt", &Redacted(&self.jwt))
            .field("account", &self.account)
            .field("new_account", &self.new_account)
            .finish()
    }
}

/// Why a CONNECT is refused. Never carries the JSON or a value from it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum ConnectError {
    #[error("malformed CONNECT/INFO JSON ({category:?} error at line {line} column {column})")]
    Json {
        category: serde_json::error::Category,
        line: usize,
        column: usize,
    },
    #[error("invalid client protocol")]
    InvalidProtocol,
    #[error("no responders requires headers support")]
    NoRespondersRequiresHeaders,
}

impl ConnectError {
    /// The `-ERR` line nats-server sends before closing, or `None` for a silent close.
    pub fn err_line(self) -> Option<&'static [u8]> {
        match self {
            ConnectError::Json { .. } => None,
            ConnectError::InvalidProtocol => Some(b"-ERR 'invalid client protocol'\r\n"),
            ConnectError::NoRespondersRequiresHeaders => {
                Some(b"-ERR 'no responders requires headers support'\r\n")
            }
        }
    }

    fn from_json(e: serde_json::Error) -> Self {
        ConnectError::Json {
            category: e.classify(),
            line: e.line(),
            column: e.column(),
        }
    }
}

/// nats-server `processConnect` checks for CLIENT connections, in its order: protocol, then
/// no_responders. (Authentication and the legacy `account`/`new_account` fields are checked
/// before these, by the auth code: `Authorization Violation`.) Every error closes the connection.
pub fn validate(options: &ConnectOptions) -> Result<(), ConnectError> {
    if !(0..=1).contains(&options.protocol) {
        return Err(ConnectError::InvalidProtocol);
    }
    if options.no_responders && !options.headers {
        return Err(ConnectError::NoRespondersRequiresHeaders);
    }
    Ok(())
}

/// Check an `INFO` sent by a client: nats-server ignores it when it is a JSON object or `null`
/// and closes without `-ERR` otherwise (`INFO x`, `INFO []`) [live]. nats-server also rejects a
/// wrongly typed known field (`{"port":"x"}`); that is not checked here.
pub fn check_client_info(json: &[u8]) -> Result<(), ConnectError> {
    let text = String::from_utf8_lossy(json);
    serde_json::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(&text)
        .map(|_| ())
        .map_err(ConnectError::from_json)
}

/// The server's INFO, in nats-server 2.9.10's `Info` field order. Empty strings and lists,
/// `false` and a zero `client_id` are left out like Go's `omitempty`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_available: bool,
    pub max_payload: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub jetstream: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub client_id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "is_false")]
    pub cluster_dynamic: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub ldm: bool,
    /// 2.10+ (auth callout); empty for 2.9 behaviour.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub xkey: String,
}

impl ServerInfo {
    /// The JSON as Go's `encoding/json` writes it (`<`, `>`, `&`, U+2028 and U+2029 escaped).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        // Cannot fail: the struct has only string keys, and writing to a Vec never fails.
        self.serialize(&mut ser)
            .expect("ServerInfo serializes to a Vec");
        out
    }

    /// The whole `INFO <json> \r\n` line.
    pub fn to_line(&self) -> Vec<u8> {
        let json = self.to_json();
        let mut out = Vec::with_capacity(json.len() + 8);
        crate::protocol::encode::info(&mut out, &json);
        out
    }
}

struct OptionsSeed<'o>(&'o mut ConnectOptions);

impl<'de> DeserializeSeed<'de> for OptionsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Fields are applied in document order, so a repeated key's last value wins, as in Go.
        while let Some(key) = map.next_key::<String>()? {
            self.0.apply_field(&key, &mut map)?;
        }
        Ok(())
    }
}

/// nats-server's `SubjectPermission`, only to reject wrongly typed `import`/`export`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct SubjectPermissionShape {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

/// Go leaves a field alone for JSON `null`.
fn keep_or_set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// For Go an empty string and an absent one are the same; keep `None` for both.
fn set_text(slot: &mut Option<String>, value: Option<String>) {
    if let Some(value) = value {
        *slot = (!value.is_empty()).then_some(value);
    }
}

struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("[redacted]"),
            None => f.write_str("None"),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Writes strings as Go's `encoding/json` does: HTML-safe (`<`, `>`, `&` as `\u003c` etc.),
/// U+2028/U+2029 escaped, and `\b`/`\f` as `\u0008`/`\u000c`.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        match char_escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> ConnectOptions {
        ConnectOptions::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn is_json_error(json: &[u8]) -> bool {
        matches!(ConnectOptions::parse(json), Err(ConnectError::Json { .. }))
    }

    #[test]
    fn defaults_are_nats_server_default_opts() {
        let d = ConnectOptions::default();
        assert!(d.verbose, "[live] no CONNECT still gets +OK");
        assert!(
            d.pedantic,
            "[live] no CONNECT still gets Invalid Publish Subject"
        );
        assert!(d.echo);
        assert!(!d.headers);
        assert!(!d.no_responders);
        assert_eq!(d.protocol, 0);
        assert_eq!(parsed("{}"), d);
        assert_eq!(parsed("null"), d);
        assert_eq!(parsed(" {} \r\n"), d);
    }

    #[test]
    fn typical_client_connect() {
        let o = parsed(
            r#"{"verbose":false,"pedantic":false,"tls_required":false,"name":"svc","lang":"rust",
            "version":"0.46.0","protocol":1,"echo":false,"headers":true,"no_responders":true,
            "user":"alice","pass":"s3cret","auth_token":"tok","nkey":"UABC","sig":"c2ln",
            "jwt":"eyJ","account":"A","new_account":true}"#,
        );
        assert!(!o.verbose && !o.pedantic && !o.echo && !o.tls_required);
        assert!(o.headers && o.no_responders && o.new_account);
        assert_eq!(
            (o.name.as_str(), o.lang.as_str(), o.version.as_str()),
            ("svc", "rust", "0.46.0")
        );
        assert_eq!(o.protocol, 1);
        assert_eq!(o.user.as_deref(), Some("alice"));
        assert_eq!(o.pass.as_deref(), Some("s3cret"));
        assert_eq!(o.auth_token.as_deref(), Some("tok"));
        assert_eq!(o.nkey.as_deref(), Some("UABC"));
        assert_eq!(o.sig.as_deref(), Some("c2ln"));
        assert_eq!(o.jwt.as_deref(), Some("eyJ"));
        assert_eq!(o.account.as_deref(), Some("A"));
    }

    #[test]
    fn go_decoding_rules() {
        // [live] null keeps the current value.
        assert!(parsed(r#"{"verbose":null,"echo":null,"name":null}"#).verbose);
        // [live] keys match case-insensitively; a repeated key: last wins, in document order.
        assert!(
            parsed(r#"{"Verbose":false,"ECHO":false}"#)
                == ConnectOptions {
                    verbose: false,
                    echo: false,
                    ..ConnectOptions::default()
                }
        );
        assert!(!parsed(r#"{"verbose":true,"verbose":false}"#).verbose);
        assert!(parsed(r#"{"verbose":false,"VERBOSE":true}"#).verbose);
        // Unknown keys of any type are ignored [live].
        assert!(
            parsed(r#"{"unknown":[1,{"a":2}],"zzz":null,"verbose":false}"#)
                == ConnectOptions {
                    verbose: false,
                    ..ConnectOptions::default()
                }
        );
        // Empty strings are the same as absent for Go.
        assert_eq!(parsed(r#"{"user":"","pass":""}"#).user, None);
        // Invalid UTF-8 inside a string is accepted [live].
        let o = ConnectOptions::parse(b"{\"name\":\"a\xffb\"}").unwrap();
        assert_eq!(o.name, "a\u{fffd}b");
    }

    #[test]
    fn malformed_connect_closes_silently() {
        for json in [
            &b""[..],
            b"\r",
            b"{",
            b"[]",
            b"5",
            b"\"x\"",
            br#"{"verbose":"x"}"#,
            br#"{"protocol":1.0}"#,
            br#"{"protocol":"1"}"#,
            br#"{"protocol":99999999999999999999}"#,
            br#"{"user":5}"#,
            br#"{"new_account":"x"}"#,
            br#"{"import":5}"#,
            br#"{"remote_account":1}"#,
            br#"{"verbose":false} junk"#,
            b"{\"a\":1,}",
        ] {
            assert!(is_json_error(json), "{:?}", String::from_utf8_lossy(json));
        }
        assert_eq!(ConnectOptions::parse(b"[]").unwrap_err().err_line(), None);
        assert!(!is_json_error(
            br#"{"import":{"allow":["a"]},"export":null}"#
        ));
    }

    #[test]
    fn json_errors_do_not_carry_values() {
        let e = ConnectOptions::parse(br#"{"auth_token":1234567, "pass":true}"#).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("1234567"), "{text}");
    }

    #[test]
    fn apply_json_merges_on_top_of_current_options() {
        let mut o = parsed(r#"{"verbose":false,"headers":true,"user":"a"}"#);
        o.apply_json(br#"{"echo":false}"#).unwrap();
        assert!(!o.verbose && o.headers && !o.echo);
        assert_eq!(o.user.as_deref(), Some("a"));
    }

    #[test]
    fn validate_protocol_and_no_responders() {
        assert_eq!(validate(&parsed(r#"{"protocol":0}"#)), Ok(()));
        assert_eq!(validate(&parsed(r#"{"protocol":1}"#)), Ok(()));
        assert_eq!(
            validate(&parsed(r#"{"protocol":2}"#)),
            Err(ConnectError::InvalidProtocol)
        );
        assert_eq!(
            validate(&parsed(r#"{"protocol":-1}"#)),
            Err(ConnectError::InvalidProtocol)
        );
        assert_eq!(
            validate(&parsed(r#"{"no_responders":true}"#)),
            Err(ConnectError::NoRespondersRequiresHeaders)
        );
        assert_eq!(
            validate(&parsed(r#"{"no_responders":true,"headers":true}"#)),
            Ok(())
        );
        // Protocol is checked first, as in processConnect.
        assert_eq!(
            validate(&parsed(r#"{"protocol":3,"no_responders":true}"#)),
            Err(ConnectError::InvalidProtocol)
        );
        assert_eq!(
            ConnectError::InvalidProtocol.err_line(),
            Some(&b"-ERR 'invalid client protocol'\r\n"[..])
        );
        assert_eq!(
            ConnectError::NoRespondersRequiresHeaders.err_line(),
            Some(&b"-ERR 'no responders requires headers support'\r\n"[..])
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let o = parsed(
            r#"{"user":"alice","pass":"hunter2","auth_token":"tok-secret","sig":"sig-secret",
            "jwt":"jwt-secret","nkey":"UKEY"}"#,
        );
        let text = format!("{o:?}");
        for secret in ["hunter2", "tok-secret", "sig-secret", "jwt-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("pass: [redacted]"), "{text}");
        assert!(text.contains("alice") && text.contains("UKEY"), "{text}");
        assert!(format!("{:?}", ConnectOptions::default()).contains("pass: None"));
    }

    #[test]
    fn deserialize_impl_uses_the_same_rules() {
        let o: ConnectOptions = serde_json::from_str(r#"{"Verbose":false,"echo":null}"#).unwrap();
        assert!(!o.verbose && o.echo && o.pedantic);
    }

    #[test]
    fn client_info_is_ignored_when_object_or_null() {
        assert_eq!(check_client_info(b"{}"), Ok(()));
        assert_eq!(check_client_info(b"null"), Ok(()));
        assert_eq!(check_client_info(br#"{"zzz":"x"}"#), Ok(()));
        assert!(check_client_info(b"x").is_err());
        assert!(check_client_info(b"[]").is_err());
        assert!(check_client_info(b"").is_err());
    }

    fn base_info(port: u16) -> ServerInfo {
        ServerInfo {
            server_id: "NID".into(),
            server_name: "NID".into(),
            version: "2.9.10".into(),
            proto: 1,
            go: "go1.19.8".into(),
            host: "127.0.0.1".into(),
            port,
            headers: true,
            max_payload: 1_048_576,
            client_id: 39,
            client_ip: "127.0.0.1".into(),
            ..ServerInfo::default()
        }
    }

    #[test]
    fn info_matches_nats_server_plain() {
        // [live] nats-server -a 127.0.0.1 (server id shortened).
        let expected = concat!(
            r#"{"server_id":"NID","server_name":"NID","version":"2.9.10","proto":1,"#,
            r#""go":"go1.19.8","host":"127.0.0.1","port":14222,"headers":true,"#,
            r#""max_payload":1048576,"client_id":39,"client_ip":"127.0.0.1"}"#
        );
        assert_eq!(
            String::from_utf8(base_info(14222).to_json()).unwrap(),
            expected
        );
        let line = base_info(14222).to_line();
        assert_eq!(line, format!("INFO {expected} \r\n").into_bytes());
    }

    #[test]
    fn info_matches_nats_server_with_auth_and_nonce() {
        // [live] server_name "srv<&>name", users with an nkey, max_payload 2000.
        let info = ServerInfo {
            server_name: "srv<&>name".into(),
            auth_required: true,
            max_payload: 2000,
            client_id: 4,
            nonce: "Vl_TqQDAT2HORv4".into(),
            ..base_info(24872)
        };
        let expected = concat!(
            r#"{"server_id":"NID","server_name":"srv\u003c\u0026\u003ename","#,
            r#""version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","#,
            r#""port":24872,"headers":true,"auth_required":true,"max_payload":2000,"#,
            r#""client_id":4,"client_ip":"127.0.0.1","nonce":"Vl_TqQDAT2HORv4"}"#
        );
        assert_eq!(String::from_utf8(info.to_json()).unwrap(), expected);
    }

    #[test]
    fn info_matches_nats_server_with_tls_flags() {
        // [live] tls { verify: true }, allow_non_tls: true.
        let info = ServerInfo {
            tls_verify: true,
            tls_available: true,
            client_id: 4,
            ..base_info(24873)
        };
        let expected = concat!(
            r#"{"server_id":"NID","server_name":"NID","version":"2.9.10","proto":1,"#,
            r#""go":"go1.19.8","host":"127.0.0.1","port":24873,"headers":true,"#,
            r#""tls_verify":true,"tls_available":true,"max_payload":1048576,"#,
            r#""client_id":4,"client_ip":"127.0.0.1"}"#
        );
        assert_eq!(String::from_utf8(info.to_json()).unwrap(), expected);
    }

    #[test]
    fn info_optional_fields_in_go_order() {
        let info = ServerInfo {
            git_commit: "abc".into(),
            tls_required: true,
            client_id: 0,
            client_ip: String::new(),
            connect_urls: vec!["10.0.0.1:4222".into()],
            ldm: true,
            ..base_info(4222)
        };
        let json = String::from_utf8(info.to_json()).unwrap();
        assert!(
            json.contains(r#""proto":1,"git_commit":"abc","go":"go1.19.8""#),
            "{json}"
        );
        assert!(
            json.contains(r#""headers":true,"tls_required":true,"max_payload""#),
            "{json}"
        );
        assert!(
            json.ends_with(r#""max_payload":1048576,"connect_urls":["10.0.0.1:4222"],"ldm":true}"#),
            "{json}"
        );
        assert!(
            !json.contains("client_id") && !json.contains("nonce"),
            "{json}"
        );
    }

    #[test]
    fn go_string_escapes() {
        let info = ServerInfo {
            server_name: "a\u{8}b\u{c}\n\u{1}\"\\/\u{2028}\u{7f}é".into(),
            ..base_info(1)
        };
        let json = String::from_utf8(info.to_json()).unwrap();
        assert!(
            json.contains(r#""server_name":"a\u0008b\u000c\n\u0001\"\\/\u2028"#),
            "{json}"
        );
        assert!(json.contains("\u{7f}é\""), "{json}");
    }
}
