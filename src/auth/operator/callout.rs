//! The auth callout in operator mode (spec callout.md §2-§4): an account JWT whose
//! `authorization` claim has `auth_users` sends every CONNECT of its users, except those auth
//! users, to an auth service running in that account; the service's user JWT is checked here
//! against the account it places the user into.
//!
//! Cold: [`AuthConfig::account_callout`] once per CONNECT in operator mode,
//! [`OperatorMode::callout_identity`] once per callout reply. The claim is read from the
//! account as the current snapshot has it, so a resolver update that adds or removes it applies
//! to the next CONNECT.
//! Invariants (nats-server `processClientOrLeafCallout`, operator mode): the user goes into the
//! account its JWT's `issuer_account` names, else the account of its issuer key; that account
//! is the callout account or one of its `allowed_accounts` (`*` alone: any); the JWT is signed
//! by that account's identity or one of its signing keys (a scoped key's template replaces the
//! JWT's permissions, as for any JWT user); then the user meets every check of a JWT user but
//! the nonce signature (the server made its key) and gets that account's limits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use nkeys::XKey;

use crate::auth::callout::CalloutError;
use crate::auth::jwt::claims::{ANY_ACCOUNT, ExternalAuthorization};
use crate::auth::jwt::{self, ClaimsData, UserClaims};
use crate::auth::{AuthConfig, AuthFailure, ClientIdentity};

use super::{JwtAccount, OperatorMode, admit, check_standing, unix_seconds, user_of_account};

/// The callout of one account, as a CONNECT in it needs it.
#[derive(Clone, Debug)]
pub struct AccountCallout {
    /// The account's public key: the request's `sub`, and the response's signer (or one of the
    /// account's signing keys).
    pub key: String,
    /// The account's id: requests are published there, replies count only from there.
    pub id: u32,
    /// The service's curve key, when requests are sealed.
    pub xkey: Option<Arc<XKey>>,
}

impl AuthConfig {
    /// The callout of account `id` for a user `user_key` (a user JWT's subject) that is not one
    /// of its auth users; `None` when the account has none (or is not an operator-mode account).
    pub fn account_callout(&self, id: u32, user_key: &str) -> Option<AccountCallout> {
        let account = self.callout_account(id)?;
        let claim = &account.claims.authorization;
        if claim.auth_users.iter().any(|u| u == user_key) {
            return None;
        }
        Some(AccountCallout {
            key: account.key.clone(),
            id,
            // Validated with the account: a bad key makes the account invalid, so its users
            // never get this far.
            xkey: service_xkey(claim).map(Arc::new),
        })
    }

    /// Whether account `id` runs an auth callout (operator mode): its clients, the auth users
    /// included, may not publish requests (nats-server `mergeDenyPermissions`).
    pub fn is_callout_account(&self, id: u32) -> bool {
        self.callout_account(id).is_some()
    }

    fn callout_account(&self, id: u32) -> Option<&Arc<JwtAccount>> {
        let operator = self.operator.as_ref()?;
        let name = &self.accounts.get(usize::try_from(id).ok()?)?.name;
        operator
            .account(name)
            .filter(|a| a.claims.authorization.is_enabled())
    }
}

impl OperatorMode {
    /// The identity of a user the service of account `callout_key` admitted with a user JWT
    /// (`user`, `claims`; its `sub` already checked against the request). `Err` carries why it
    /// is refused, for the debug log. The `$SYS.REQ.USER.AUTH` deny of a callout account's
    /// clients is added where every identity is applied (`AuthConfig::is_callout_account`).
    pub fn callout_identity(
        &self,
        callout_key: &str,
        user: ClaimsData,
        claims: &UserClaims,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<ClientIdentity, AuthFailure> {
        let refused = |e| Err(AuthFailure::Callout(e));
        let Some(callout) = self
            .account(callout_key)
            .filter(|a| a.claims.authorization.is_enabled())
        else {
            // An update removed the callout while the client waited: nobody to trust.
            return refused(CalloutError::Withdrawn);
        };
        let target_key = if claims.issuer_account.is_empty() {
            user.iss.as_str()
        } else {
            claims.issuer_account.as_str()
        };
        if target_key != callout_key && !is_allowed(&callout.claims.authorization, target_key) {
            return refused(CalloutError::AccountNotAllowed);
        }
        let Some(target) = self.account(target_key) else {
            return refused(CalloutError::UnknownAccount);
        };
        let name = user.name.clone();
        let verified = user_of_account(user, claims, target)?;
        let now_unix = unix_seconds(now);
        check_standing(&verified, now_unix)?;
        let mut identity = admit(&verified, peer, now_unix)?;
        // A `name` in the user JWT replaces the displayed user (nats-server).
        if !name.is_empty() {
            identity.user = name;
        }
        Ok(identity)
    }
}

/// nats-io/jwt `ExternalAuthorization.Validate`: an account whose claim fails it is invalid
/// (its users are refused, as nats-server refuses to load it).
pub(crate) fn validate(claim: &ExternalAuthorization) -> Result<(), String> {
    if !claim.allowed_accounts.is_empty() && claim.auth_users.is_empty() {
        return Err("External authorization cannot have accounts without users specified".into());
    }
    if let Some(user) = claim
        .auth_users
        .iter()
        .find(|u| !jwt::is_public_key(u, 'U'))
    {
        return Err(format!("AuthUser {user:?} is not a valid user public key"));
    }
    for account in &claim.allowed_accounts {
        if account == ANY_ACCOUNT {
            if claim.allowed_accounts.len() > 1 {
                return Err(format!(
                    "AllowedAccounts can only be a list of accounts or {ANY_ACCOUNT:?}"
                ));
            }
        } else if !jwt::is_public_key(account, 'A') {
            return Err(format!(
                "Account {account:?} is not a valid account public key"
            ));
        }
    }
    if !claim.xkey.is_empty() && service_xkey(claim).is_none() {
        return Err(format!("XKey {:?} is not a valid public xkey", claim.xkey));
    }
    Ok(())
}

/// nats-server `isAllowedAcount`: `*` as the only entry allows every account.
fn is_allowed(claim: &ExternalAuthorization, key: &str) -> bool {
    match claim.allowed_accounts.as_slice() {
        [only] if only == ANY_ACCOUNT => true,
        list => list.iter().any(|a| a == key),
    }
}

fn service_xkey(claim: &ExternalAuthorization) -> Option<XKey> {
    let key = claim.xkey.as_str();
    if !key.starts_with('X') {
        return None;
    }
    XKey::from_public_key(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(users: &[&str], allowed: &[&str], xkey: &str) -> ExternalAuthorization {
        ExternalAuthorization {
            auth_users: users.iter().map(|s| s.to_string()).collect(),
            allowed_accounts: allowed.iter().map(|s| s.to_string()).collect(),
            xkey: xkey.to_string(),
        }
    }

    #[test]
    fn the_claim_is_validated_as_nats_io_jwt_does() {
        let user = nkeys::KeyPair::new_user().public_key();
        let account = nkeys::KeyPair::new_account().public_key();
        let xkey = XKey::new().public_key();
        assert_eq!(validate(&claim(&[], &[], "")), Ok(()));
        assert_eq!(validate(&claim(&[&user], &[&account], &xkey)), Ok(()));
        assert_eq!(validate(&claim(&[&user], &[ANY_ACCOUNT], "")), Ok(()));
        assert!(validate(&claim(&[], &[&account], "")).is_err());
        assert!(validate(&claim(&[&account], &[], "")).is_err());
        assert!(validate(&claim(&[&user], &[&user], "")).is_err());
        assert!(validate(&claim(&[&user], &[ANY_ACCOUNT, &account], "")).is_err());
        assert!(validate(&claim(&[&user], &[], &account)).is_err());
        assert!(validate(&claim(&[&user], &[], "XNOTAKEY")).is_err());
    }

    #[test]
    fn allowed_accounts_name_accounts_or_any() {
        let (a, b) = ("AAA", "BBB");
        assert!(is_allowed(&claim(&["U"], &[a], ""), a));
        assert!(!is_allowed(&claim(&["U"], &[a], ""), b));
        assert!(is_allowed(&claim(&["U"], &[ANY_ACCOUNT], ""), b));
        assert!(!is_allowed(&claim(&["U"], &[], ""), a));
    }
}
