//! The `authorization_request` JWT (nats-io/jwt v2 `AuthorizationRequestClaims`) and its
//! sealing.
//!
//! Cold: once per callout CONNECT. Invariant: the token is signed by the server's identity key
//! and names a user nkey generated for this request alone; with a service xkey the payload is
//! sealed to it and the header carries the server's public xkey.

use nkeys::{KeyPair, XKey};
use serde::Serialize;

use crate::auth::callout::{CalloutError, REQUEST_AUDIENCE, ServerKeys, XKEY_HEADER};
use crate::auth::jwt::ClaimsData;
use crate::protocol::ConnectOptions;

/// What the request says about this server (jwt `ServerID`); `id` and `xkey` come from
/// [`ServerKeys`].
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    pub name: String,
    pub host: String,
    pub version: String,
    pub cluster: String,
    pub tags: Vec<String>,
}

/// What the request says about the client (jwt `ClientInformation`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub client_type: String,
    #[serde(rename = "mqtt_id", skip_serializing_if = "String::is_empty")]
    pub mqtt: String,
    /// The INFO nonce, only when the client sent `sig`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

/// The client's TLS state (jwt `ClientTLS`): PEM certificates, the verified chain when the
/// server verified the client's certificate, else the certificates as sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientTls {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cipher: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified_chains: Vec<Vec<String>>,
}

/// A built request: what to publish, and what the response must name.
pub struct Request {
    /// The fresh user public key the response (and its user JWT) must have as `sub`.
    pub user_nkey: String,
    /// The JWT, or its sealed form.
    pub payload: Vec<u8>,
    /// A whole NATS header block (`NATS/1.0` … blank line) when sealed, else empty.
    pub headers: Vec<u8>,
}

#[derive(Serialize)]
struct ServerId<'a> {
    name: &'a str,
    host: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cluster: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    xkey: &'a str,
}

/// jwt `ConnectOptions`: the CONNECT fields as received.
#[derive(Serialize)]
struct ConnectOpts<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    jwt: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    nkey: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    sig: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    auth_token: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pass: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    lang: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    protocol: i64,
}

#[derive(Serialize)]
struct AuthorizationRequest<'a> {
    server_id: ServerId<'a>,
    user_nkey: &'a str,
    client_info: &'a ClientInfo,
    connect_opts: ConnectOpts<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_tls: Option<&'a ClientTls>,
    #[serde(rename = "type")]
    kind: &'static str,
    version: i64,
}

/// Builds the request for one CONNECT: `sub` is the issuer account (server-config mode),
/// `service_xkey` the service's curve key when requests are sealed, `exp` the Unix second the
/// server stops waiting (now + auth timeout).
#[allow(clippy::too_many_arguments)]
pub fn build_request(
    keys: &ServerKeys,
    sub: &str,
    service_xkey: Option<&XKey>,
    server: &ServerInfo,
    client: &ClientInfo,
    connect: &ConnectOptions,
    tls: Option<&ClientTls>,
    exp: i64,
) -> Result<Request, CalloutError> {
    let user = KeyPair::new_user();
    let user_nkey = user.public_key();
    let text = |o: &Option<String>| o.as_deref().unwrap_or_default().to_string();
    let (jwt, nkey, sig, token) = (
        text(&connect.jwt),
        text(&connect.nkey),
        text(&connect.sig),
        text(&connect.auth_token),
    );
    let (user_name, pass) = (text(&connect.user), text(&connect.pass));
    let nats = AuthorizationRequest {
        server_id: ServerId {
            name: &server.name,
            host: &server.host,
            id: keys.id(),
            version: &server.version,
            cluster: &server.cluster,
            tags: &server.tags,
            xkey: if service_xkey.is_some() {
                keys.xkey_public()
            } else {
                ""
            },
        },
        user_nkey: &user_nkey,
        client_info: client,
        connect_opts: ConnectOpts {
            jwt: &jwt,
            nkey: &nkey,
            sig: &sig,
            auth_token: &token,
            user: &user_name,
            pass: &pass,
            name: &connect.name,
            lang: &connect.lang,
            version: &connect.version,
            protocol: connect.protocol,
        },
        client_tls: tls,
        kind: "authorization_request",
        version: 2,
    };
    let data = ClaimsData {
        aud: REQUEST_AUDIENCE.to_string(),
        exp,
        sub: sub.to_string(),
        ..ClaimsData::default()
    };
    let token = crate::auth::jwt::encode::claims(data, &nats, &keys.identity)
        .map_err(|_| CalloutError::Request)?;
    let Some(service) = service_xkey else {
        return Ok(Request {
            user_nkey,
            payload: token.into_bytes(),
            headers: Vec::new(),
        });
    };
    let payload = keys
        .xkey
        .seal(token.as_bytes(), service)
        .map_err(|_| CalloutError::Request)?;
    let headers = format!("NATS/1.0\r\n{XKEY_HEADER}: {}\r\n\r\n", keys.xkey_public());
    Ok(Request {
        user_nkey,
        payload,
        headers: headers.into_bytes(),
    })
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
