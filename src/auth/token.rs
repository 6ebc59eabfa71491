//! Token authentication (`authorization { token: .. }` / `--auth`).
//!
//! Cold: once per CONNECT. Invariant: only `auth_token` is compared; extra `user`/`pass` fields
//! are ignored, as nats-server 2.9.10 ignores them. A bcrypt token becomes a slow job.

use std::sync::Arc;

use crate::auth::user_pass::{Secret, compare};
use crate::auth::{AuthFailure, ClientIdentity, GLOBAL_ACCOUNT_ID, Verdict};
use crate::protocol::ConnectOptions;

/// Checks the CONNECT `auth_token` against the configured token.
pub(crate) fn verify(token: &Arc<Secret>, connect: &ConnectOptions) -> Verdict {
    let Some(offered) = connect.auth_token.as_deref() else {
        return Verdict::Done(Err(AuthFailure::MissingCredentials));
    };
    let identity = ClientIdentity {
        account: GLOBAL_ACCOUNT_ID,
        user: String::new(),
        permissions: None,
        deadline: None,
        account_deadline: None,
        limits: Default::default(),
        account_conn: None,
        account_subs: None,
    };
    compare(token, Some(offered), identity, AuthFailure::BadToken)
}
