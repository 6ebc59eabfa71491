//! `ringnats jwt <operator|account|user|activation|creds|config>`: makes what operator mode
//! needs without `nsc` (accounts with limits, signing keys, exports and imports; users;
//! activation tokens for private exports), so someone can set it up by hand and the tests build
//! their fixtures the same way.
//!
//! Cold: runs once and exits. Invariants: the JWTs are written by `auth::jwt::encode` (what
//! nats-io/jwt v2 writes, accepted by nats-server 2.9.10); seeds are only ever read from files
//! and never printed except inside a `.creds` file, which is what that file is for.

use std::path::Path;

use nkeys::KeyPair;

use crate::auth::jwt::claims::{
    Export, ExportType, ExternalAuthorization, Import, NO_LIMIT, Permission, ResponsePermission,
};
use crate::auth::jwt::{
    self, AccountClaims, AccountLimits, ActivationClaims, ClaimsData, OperatorClaims,
    PermissionClaims, SigningKey, UserClaims, UserPermissionLimits, creds, encode,
};
use crate::cli::{
    JwtAccountArgs, JwtActivationArgs, JwtCalloutArgs, JwtCommand, JwtCommon, JwtConfigArgs,
    JwtCredsArgs, JwtOperatorArgs, JwtUserArgs,
};

/// Runs one `ringnats jwt` command, printing its output.
pub fn run(command: &JwtCommand) -> Result<(), String> {
    let out = match command {
        JwtCommand::Operator(args) => operator(args)?,
        JwtCommand::Account(args) => account(args)?,
        JwtCommand::User(args) => user(args)?,
        JwtCommand::Activation(args) => activation(args)?,
        JwtCommand::Creds(args) => creds_file(args)?,
        JwtCommand::Config(args) => config_block(args)?,
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// `ringnats jwt operator`: a self-signed operator JWT.
pub fn operator(args: &JwtOperatorArgs) -> Result<String, String> {
    let signer = read_signer(&args.common.signer)?;
    check_keys(&args.signing_keys, 'O', "--signing-key")?;
    if let Some(sys) = &args.system_account {
        check_keys(std::slice::from_ref(sys), 'A', "--system-account")?;
    }
    let data = claims_data(&args.common, signer.public_key());
    let nats = OperatorClaims {
        signing_keys: args.signing_keys.clone(),
        system_account: args.system_account.clone().unwrap_or_default(),
        ..OperatorClaims::default()
    };
    encode::operator(data, nats, &signer).map_err(|e| e.to_string())
}

/// `ringnats jwt account`.
pub fn account(args: &JwtAccountArgs) -> Result<String, String> {
    let signer = read_signer(&args.common.signer)?;
    if !jwt::is_public_key(&signer.public_key(), 'O') {
        return Err("--signer must be an operator seed (SO…)".into());
    }
    check_keys(std::slice::from_ref(&args.subject), 'A', "--subject")?;
    check_keys(&args.signing_keys, 'A', "--signing-key")?;
    let now = encode::now_unix();
    let mut revocations = std::collections::BTreeMap::new();
    for key in &args.revoke {
        if key != "*" {
            check_keys(std::slice::from_ref(key), 'U', "--revoke")?;
        }
        revocations.insert(key.clone(), now);
    }
    let nats = AccountClaims {
        limits: AccountLimits {
            conn: args.conn,
            subs: args.subs,
            payload: args.payload,
            data: args.data,
            wildcards: !args.no_wildcards,
            disallow_bearer: args.disallow_bearer,
            ..AccountLimits::unlimited()
        },
        signing_keys: args
            .signing_keys
            .iter()
            .cloned()
            .map(SigningKey::Plain)
            .collect(),
        revocations,
        default_permissions: PermissionClaims {
            publish: permission(&args.default_pub_allow, &args.default_pub_deny),
            subscribe: permission(&args.default_sub_allow, &args.default_sub_deny),
            resp: None,
        },
        exports: exports(args)?,
        imports: imports(args)?,
        authorization: callout_claim(&args.callout)?,
        ..AccountClaims::default()
    };
    let data = claims_data(&args.common, args.subject.clone());
    encode::account(data, nats, &signer).map_err(|e| e.to_string())
}

/// The exports of `ringnats jwt account`: public ones first, then private (`token_req`) ones.
fn exports(args: &JwtAccountArgs) -> Result<Vec<Export>, String> {
    let lists = [
        (&args.export_streams, ExportType::Stream, false),
        (&args.export_services, ExportType::Service, false),
        (&args.export_private_streams, ExportType::Stream, true),
        (&args.export_private_services, ExportType::Service, true),
    ];
    let mut out = Vec::new();
    for (subjects, kind, token_req) in lists {
        for subject in subjects {
            check_subject(subject, "export")?;
            out.push(Export {
                name: subject.clone(),
                subject: subject.clone(),
                kind: Some(kind),
                token_req,
                ..Export::default()
            });
        }
    }
    Ok(out)
}

/// The imports of `ringnats jwt account`: `ACCOUNT:SUBJECT` of public exports, then one per
/// activation file (its issuer, subject and kind make the import; the token rides along).
fn imports(args: &JwtAccountArgs) -> Result<Vec<Import>, String> {
    let mut out = Vec::new();
    for (list, kind, flag) in [
        (&args.import_streams, ExportType::Stream, "--import-stream"),
        (
            &args.import_services,
            ExportType::Service,
            "--import-service",
        ),
    ] {
        for spec in list {
            let (account, subject) = spec
                .split_once(':')
                .ok_or_else(|| format!("{flag}: \"{spec}\" is not ACCOUNT:SUBJECT"))?;
            check_keys(&[account.to_string()], 'A', flag)?;
            check_subject(subject, flag)?;
            out.push(Import {
                name: subject.to_string(),
                subject: subject.to_string(),
                account: account.to_string(),
                kind: Some(kind),
                ..Import::default()
            });
        }
    }
    for path in &args.import_activations {
        let token = read_trimmed(path)?;
        let (data, act) =
            jwt::decode_activation(&token).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.sub != args.subject {
            return Err(format!(
                "{}: the activation is for account {}, not --subject",
                path.display(),
                data.sub
            ));
        }
        let exporter = if act.issuer_account.is_empty() {
            data.iss
        } else {
            act.issuer_account
        };
        out.push(Import {
            name: act.subject.clone(),
            subject: act.subject,
            account: exporter,
            token,
            kind: act.import_type,
            ..Import::default()
        });
    }
    Ok(out)
}

/// `ringnats jwt activation`: lets the account `--subject` import a private export of the
/// signer's account.
pub fn activation(args: &JwtActivationArgs) -> Result<String, String> {
    let signer = read_signer(&args.common.signer)?;
    if !jwt::is_public_key(&signer.public_key(), 'A') {
        return Err("--signer must be the exporting account's seed (SA…)".into());
    }
    check_keys(std::slice::from_ref(&args.subject), 'A', "--subject")?;
    if let Some(acc) = &args.issuer_account {
        check_keys(std::slice::from_ref(acc), 'A', "--issuer-account")?;
    }
    let (subject, kind) = match (&args.stream, &args.service) {
        (Some(s), None) => (s, ExportType::Stream),
        (None, Some(s)) => (s, ExportType::Service),
        _ => return Err("give one of --stream and --service".into()),
    };
    check_subject(subject, "--stream/--service")?;
    let nats = ActivationClaims {
        subject: subject.clone(),
        import_type: Some(kind),
        issuer_account: args.issuer_account.clone().unwrap_or_default(),
        ..ActivationClaims::default()
    };
    let mut common = args.common.clone();
    if common.name.is_empty() {
        // nsc names an activation after its subject.
        common.name = subject.clone();
    }
    let data = claims_data(&common, args.subject.clone());
    encode::activation(data, nats, &signer).map_err(|e| e.to_string())
}

/// The account's `authorization` claim, checked as nats-io/jwt validates it.
fn callout_claim(args: &JwtCalloutArgs) -> Result<ExternalAuthorization, String> {
    let claim = ExternalAuthorization {
        auth_users: args.auth_users.clone(),
        allowed_accounts: args.allowed_accounts.clone(),
        xkey: args.xkey.clone().unwrap_or_default(),
    };
    crate::auth::operator::callout::validate(&claim).map_err(|e| format!("auth callout: {e}"))?;
    Ok(claim)
}

/// `ringnats jwt user`.
pub fn user(args: &JwtUserArgs) -> Result<String, String> {
    let signer = read_signer(&args.common.signer)?;
    if !jwt::is_public_key(&signer.public_key(), 'A') {
        return Err("--signer must be an account seed (SA…)".into());
    }
    check_keys(std::slice::from_ref(&args.subject), 'U', "--subject")?;
    if let Some(acc) = &args.issuer_account {
        check_keys(std::slice::from_ref(acc), 'A', "--issuer-account")?;
    }
    let limits = if args.scoped {
        UserPermissionLimits::default()
    } else {
        UserPermissionLimits {
            permissions: PermissionClaims {
                publish: permission(&args.pub_allow, &args.pub_deny),
                subscribe: permission(&args.sub_allow, &args.sub_deny),
                resp: args
                    .allow_responses
                    .map(|max| ResponsePermission { max, ttl: 0 }),
            },
            src: args.src.clone(),
            subs: args.subs,
            data: args.data,
            payload: args.payload,
            bearer_token: args.bearer,
            ..UserPermissionLimits::default()
        }
    };
    let nats = UserClaims {
        limits,
        issuer_account: args.issuer_account.clone().unwrap_or_default(),
        ..UserClaims::default()
    };
    let data = claims_data(&args.common, args.subject.clone());
    encode::user(data, nats, &signer).map_err(|e| e.to_string())
}

/// `ringnats jwt creds`.
pub fn creds_file(args: &JwtCredsArgs) -> Result<String, String> {
    let token = read_trimmed(&args.jwt)?;
    let (data, _) = jwt::decode_user(&token).map_err(|e| format!("{}: {e}", args.jwt.display()))?;
    let pair = read_signer(&args.seed)?;
    let seed = pair.seed().map_err(|e| e.to_string())?;
    if pair.public_key() != data.sub {
        return Err("the seed is not the user JWT's subject".into());
    }
    Ok(creds::format(&token, &seed))
}

/// `ringnats jwt config`: the memory-resolver block (as `nsc generate config --mem-resolver`),
/// or with `--resolver-dir` the full-resolver block (as `--nats-resolver`).
pub fn config_block(args: &JwtConfigArgs) -> Result<String, String> {
    let op = read_trimmed(&args.operator)?;
    let (op_data, op_claims) =
        jwt::decode_operator(&op).map_err(|e| format!("{}: {e}", args.operator.display()))?;
    let mut out = format!("# Operator \"{}\"\noperator: {op}\n", op_data.name);
    if !op_claims.system_account.is_empty() {
        out.push_str(&format!("system_account: {}\n", op_claims.system_account));
    }
    match &args.resolver_dir {
        None => out.push_str("\nresolver: MEMORY\n"),
        Some(dir) => {
            let dir = dir.to_str().ok_or("--resolver-dir: not a UTF-8 path")?;
            if dir.contains('\'') {
                return Err("--resolver-dir: a path with ' cannot be quoted here".into());
            }
            out.push_str(&format!(
                "\n# The full resolver: one <ACCOUNT_PUBLIC_KEY>.jwt per account in dir; updates \
                 are pushed\n# on $SYS.REQ.CLAIMS.UPDATE (nsc push).\nresolver {{\n    type: full\n    \
                 dir: '{dir}'\n    allow_delete: false\n    interval: \"2m\"\n    \
                 timeout: \"1.9s\"\n}}\n"
            ));
        }
    }
    out.push_str("\nresolver_preload: {\n");
    for path in &args.accounts {
        let token = read_trimmed(path)?;
        let (data, _) =
            jwt::decode_account(&token).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push_str(&format!(
            "  # Account \"{}\"\n  {}: {token}\n\n",
            data.name, data.sub
        ));
    }
    out.push_str("}\n");
    Ok(out)
}

fn claims_data(common: &JwtCommon, subject: String) -> ClaimsData {
    let now = encode::now_unix();
    // A negative offset makes an already expired (or long valid) token, for tests.
    let at = |secs: i64| {
        if secs != 0 {
            now.saturating_add(secs)
        } else {
            0
        }
    };
    ClaimsData {
        sub: subject,
        name: common.name.clone(),
        exp: at(common.expires_in),
        nbf: at(common.not_before_in),
        ..ClaimsData::default()
    }
}

fn permission(allow: &[String], deny: &[String]) -> Permission {
    Permission {
        allow: allow.to_vec(),
        deny: deny.to_vec(),
    }
}

fn read_signer(path: &Path) -> Result<KeyPair, String> {
    let text = read_trimmed(path)?;
    // A bare seed, or `ringnats keygen` output (`… public key: U…` / `… private key: SU…`):
    // the last word of the first line holding a seed.
    let seed = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|w| w.starts_with('S'))
        .unwrap_or("");
    KeyPair::from_seed(seed).map_err(|_| format!("{}: not an nkey seed", path.display()))
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn check_subject(subject: &str, flag: &str) -> Result<(), String> {
    if crate::subject::is_valid_filter(subject.as_bytes()) {
        Ok(())
    } else {
        Err(format!("{flag}: \"{subject}\" is not a valid subject"))
    }
}

fn check_keys(keys: &[String], prefix: char, flag: &str) -> Result<(), String> {
    match keys.iter().find(|k| !jwt::is_public_key(k, prefix)) {
        Some(bad) => Err(format!("{flag}: \"{bad}\" is not a public {prefix}… nkey")),
        None => Ok(()),
    }
}

const _: () = assert!(NO_LIMIT == -1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{decode_account, decode_operator, decode_user};

    fn seed_file(dir: &Path, name: &str, pair: &KeyPair) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("{}\n{}\n", pair.seed().unwrap(), pair.public_key()),
        )
        .unwrap();
        path
    }

    fn common(signer: std::path::PathBuf, name: &str) -> JwtCommon {
        JwtCommon {
            signer,
            name: name.into(),
            expires_in: 0,
            not_before_in: 0,
        }
    }

    #[test]
    fn operator_account_user_creds_and_config() {
        let dir = std::env::temp_dir().join(format!("ringnats-jwt-tool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (op, sys, acc, user_key) = (
            KeyPair::new_operator(),
            KeyPair::new_account(),
            KeyPair::new_account(),
            KeyPair::new_user(),
        );
        let op_jwt = operator(&JwtOperatorArgs {
            common: common(seed_file(&dir, "op.nk", &op), "OP"),
            signing_keys: vec![],
            system_account: Some(sys.public_key()),
        })
        .unwrap();
        let (data, claims) = decode_operator(&op_jwt).unwrap();
        assert_eq!(
            (data.iss.as_str(), data.name.as_str()),
            (op.public_key().as_str(), "OP")
        );
        assert_eq!(claims.system_account, sys.public_key());
        let acc_args = JwtAccountArgs {
            common: common(dir.join("op.nk"), "A"),
            subject: acc.public_key(),
            signing_keys: vec![],
            conn: 5,
            subs: -1,
            payload: 100,
            data: -1,
            no_wildcards: false,
            disallow_bearer: false,
            default_pub_allow: vec![],
            default_pub_deny: vec!["no.>".into()],
            default_sub_allow: vec![],
            default_sub_deny: vec![],
            revoke: vec!["*".into()],
            export_streams: vec![],
            export_services: vec![],
            export_private_streams: vec![],
            export_private_services: vec![],
            import_streams: vec![],
            import_services: vec![],
            import_activations: vec![],
            callout: JwtCalloutArgs::default(),
        };
        let acc_jwt = account(&acc_args).unwrap();
        let (_, a) = decode_account(&acc_jwt).unwrap();
        assert_eq!(
            (a.limits.conn, a.limits.payload, a.limits.leaf),
            (5, 100, -1)
        );
        assert!(a.revocations.contains_key("*"));
        let user_jwt = user(&JwtUserArgs {
            common: JwtCommon {
                expires_in: 60,
                ..common(seed_file(&dir, "acc.nk", &acc), "u")
            },
            subject: user_key.public_key(),
            issuer_account: None,
            pub_allow: vec!["a.>".into()],
            pub_deny: vec![],
            sub_allow: vec![],
            sub_deny: vec![],
            allow_responses: Some(2),
            subs: 3,
            payload: -1,
            data: -1,
            bearer: true,
            src: vec!["127.0.0.1/32".into()],
            scoped: false,
        })
        .unwrap();
        let (data, u) = decode_user(&user_jwt).unwrap();
        assert!(data.exp > encode::now_unix());
        assert!(u.limits.bearer_token);
        assert_eq!(u.limits.permissions.resp.unwrap().max, 2);
        std::fs::write(dir.join("u.jwt"), &user_jwt).unwrap();
        let creds_text = creds_file(&JwtCredsArgs {
            jwt: dir.join("u.jwt"),
            seed: seed_file(&dir, "u.nk", &user_key),
        })
        .unwrap();
        let parsed = creds::parse(&creds_text).unwrap();
        assert_eq!(parsed.jwt(), user_jwt);
        // The wrong seed for the JWT is refused.
        assert!(
            creds_file(&JwtCredsArgs {
                jwt: dir.join("u.jwt"),
                seed: dir.join("acc.nk")
            })
            .is_err()
        );
        std::fs::write(dir.join("op.jwt"), &op_jwt).unwrap();
        std::fs::write(dir.join("a.jwt"), &acc_jwt).unwrap();
        for resolver_dir in [None, Some(dir.join("jwt"))] {
            let block = config_block(&JwtConfigArgs {
                operator: dir.join("op.jwt"),
                accounts: vec![dir.join("a.jwt")],
                resolver_dir: resolver_dir.clone(),
            })
            .unwrap();
            let opts = crate::config::load_str(&block, Path::new("x.conf")).unwrap();
            let auth = crate::auth::AuthConfig::from_options(&opts).unwrap();
            let operator = auth.operator().unwrap();
            assert!(operator.account(&acc.public_key()).is_some());
            let full = matches!(
                operator.resolver(),
                crate::auth::resolver::Resolver::Full(_)
            );
            assert_eq!(full, resolver_dir.is_some(), "{block}");
        }
        assert!(
            dir.join("jwt")
                .join(format!("{}.jwt", acc.public_key()))
                .is_file()
        );
        // The auth callout claim, validated as nats-io/jwt does.
        let service = KeyPair::new_user().public_key();
        let xkey = nkeys::XKey::new().public_key();
        let callout = JwtCalloutArgs {
            auth_users: vec![service.clone()],
            allowed_accounts: vec!["*".into()],
            xkey: Some(xkey.clone()),
        };
        let with_callout = account(&JwtAccountArgs {
            callout: callout.clone(),
            ..acc_args.clone()
        })
        .unwrap();
        let (_, a) = decode_account(&with_callout).unwrap();
        assert_eq!(a.authorization.auth_users, vec![service]);
        assert_eq!(a.authorization.allowed_accounts, vec!["*".to_string()]);
        assert_eq!(a.authorization.xkey, xkey);
        for bad in [
            JwtCalloutArgs {
                auth_users: vec![acc.public_key()],
                ..callout.clone()
            },
            JwtCalloutArgs {
                auth_users: vec![],
                ..callout.clone()
            },
            JwtCalloutArgs {
                xkey: Some(acc.public_key()),
                ..callout.clone()
            },
        ] {
            let refused = account(&JwtAccountArgs {
                callout: bad,
                ..acc_args.clone()
            });
            assert!(refused.is_err_and(|e| e.starts_with("auth callout: ")));
        }
        // Wrong signer kinds are refused.
        assert!(
            account(&JwtAccountArgs {
                common: common(dir.join("acc.nk"), "x"),
                ..acc_args
            })
            .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn account_args(signer: std::path::PathBuf, subject: &KeyPair) -> JwtAccountArgs {
        JwtAccountArgs {
            common: common(signer, "A"),
            subject: subject.public_key(),
            signing_keys: vec![],
            conn: -1,
            subs: -1,
            payload: -1,
            data: -1,
            no_wildcards: false,
            disallow_bearer: false,
            default_pub_allow: vec![],
            default_pub_deny: vec![],
            default_sub_allow: vec![],
            default_sub_deny: vec![],
            revoke: vec![],
            export_streams: vec![],
            export_services: vec![],
            export_private_streams: vec![],
            export_private_services: vec![],
            import_streams: vec![],
            import_services: vec![],
            import_activations: vec![],
            callout: JwtCalloutArgs::default(),
        }
    }

    #[test]
    fn exports_imports_and_activations() {
        let dir = std::env::temp_dir().join(format!("ringnats-jwt-imports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (op, exp, imp) = (
            KeyPair::new_operator(),
            KeyPair::new_account(),
            KeyPair::new_account(),
        );
        let op_seed = seed_file(&dir, "op.nk", &op);
        let exp_jwt = account(&JwtAccountArgs {
            export_streams: vec!["pub.>".into()],
            export_private_services: vec!["priv.svc".into()],
            ..account_args(op_seed.clone(), &exp)
        })
        .unwrap();
        let (_, claims) = decode_account(&exp_jwt).unwrap();
        let kinds: Vec<_> = claims
            .exports
            .iter()
            .map(|e| (e.subject.as_str(), e.kind, e.token_req))
            .collect();
        assert_eq!(
            kinds,
            [
                ("pub.>", Some(ExportType::Stream), false),
                ("priv.svc", Some(ExportType::Service), true)
            ]
        );
        let act = activation(&JwtActivationArgs {
            common: JwtCommon {
                expires_in: 60,
                ..common(seed_file(&dir, "exp.nk", &exp), "")
            },
            subject: imp.public_key(),
            issuer_account: None,
            stream: None,
            service: Some("priv.svc".into()),
        })
        .unwrap();
        let (data, act_claims) = jwt::decode_activation(&act).unwrap();
        assert_eq!(
            (data.iss.as_str(), data.sub.as_str(), data.name.as_str()),
            (
                exp.public_key().as_str(),
                imp.public_key().as_str(),
                "priv.svc"
            )
        );
        assert!(data.exp > encode::now_unix());
        assert_eq!(act_claims.import_type, Some(ExportType::Service));
        std::fs::write(dir.join("priv.act"), &act).unwrap();
        let imp_args = JwtAccountArgs {
            import_streams: vec![format!("{}:pub.>", exp.public_key())],
            import_activations: vec![dir.join("priv.act")],
            ..account_args(op_seed.clone(), &imp)
        };
        let imp_jwt = account(&imp_args).unwrap();
        let (_, claims) = decode_account(&imp_jwt).unwrap();
        assert_eq!(claims.imports.len(), 2);
        assert_eq!(claims.imports[1].token, act);
        assert_eq!(claims.imports[1].account, exp.public_key());
        assert_eq!(claims.imports[1].kind, Some(ExportType::Service));
        // Both accounts load, valid, and the import table routes the private service.
        std::fs::write(
            dir.join("op.jwt"),
            operator(&JwtOperatorArgs {
                common: common(op_seed.clone(), "OP"),
                signing_keys: vec![],
                system_account: None,
            })
            .unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("exp.jwt"), &exp_jwt).unwrap();
        std::fs::write(dir.join("imp.jwt"), &imp_jwt).unwrap();
        let block = config_block(&JwtConfigArgs {
            operator: dir.join("op.jwt"),
            accounts: vec![dir.join("exp.jwt"), dir.join("imp.jwt")],
            resolver_dir: None,
        })
        .unwrap();
        let opts = crate::config::load_str(&block, Path::new("x.conf")).unwrap();
        let auth = crate::auth::AuthConfig::from_options(&opts).unwrap();
        let operator = auth.operator().unwrap();
        let imp_account = operator.account(&imp.public_key()).unwrap();
        assert_eq!(imp_account.invalid, None);
        assert!(operator.activation_expiry().is_some());
        let mut out = Vec::new();
        let routed = auth
            .imports()
            .service_for(imp_account.id, b"priv.svc", &mut out);
        assert!(routed.is_some());
        // Misused flags are refused.
        let bad = |edit: fn(&mut JwtAccountArgs)| {
            let mut args = account_args(op_seed.clone(), &imp);
            edit(&mut args);
            account(&args).is_err()
        };
        assert!(bad(|a| a.import_streams = vec!["pub.>".into()]));
        assert!(bad(|a| a.import_services = vec!["NOTAKEY:svc".into()]));
        assert!(bad(|a| a.export_streams = vec!["bad..subject".into()]));
        // An activation for another account is refused as an import of this one.
        let other = account(&JwtAccountArgs {
            import_activations: vec![dir.join("priv.act")],
            ..account_args(op_seed, &exp)
        });
        assert!(other.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
