//! Getting a connection from accept to an authenticated client: INFO (with `auth_required`,
//! `nonce`, `tls_required`), the TLS handshake inside the reactor, the CONNECT check, slow
//! (bcrypt) checks on the blocking pool, and re-checks after a reload.
//!
//! Cold: runs per connection and per CONNECT. The result is a `ClientIdentity` applied to the
//! connection (account, compiled permissions, deadline); the hot path only reads that.
//! Invariants: a connection whose CONNECT is being checked runs no further ops until the
//! verdict arrives, and the server stops reading it meanwhile (TCP pushes back on the client);
//! a check whose connection has gone is dropped, not run; `authorization.timeout` bounds the
//! whole admission, a check still queued or running included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use base64::Engine;

use crate::auth::operator::AccountSubs;
use crate::auth::{AuthFailure, ClientIdentity, SlowCheck, Verdict};
use crate::conn::{CloseReason, ConnFlags};
use crate::perms::{PermCache, ResponseTracker};
use crate::protocol::encode;
use crate::shard::{Shard, mark_dirty};
use crate::tls::TlsError;

/// The debug line (after `<peer> - cid:<cid> - `) for a slow check a worker took after its
/// client had gone, and so did not run.
pub const CHECK_DROPPED: &str = "Authorization check dropped: the client has gone";

/// The verdict of a slow check, sent back from the blocking pool.
pub struct AuthResult {
    pub slot: u32,
    pub cid: u64,
    pub result: Result<ClientIdentity, AuthFailure>,
    /// A re-check after a reload (the connection is live), not a CONNECT.
    pub reauth: bool,
}

/// nats-server nonce: 11 random bytes, base64url without padding (15 characters).
const NONCE_BYTES: usize = 11;

impl Shard {
    /// Sets a new connection up for authentication and queues its INFO.
    pub(super) fn admit(&mut self, slot: u32) {
        let snapshot = self.snapshot.clone();
        let auth = &snapshot.auth;
        let conn = &mut self.conns[slot as usize];
        if auth.nonce_required() {
            let bytes: [u8; NONCE_BYTES] = rand::random();
            conn.nonce = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        }
        let info = self
            .shared
            .info_json(&snapshot, conn.cid, &conn.peer, conn.nonce.as_deref());
        if let Some(tls) = &snapshot.tls {
            conn.tls = Some(Box::new(tls.new_session()));
            conn.tls_deadline = Some(self.now + tls.timeout);
            conn.out.use_sealed();
            // 2.9.x sends INFO in plaintext, then the client starts the handshake.
            encode::info(conn.out.sealed_mut(), &info);
        } else {
            encode::info(conn.out.pending_mut(), &info);
        }
        let default = if auth.connect_required() {
            None
        } else {
            auth.default_identity(SystemTime::now())
        };
        match default {
            Some(identity) => self.apply_identity(slot, identity),
            // Auth is required, or the no_auth_user may not connect now: only a CONNECT that
            // logs in gets further.
            None => {
                conn.parser.set_connect_required(true);
                // With TLS the timer starts once the handshake is done (nats-server).
                if conn.tls.is_none() {
                    conn.auth_deadline = Some(self.now + auth.timeout());
                }
            }
        }
        let conn = &mut self.conns[slot as usize];
        mark_dirty(&mut self.dirty, conn, slot);
    }

    /// Ciphertext arrived on a TLS connection: decrypt into the read buffer, queue handshake
    /// records, then run the plaintext ops.
    pub(super) fn on_tls_data(&mut self, slot: u32, data: &[u8]) {
        let conn = &mut self.conns[slot as usize];
        let Some(tls) = conn.tls.as_mut() else { return };
        let was_handshaking = tls.is_handshaking();
        let result = tls.on_receive(data, &mut conn.rbuf, conn.out.sealed_mut());
        let handshake_done = was_handshaking && !tls.is_handshaking();
        let peer_closed = tls.is_peer_closed();
        let identity = if handshake_done {
            tls.peer_identity()
        } else {
            None
        };
        mark_dirty(&mut self.dirty, conn, slot);
        match result {
            Ok(()) => {}
            Err(TlsError::NotTls) => {
                // nats-server closes a plaintext client of a TLS server without a word.
                tracing::debug!(
                    "{} - cid:{} - TLS handshake error: not TLS",
                    conn.peer,
                    conn.cid
                );
                self.close(slot, CloseReason::TlsHandshakeError);
                return;
            }
            Err(err) => {
                tracing::debug!("{} - cid:{} - TLS error: {err}", conn.peer, conn.cid);
                // Any alert rustls produced is in the sealed output: send it, then close.
                self.drain_then_close(slot, CloseReason::TlsHandshakeError);
                return;
            }
        }
        if handshake_done {
            conn.tls_deadline = None;
            conn.cert = identity;
            if self.snapshot.auth.connect_required() && !conn.connected {
                conn.auth_deadline = Some(self.now + self.snapshot.auth.timeout());
            }
            tracing::debug!("{} - cid:{} - TLS handshake complete", conn.peer, conn.cid);
        }
        self.process_rbuf(slot);
        if peer_closed {
            self.close(slot, CloseReason::ClientClosed);
        }
    }

    /// Checks the credentials of a CONNECT whose options are `flags`.
    pub(super) fn authenticate(
        &mut self,
        slot: u32,
        connect: crate::protocol::ConnectOptions,
        flags: ConnFlags,
    ) {
        let snapshot = self.snapshot.clone();
        let conn = &mut self.conns[slot as usize];
        let verdict = snapshot.auth.verify_from(
            &connect,
            conn.nonce.as_deref(),
            conn.cert.as_ref(),
            Some(conn.peer.ip()),
            SystemTime::now(),
        );
        if let Some(route) = Self::callout_route(&snapshot.auth, &connect, &verdict) {
            // The callout's slow path keeps a copy; the request is built from the original.
            conn.credentials = Some(Box::new(connect.clone()));
            self.start_callout(slot, &connect, flags, route);
            return;
        }
        // Kept (secrets redacted from Debug) to re-check the connection after a reload, as
        // nats-server keeps a client's CONNECT options. Moved, not copied: a JWT is ~1 KB.
        conn.credentials = Some(Box::new(connect));
        match verdict {
            Verdict::Done(Ok(identity)) => self.accept_connect(slot, flags, identity),
            Verdict::Done(Err(failure)) => self.refuse_connect(slot, failure),
            Verdict::Slow(mut check) => {
                if let Some(identity) = check.verified_before(&self.shared.verified, self.now) {
                    self.accept_connect(slot, flags, identity);
                    return;
                }
                let conn = &mut self.conns[slot as usize];
                conn.auth_pending = true;
                conn.pending_flags = flags;
                if !self.submit_slow_check(slot, check, false) {
                    // The pool is saturated: fail this CONNECT rather than queue without bound.
                    let conn = &mut self.conns[slot as usize];
                    conn.auth_pending = false;
                    conn.drop_check();
                    self.refuse_connect(slot, AuthFailure::MissingCredentials);
                    return;
                }
                // Nothing more is read from this client until the verdict.
                self.pause_recv(slot);
            }
        }
    }

    /// Runs a bcrypt check on the blocking pool; its verdict comes back through
    /// `drain_auth_results`. Returns false if the pool refused the job. A check whose
    /// connection has gone by the time a worker takes it is dropped, not run.
    fn submit_slow_check(&mut self, slot: u32, check: SlowCheck, reauth: bool) -> bool {
        let conn = &mut self.conns[slot as usize];
        let (cid, peer) = (conn.cid, conn.peer);
        let wanted = Arc::new(AtomicBool::new(true));
        conn.drop_check();
        conn.check_wanted = Some(Arc::clone(&wanted));
        let (sender, waker) = (self.auth_results_tx.clone(), self.waker.clone());
        let verified = Arc::clone(&self.shared.verified);
        let job = Box::new(move || {
            if !wanted.load(Ordering::Relaxed) {
                tracing::debug!("{peer} - cid:{cid} - {CHECK_DROPPED}");
                return;
            }
            let result = check.run(&verified, Instant::now);
            let _ = sender.send(AuthResult {
                slot,
                cid,
                result,
                reauth,
            });
            waker.wake_always();
        });
        self.shared.pool.submit(job).is_ok()
    }

    /// Applies verdicts that came back from the blocking pool.
    pub(super) fn drain_auth_results(&mut self) {
        while let Ok(AuthResult {
            slot,
            cid,
            result,
            reauth,
        }) = self.auth_results_rx.try_recv()
        {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            if reauth {
                if conn.cid == cid && conn.is_open() {
                    conn.check_wanted = None;
                    self.reauthorized(slot, result);
                }
                continue;
            }
            if conn.cid != cid || !conn.auth_pending || !conn.is_open() {
                continue;
            }
            conn.auth_pending = false;
            conn.check_wanted = None;
            let flags = conn.pending_flags;
            match result {
                Ok(identity) => {
                    self.accept_connect(slot, flags, identity);
                    self.process_rbuf(slot);
                    self.rearm_recv_if_drained(slot);
                }
                Err(failure) => self.refuse_connect(slot, failure),
            }
        }
    }

    pub(super) fn accept_connect(&mut self, slot: u32, flags: ConnFlags, identity: ClientIdentity) {
        let identity = self.with_callout_deny(identity);
        let conn = &mut self.conns[slot as usize];
        conn.flags = flags;
        conn.parser.set_headers(flags.headers);
        conn.parser.set_connect_required(false);
        conn.connected = true;
        conn.auth_deadline = None;
        if !identity.user.is_empty() {
            tracing::debug!(
                "{} - cid:{} - User {} authenticated",
                conn.peer,
                conn.cid,
                crate::logging::quoted(identity.user.as_bytes())
            );
        }
        self.apply_identity(slot, identity);
        self.ok_if_verbose(slot);
        self.sys_connect_event(slot);
    }

    pub(super) fn refuse_connect(&mut self, slot: u32, failure: AuthFailure) {
        let conn = &self.conns[slot as usize];
        // The reason goes to the debug log only; the client learns nothing more.
        tracing::debug!(
            "{} - cid:{} - authentication failed: {failure}",
            conn.peer,
            conn.cid
        );
        crate::logging::client::auth_error(conn);
        self.sys_auth_error_event(slot);
        if failure == AuthFailure::AccountConnectionsExceeded {
            // nats-server `maxAccountConnExceeded`.
            self.close_with_error(
                slot,
                "maximum account active connections exceeded",
                CloseReason::MaxConnectionsExceeded,
            );
            return;
        }
        self.close_with_error(
            slot,
            "Authorization Violation",
            CloseReason::AuthenticationViolation,
        );
    }

    /// Gives the connection its account, permissions and deadline.
    fn apply_identity(&mut self, slot: u32, identity: ClientIdentity) {
        self.ensure_account(identity.account);
        let now = self.now;
        let conn = &mut self.conns[slot as usize];
        conn.account = identity.account;
        conn.user = identity.user;
        conn.perm_cache = identity
            .permissions
            .as_ref()
            .map(|_| Box::new(PermCache::new()));
        conn.responses = identity
            .permissions
            .as_ref()
            .and_then(|p| p.allow_responses())
            .map(|_| Box::new(ResponseTracker::new()));
        conn.perms = identity.permissions;
        conn.expires = identity.deadline.map(|at| instant_of(at, now));
        conn.account_expires = identity.account_deadline.map(|at| instant_of(at, now));
        conn.max_subs = identity.limits.max_subs;
        conn.account_conn = identity.account_conn;
        // A re-checked live connection keeps its place in the same count, or moves its
        // subscriptions onto the new one.
        conn.account_subs = match (identity.account_subs, conn.account_subs.take()) {
            (Some(limit), Some(held)) if held.is_for(&limit) => Some(held),
            (Some(limit), _) => Some(AccountSubs::new(limit, conn.subs.len())),
            (None, _) => None,
        };
        self.apply_max_payload(slot, identity.limits.max_payload);
    }

    /// A JWT's payload limit: lowers the parser's limit and tells the client with a new INFO
    /// (nats-server sends one with the lowered `max_payload` and no nonce).
    fn apply_max_payload(&mut self, slot: u32, limit: Option<usize>) {
        // Without a JWT limit the parser keeps the server's (a reload updates that itself).
        let Some(limit) = limit else { return };
        let effective = limit.min(self.limits.max_payload);
        let conn = &mut self.conns[slot as usize];
        if conn.parser.limits().max_payload == effective {
            return;
        }
        conn.parser.set_max_payload(effective);
        let snapshot = self.snapshot.clone();
        let info = self.shared.info_json_with_max_payload(
            &snapshot,
            conn.cid,
            &conn.peer,
            None,
            Some(effective),
        );
        encode::info(conn.out.pending_mut(), &info);
        mark_dirty(&mut self.dirty, conn, slot);
    }

    /// After a reload: closes connections whose user is gone and gives the others their new
    /// permissions (nats-server `reloadAuthorization`).
    pub(super) fn reauthorize_all(&mut self) {
        let snapshot = self.snapshot.clone();
        let verified = Arc::clone(&self.shared.verified);
        let slots: Vec<u32> = self
            .conns
            .iter()
            // A user the auth callout admitted has no local credentials to re-check.
            .filter(|(_, c)| c.is_open() && !c.auth_pending && !c.admitted_by_callout)
            .map(|(slot, _)| slot as u32)
            .collect();
        for slot in slots {
            let conn = &self.conns[slot as usize];
            let Some(credentials) = conn.credentials.as_deref() else {
                // Still to send its CONNECT (within the auth timeout): that CONNECT meets the new
                // configuration; nothing to re-check yet.
                if conn.parser.is_connect_required() {
                    continue;
                }
                // Admitted without a CONNECT: fine while no CONNECT is required.
                if snapshot.auth.connect_required() {
                    self.close(slot, CloseReason::AuthenticationViolation);
                }
                continue;
            };
            let verdict = snapshot.auth.verify_from(
                credentials,
                conn.nonce.as_deref(),
                conn.cert.as_ref(),
                Some(conn.peer.ip()),
                SystemTime::now(),
            );
            match verdict {
                Verdict::Done(result) => self.reauthorized(slot, result),
                Verdict::Slow(mut check) => {
                    if let Some(identity) = check.verified_before(&verified, self.now) {
                        self.reauthorized(slot, Ok(identity));
                        continue;
                    }
                    if !self.submit_slow_check(slot, check, true) {
                        self.close(slot, CloseReason::AuthenticationViolation);
                    }
                }
            }
        }
    }

    /// Applies the outcome of re-checking a live connection's credentials after a reload:
    /// new permissions, or a silent close (nats-server closes these as "Client Closed").
    fn reauthorized(&mut self, slot: u32, result: Result<ClientIdentity, AuthFailure>) {
        let conn = &self.conns[slot as usize];
        match result {
            Ok(identity) if identity.account == conn.account => {
                self.apply_identity(slot, identity);
                self.drop_denied_subs(slot);
            }
            other => {
                let failure = other.err();
                tracing::debug!(
                    "{} - cid:{} - no longer authorized after reload: {}",
                    conn.peer,
                    conn.cid,
                    failure.map_or("account changed".to_string(), |f| f.to_string())
                );
                // nats-server (`reloadAuthorization`): a user that is gone or moved to another
                // account is closed without a word; credentials that no longer verify get
                // `Authorization Violation`.
                match failure {
                    None | Some(AuthFailure::UnknownUser | AuthFailure::UnknownNkey) => {
                        self.close(slot, CloseReason::AuthenticationViolation)
                    }
                    // nats-server closes a user revoked by an account update so.
                    Some(AuthFailure::Revoked) => self.close_with_error(
                        slot,
                        "User Authentication Revoked",
                        CloseReason::AuthenticationViolation,
                    ),
                    // An account update lowered `limits.conn` below the live connections
                    // (nats-server `updateAccountClaimsWithRefresh`).
                    Some(AuthFailure::AccountConnectionsExceeded) => self.close_with_error(
                        slot,
                        "maximum account active connections exceeded",
                        CloseReason::MaxConnectionsExceeded,
                    ),
                    // The account was deleted from the resolver (nats-server `removeCb`
                    // expires it).
                    Some(AuthFailure::UnknownAccount) => self.close_with_error(
                        slot,
                        "Account Authentication Expired",
                        CloseReason::AuthenticationViolation,
                    ),
                    Some(_) => self.close_with_error(
                        slot,
                        "Authorization Violation",
                        CloseReason::AuthenticationViolation,
                    ),
                }
            }
        }
    }

    /// Removes the subscriptions new permissions no longer allow, telling the client which
    /// (nats-server `processSubsOnConfigReload`).
    fn drop_denied_subs(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let (Some(perms), Some(cache)) = (&conn.perms, conn.perm_cache.as_mut()) else {
            return;
        };
        let mut denied = Vec::new();
        for &key in conn.subs.values() {
            let sub = &mut self.subs[key.0 as usize];
            if cache.can_subscribe(perms, &sub.filter, sub.queue.as_deref()) {
                sub.filter_deliveries = perms.sub_needs_delivery_filter(&sub.filter);
            } else {
                denied.push(key);
            }
        }
        for key in denied {
            let sub = &self.subs[key.0 as usize];
            let text = format!(
                "Permissions Violation for Subscription to {} (sid {})",
                crate::protocol::encode::go_quote(&sub.filter),
                crate::protocol::encode::go_quote(&sub.sid)
            );
            self.remove_sub(key);
            self.send_err(slot, &text);
        }
    }
}

/// The monotonic instant of a wall-clock time (now if it is already past).
fn instant_of(at: SystemTime, now: Instant) -> Instant {
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}
