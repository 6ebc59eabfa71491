//! The shard's part of the auth callout: deciding that a CONNECT goes to the auth service
//! (server-config mode: `auth_callout`; operator mode: the `authorization` claim of the user
//! JWT's account), publishing the request into the callout account, parking the client until
//! the service's reply (or the auth timeout), and applying the verdict.
//!
//! Cold: once per callout CONNECT and once per reply. The request is published through
//! `route` like any message, with a reply subject this shard owns
//! (`$SYS._INBOX.callout.<shard>.<seq>`); a reply published on any shard reaches the owner
//! (directly or as `ShardMsg::CalloutReply`), which alone decides.
//! Invariants: a parked client runs no ops and is not read (the slow-check parking of
//! `admission.rs`); at most `CALLOUT_PENDING_MAX` callouts are outstanding per shard, and a
//! CONNECT past that is refused at once; each request is settled at most once (a late or
//! repeated reply finds nothing and is dropped); a reply counts only when published in the
//! callout account; no request, response, JWT or key appears in a log line.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ahash::AHashMap;
use nkeys::XKey;

use crate::auth::callout::{self, CALLOUT_SUBJECT, CalloutError, ClientInfo, Expected, ServerInfo};
use crate::auth::{AuthConfig, AuthFailure, ClientIdentity, Verdict};
use crate::conn::ConnFlags;
use crate::protocol::ConnectOptions;
use crate::shard::forward::Published;
use crate::shard::mesh::ShardMsg;
use crate::shard::{Shard, ShardId};

/// Callouts one shard keeps outstanding. Each holds a parked client until its reply or its auth
/// timeout; past this a CONNECT that needs a callout is refused with `Authorization Violation`
/// rather than queued without bound.
pub const CALLOUT_PENDING_MAX: usize = 1024;
/// Reply subjects of callout requests: `<prefix><shard>.<seq>`.
pub const CALLOUT_INBOX_PREFIX: &[u8] = b"$SYS._INBOX.callout.";

/// Where one CONNECT's callout goes.
pub(super) struct CalloutRoute {
    /// The account the request is published in; only a reply published there counts.
    account: u32,
    /// The request's `sub`: the configured issuer, or the callout account's key.
    issuer: String,
    /// The service's curve key, when requests are sealed.
    xkey: Option<Arc<XKey>>,
    /// `client_info.user` (nats-server `getRawAuthUser`: the nkey, the user name, else the
    /// user JWT's key).
    user: String,
    mode: Mode,
}

/// Who the callout's response is checked against.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Mode {
    /// `authorization { auth_callout }`: the configuration as it is when the reply comes.
    Config,
    /// The account JWT's `authorization`: the account (by the route's `issuer`) as it is when
    /// the reply comes.
    Operator,
}

/// One outstanding callout.
pub(super) struct PendingCallout {
    slot: u32,
    cid: u64,
    route: CalloutRoute,
    /// The fresh user nkey the response must name.
    user_nkey: String,
    deadline: Instant,
}

/// This shard's outstanding callouts, by sequence number (the last token of the reply subject).
#[derive(Default)]
pub(super) struct Callouts {
    pending: AHashMap<u64, PendingCallout>,
    next_seq: u64,
}

impl Shard {
    /// Where this CONNECT goes instead of `verdict`, if it goes to an auth service (nats-server
    /// `processClientOrLeafAuthentication`). Server-config mode: every client whose user is not
    /// one of the `auth_users`, unless it logged in locally into an account the callout does
    /// not cover. Operator mode: a client whose user JWT logged it into an account with an
    /// `authorization` claim, unless it is one of that account's `auth_users` (nats-server calls
    /// out only for a client its JWT bound to that account, so a refused JWT stays refused).
    pub(super) fn callout_route(
        auth: &AuthConfig,
        connect: &ConnectOptions,
        verdict: &Verdict,
    ) -> Option<CalloutRoute> {
        let user = raw_auth_user(connect);
        if let Some(config) = auth.callout() {
            if config.is_auth_user(user) {
                return None;
            }
            let local_account = match verdict {
                Verdict::Done(Ok(identity)) => Some(identity.account),
                Verdict::Done(Err(_)) => None,
                Verdict::Slow(check) => Some(check.account()),
            };
            return config.delegates(local_account).then(|| CalloutRoute {
                account: config.account,
                issuer: config.issuer.clone(),
                xkey: config.xkey.clone(),
                user: user.to_string(),
                mode: Mode::Config,
            });
        }
        let Verdict::Done(Ok(identity)) = verdict else {
            return None;
        };
        let callout = auth.account_callout(identity.account, &identity.user)?;
        Some(CalloutRoute {
            account: callout.id,
            issuer: callout.key,
            xkey: callout.xkey,
            user: if user.is_empty() {
                identity.user.clone()
            } else {
                user.to_string()
            },
            mode: Mode::Operator,
        })
    }

    /// Publishes the callout request for this CONNECT and parks the client; refuses it at
    /// once when the request cannot go out.
    pub(super) fn start_callout(
        &mut self,
        slot: u32,
        connect: &ConnectOptions,
        flags: ConnFlags,
        route: CalloutRoute,
    ) {
        let snapshot = self.snapshot.clone();
        if self.callouts.pending.len() >= CALLOUT_PENDING_MAX {
            self.refuse_connect(slot, AuthFailure::Callout(CalloutError::QueueFull));
            return;
        }
        let request = match self.build_callout_request(slot, connect, &route) {
            Ok(request) => request,
            Err(err) => {
                self.refuse_connect(slot, AuthFailure::Callout(err));
                return;
            }
        };
        let seq = self.callouts.next_seq;
        self.callouts.next_seq += 1;
        let mut reply = CALLOUT_INBOX_PREFIX.to_vec();
        reply.extend_from_slice(format!("{}.{seq}", self.id.0).as_bytes());
        let msg = Published {
            subject: CALLOUT_SUBJECT.as_bytes(),
            reply: &reply,
            headers: &request.headers,
            payload: &request.payload,
        };
        if !self.route(route.account, &msg, None) {
            self.refuse_connect(slot, AuthFailure::Callout(CalloutError::NoService));
            return;
        }
        let timeout = snapshot.auth.timeout();
        let conn = &mut self.conns[slot as usize];
        let deadline = conn.auth_deadline.unwrap_or(self.now + timeout);
        self.callouts.pending.insert(
            seq,
            PendingCallout {
                slot,
                cid: conn.cid,
                route,
                user_nkey: request.user_nkey,
                deadline,
            },
        );
        conn.auth_pending = true;
        conn.pending_flags = flags;
        // Nothing more is read from this client until the verdict.
        self.pause_recv(slot);
    }

    fn build_callout_request(
        &self,
        slot: u32,
        connect: &ConnectOptions,
        route: &CalloutRoute,
    ) -> Result<callout::Request, CalloutError> {
        let conn = &self.conns[slot as usize];
        let opts = &self.snapshot.opts;
        let keys = &self.shared.keys;
        let server = ServerInfo {
            name: opts
                .server_name
                .clone()
                .unwrap_or_else(|| keys.id().to_string()),
            host: opts.host.clone(),
            version: crate::shared::COMPAT_VERSION.to_string(),
            ..ServerInfo::default()
        };
        let client = ClientInfo {
            host: conn.peer.ip().to_string(),
            id: conn.cid,
            user: route.user.clone(),
            name: conn.name.clone(),
            kind: "Client".into(),
            client_type: "nats".into(),
            // nats-server fills the nonce only when the client signed it.
            nonce: match (&connect.sig, &conn.nonce) {
                (Some(_), Some(nonce)) => nonce.clone(),
                _ => String::new(),
            },
            ..ClientInfo::default()
        };
        let verified = self.snapshot.tls.as_ref().is_some_and(|t| t.verify);
        let tls = conn.tls.as_ref().and_then(|t| t.callout_info(verified));
        let timeout = i64::try_from(self.snapshot.auth.timeout().as_secs()).unwrap_or(i64::MAX);
        let exp = crate::auth::jwt::encode::now_unix().saturating_add(timeout.max(1));
        // The CONNECT as received: `on_connect` moved these three into the connection.
        let mut connect = connect.clone();
        connect.name.clone_from(&conn.name);
        connect.lang.clone_from(&conn.lang);
        connect.version.clone_from(&conn.version);
        callout::build_request(
            keys,
            &route.issuer,
            route.xkey.as_deref(),
            &server,
            &client,
            &connect,
            tls.as_ref(),
            exp,
        )
    }

    /// A publish in `account` on a callout reply subject: settled here if this shard owns it,
    /// else handed to the owner. Never routed to subscribers.
    pub(super) fn on_callout_reply(&mut self, account: u32, msg: &Published<'_>) {
        let Some((shard, seq)) = parse_reply(msg.subject) else {
            tracing::debug!(
                shard = self.id.0,
                "auth callout: reply on a malformed subject"
            );
            return;
        };
        if shard == self.id.0 {
            self.settle_callout(account, seq, msg.payload);
            return;
        }
        if usize::from(shard) >= self.shared.shard_count {
            return;
        }
        let payload = msg.payload.to_vec();
        let handoff = ShardMsg::CalloutReply {
            account,
            seq,
            payload,
        };
        if !self.mesh.send(ShardId(shard), handoff) {
            tracing::warn!(
                shard = self.id.0,
                peer = shard,
                "auth callout reply dropped"
            );
        }
    }

    /// Applies the reply to callout `seq`, published in `account`.
    pub(super) fn settle_callout(&mut self, account: u32, seq: u64, payload: &[u8]) {
        match self.callouts.pending.get(&seq) {
            Some(pending) if pending.route.account == account => {}
            _ => {
                // Late (timed out), repeated, or published in another account.
                tracing::debug!(
                    shard = self.id.0,
                    "auth callout: reply to no outstanding request dropped"
                );
                return;
            }
        }
        let Some(pending) = self.callouts.pending.remove(&seq) else {
            return;
        };
        let slot = pending.slot;
        let waiting = self
            .conns
            .get(slot as usize)
            .is_some_and(|c| c.cid == pending.cid && c.auth_pending && c.is_open());
        if !waiting {
            return;
        }
        let result = self.decode_callout_reply(&pending, payload);
        let conn = &mut self.conns[slot as usize];
        conn.auth_pending = false;
        let flags = conn.pending_flags;
        match result {
            Ok(identity) => {
                conn.admitted_by_callout = true;
                self.accept_connect(slot, flags, identity);
                self.process_rbuf(slot);
                self.rearm_recv_if_drained(slot);
            }
            Err(failure) => self.refuse_connect(slot, failure),
        }
    }

    fn decode_callout_reply(
        &self,
        pending: &PendingCallout,
        payload: &[u8],
    ) -> Result<ClientIdentity, AuthFailure> {
        match pending.route.mode {
            Mode::Config => self
                .decode_config_reply(pending, payload)
                .map_err(AuthFailure::Callout),
            Mode::Operator => self.decode_operator_reply(pending, payload),
        }
    }

    fn decode_config_reply(
        &self,
        pending: &PendingCallout,
        payload: &[u8],
    ) -> Result<ClientIdentity, CalloutError> {
        let snapshot = self.snapshot.clone();
        // A reload that removed the callout leaves nobody to trust.
        let config = snapshot.auth.callout().ok_or(CalloutError::Withdrawn)?;
        let keys = &self.shared.keys;
        let expected = Expected {
            user_nkey: &pending.user_nkey,
            server_id: keys.id(),
            issuer: &config.issuer,
            operator: None,
            sealed: config.xkey.as_deref().map(|service| (keys.xkey(), service)),
        };
        let now = SystemTime::now();
        let now_unix = crate::auth::operator::unix_seconds(now);
        let (user, claims) = callout::decode_response(payload, &expected, now_unix)?;
        let peer = self.conns[pending.slot as usize].peer.ip();
        callout::identity(
            config,
            |name| snapshot.auth.account_id(name),
            &user,
            &claims,
            Some(peer),
            now,
        )
    }

    /// Operator mode: the response is checked against the callout account as the current
    /// snapshot has it (its signing keys may have changed), opened with the key the request
    /// was sealed to.
    fn decode_operator_reply(
        &self,
        pending: &PendingCallout,
        payload: &[u8],
    ) -> Result<ClientIdentity, AuthFailure> {
        let snapshot = self.snapshot.clone();
        let route = &pending.route;
        let withdrawn = AuthFailure::Callout(CalloutError::Withdrawn);
        let operator = snapshot.auth.operator().ok_or(withdrawn)?;
        let account = operator.account(&route.issuer).ok_or(withdrawn)?;
        let keys = &self.shared.keys;
        let expected = Expected {
            user_nkey: &pending.user_nkey,
            server_id: keys.id(),
            issuer: &route.issuer,
            operator: Some(&account.claims.signing_keys),
            sealed: route.xkey.as_deref().map(|service| (keys.xkey(), service)),
        };
        let now = SystemTime::now();
        let now_unix = crate::auth::operator::unix_seconds(now);
        let (user, claims) =
            callout::decode_response(payload, &expected, now_unix).map_err(AuthFailure::Callout)?;
        let peer = self.conns[pending.slot as usize].peer.ip();
        operator.callout_identity(&route.issuer, user, &claims, Some(peer), now)
    }

    /// Refuses the clients whose callout outlived the auth timeout, and forgets callouts whose
    /// client is gone. Runs on the tick, before the auth timeout check (which would say
    /// `Authentication Timeout`; a callout timeout is an `Authorization Violation`).
    pub(super) fn expire_callouts(&mut self) {
        if self.callouts.pending.is_empty() {
            return;
        }
        let now = self.now;
        let conns = &self.conns;
        let mut expired = Vec::new();
        self.callouts.pending.retain(|_, p| {
            let waiting = conns
                .get(p.slot as usize)
                .is_some_and(|c| c.cid == p.cid && c.auth_pending && c.is_open());
            if waiting && now >= p.deadline {
                expired.push(p.slot);
                return false;
            }
            waiting
        });
        for slot in expired {
            self.conns[slot as usize].auth_pending = false;
            self.refuse_connect(slot, AuthFailure::Callout(CalloutError::Timeout));
        }
    }

    /// `identity` with `$SYS.REQ.USER.AUTH` denied when it is bound to a callout account
    /// (nats-server gives every client there, the auth users included, that deny). In operator
    /// mode that is every account with an `authorization` claim, also one a user was placed
    /// into by another account's service (nats-server leaves that one out; a forged request
    /// there would reach that account's service).
    pub(super) fn with_callout_deny(&self, mut identity: ClientIdentity) -> ClientIdentity {
        let auth = &self.snapshot.auth;
        let in_callout_account = match auth.callout() {
            Some(config) => identity.account == config.account,
            None => auth.is_callout_account(identity.account),
        };
        if !in_callout_account {
            return identity;
        }
        if let Ok(perms) = callout::callout_deny(identity.permissions.as_deref()) {
            identity.permissions = Some(std::sync::Arc::new(perms));
        }
        identity
    }
}

/// nats-server `getRawAuthUser` (config mode): the nkey, else the user name.
fn raw_auth_user(connect: &ConnectOptions) -> &str {
    connect
        .nkey
        .as_deref()
        .filter(|k| !k.is_empty())
        .or(connect.user.as_deref())
        .unwrap_or_default()
}

/// `<prefix><shard>.<seq>` → (shard, seq).
fn parse_reply(subject: &[u8]) -> Option<(u16, u64)> {
    let rest = subject.strip_prefix(CALLOUT_INBOX_PREFIX)?;
    let text = std::str::from_utf8(rest).ok()?;
    let (shard, seq) = text.split_once('.')?;
    Some((shard.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_parse_back() {
        assert_eq!(parse_reply(b"$SYS._INBOX.callout.3.17"), Some((3, 17)));
        assert_eq!(parse_reply(b"$SYS._INBOX.callout.3"), None);
        assert_eq!(parse_reply(b"$SYS._INBOX.callout.x.1"), None);
        assert_eq!(parse_reply(b"$SYS._INBOX.callout.70000.1"), None);
        assert_eq!(parse_reply(b"$SYS._INBOX.other.1.1"), None);
    }
}
