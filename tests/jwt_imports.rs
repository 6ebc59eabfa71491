//! Account JWT exports and imports that change while clients are connected, with every JWT,
//! `.creds` file and config block made by `ringnats jwt` (the binary, run as a command).
//!
//! Checked against ringnats and (the same files) nats-server 2.9.10: an import allowed by an
//! activation token stops when the token's `exp` passes (not before), for stream and service
//! imports alike, while a public import beside it keeps working, and an account update with a
//! fresh activation brings the service import back (the stream import too in ringnats;
//! nats-server 2.9.10 keeps that one stopped, and the test pins the difference); account
//! updates pushed on `$SYS.REQ.CLAIMS.UPDATE` that add or remove an import (importer side) or
//! an export (exporter side) take effect for connections that are already connected, which
//! keep their session. ringnats only (nats-server does not watch the directory): a resolver
//! file edited by hand changes imports the same way. Every wait is bounded; "does not cross"
//! is proven by a message on a public import published after it by the same connection.
//! Guards `auth/operator/imports.rs`, the activation-expiry rebuild in `monitor/claims.rs` and
//! `tools/jwt.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Launch, Nats, Server, TIMEOUT, scratch_dir};
use futures::StreamExt;
use nkeys::KeyPair;

/// How long after it is made an activation in the expiry test lasts: long enough for a
/// start, three logins and a first round of messages, short enough to wait for.
const ACTIVATION_SECS: i64 = 4;
/// How long after `exp` an import may still work before the test fails.
const EXPIRY_GRACE: Duration = Duration::from_secs(4);
/// How long a message that crossed takes at most to show up once its marker has (it was
/// published before the marker by the same connection, so it is already in the client).
const CROSSED_WITHIN: Duration = Duration::from_millis(50);

/// The brokers a test runs against: ringnats, and nats-server 2.9.10 when installed.
fn brokers() -> Vec<Launch> {
    let mut out = vec![Launch::ringnats()];
    out.extend(Launch::nats_server());
    out
}

/// Keys and files of one test: an operator with a system account, an exporting account EXP and
/// an importing account IMP; JWTs are made by running `ringnats jwt`.
struct Setup {
    dir: PathBuf,
    op: KeyPair,
    sys: KeyPair,
    exp: KeyPair,
    imp: KeyPair,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: scratch_dir(),
            op: KeyPair::new_operator(),
            sys: KeyPair::new_account(),
            exp: KeyPair::new_account(),
            imp: KeyPair::new_account(),
        };
        for (name, pair) in [
            ("op", &setup.op),
            ("sys", &setup.sys),
            ("exp", &setup.exp),
            ("imp", &setup.imp),
        ] {
            setup.seed_file(name, pair);
        }
        let op_jwt = setup.tool(&[
            "operator",
            "--signer",
            &setup.path("op.nk"),
            "--name",
            "OP",
            "--system-account",
            &setup.sys.public_key(),
        ]);
        setup.save("op.jwt", &op_jwt);
        setup.account("sys.jwt", &setup.sys, "SYS", &[]);
        setup
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn seed_file(&self, name: &str, pair: &KeyPair) {
        let text = format!("{}\n", pair.seed().expect("seed"));
        std::fs::write(self.dir.join(format!("{name}.nk")), text).expect("write seed");
    }

    fn save(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.join(name), text).expect("write");
        self.path(name)
    }

    /// Runs `ringnats jwt <args>`; returns its output, trimmed.
    #[track_caller]
    fn tool(&self, args: &[&str]) -> String {
        let mut all = vec!["jwt"];
        all.extend_from_slice(args);
        let out = Launch::ringnats().run(&all, b"");
        assert!(
            out.status.success(),
            "ringnats {all:?}: {}{}",
            out.stdout,
            out.stderr
        );
        out.stdout.trim().to_string()
    }

    /// An account JWT for `key` signed by the operator with `extra` flags, saved as `file`.
    fn account(&self, file: &str, key: &KeyPair, name: &str, extra: &[&str]) -> String {
        let (signer, subject) = (self.path("op.nk"), key.public_key());
        let mut args = vec![
            "account",
            "--signer",
            &signer,
            "--subject",
            &subject,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        let token = self.tool(&args);
        self.save(file, &token);
        token
    }

    /// An activation of EXP letting IMP import `subject` (`--stream` or `--service`), expiring
    /// `expires_in` seconds from now (0 = never); saved as `file`, whose path is returned.
    fn activation(&self, file: &str, kind: &str, subject: &str, expires_in: i64) -> String {
        let token = self.tool(&[
            "activation",
            "--signer",
            &self.path("exp.nk"),
            "--subject",
            &self.imp.public_key(),
            kind,
            subject,
            "--expires-in",
            &expires_in.to_string(),
        ]);
        self.save(file, &token)
    }

    /// A new user of `account` (seed file `<seed>.nk`) and its `.creds` file.
    fn creds(&self, seed: &str) -> PathBuf {
        let user = KeyPair::new_user();
        let name = format!("u{}", &user.public_key()[1..9]);
        self.seed_file(&name, &user);
        let token = self.tool(&[
            "user",
            "--signer",
            &self.path(&format!("{seed}.nk")),
            "--subject",
            &user.public_key(),
        ]);
        let jwt_file = self.save(&format!("{name}.jwt"), &token);
        let creds = self.tool(&[
            "creds",
            "--jwt",
            &jwt_file,
            "--seed",
            &self.path(&format!("{name}.nk")),
        ]);
        let path = self.dir.join(format!("{name}.creds"));
        std::fs::write(&path, format!("{creds}\n")).expect("write creds");
        path
    }

    /// `ringnats jwt config` for the memory resolver, or with `resolver_dir` the full one (its
    /// directory poll every 200 ms instead of the block's two minutes).
    fn config(&self, resolver_dir: Option<&Path>) -> String {
        let (op, sys, exp, imp) = (
            self.path("op.jwt"),
            self.path("sys.jwt"),
            self.path("exp.jwt"),
            self.path("imp.jwt"),
        );
        let mut args = vec![
            "config",
            "--operator",
            &op,
            "--account",
            &sys,
            "--account",
            &exp,
            "--account",
            &imp,
        ];
        let dir = resolver_dir.map(|d| d.display().to_string());
        if let Some(dir) = &dir {
            args.extend_from_slice(&["--resolver-dir", dir]);
        }
        let block = self.tool(&args);
        block.replace("interval: \"2m\"", "interval: \"200ms\"")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect(server: &Server, creds: &Path) -> Nats {
    let opts = async_nats::ConnectOptions::with_credentials_file(creds)
        .await
        .expect("read creds");
    Nats::connect_with(server, opts).await
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The importer's subscriptions: `news.>` (the import under test) and `ctl.>` (a public
/// stream import that always works, the marker).
struct Watch {
    news: async_nats::Subscriber,
    ctl: async_nats::Subscriber,
    seq: u64,
}

impl Watch {
    async fn new(importer: &Nats) -> Watch {
        let news = importer.subscribe("news.>").await.expect("sub news");
        let ctl = importer.subscribe("ctl.>").await.expect("sub ctl");
        importer.round_trip().await;
        Watch { news, ctl, seq: 0 }
    }

    /// Whether a message the exporter publishes on `news.x` reaches the importer now: it
    /// publishes `news.x` and then `ctl.x` (same payload); once `ctl.x` is in, `news.x` is too
    /// if it crossed at all.
    async fn crosses(&mut self, exporter: &Nats) -> bool {
        self.seq += 1;
        let payload = bytes::Bytes::from(self.seq.to_string());
        exporter
            .publish("news.x", payload.clone())
            .await
            .expect("pub news");
        exporter
            .publish("ctl.x", payload.clone())
            .await
            .expect("pub ctl");
        loop {
            let marker = common::next_msg(&mut self.ctl).await;
            if marker.payload == payload {
                break;
            }
        }
        let mut crossed = false;
        while let Ok(msg) = tokio::time::timeout(CROSSED_WITHIN, self.news.next()).await {
            crossed |= msg.expect("news subscription ended").payload == payload;
        }
        crossed
    }

    /// Waits (bounded by `TIMEOUT`) until [`Watch::crosses`] says `want`; panics otherwise.
    async fn until_crosses(&mut self, exporter: &Nats, want: bool, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.crosses(exporter).await != want {
            assert!(
                Instant::now() < deadline,
                "{what}: crossing never became {want}"
            );
        }
    }
}

/// Whether a request on `subject` is answered within `TIMEOUT` (tries until then, as the
/// responder's interest may still be on its way).
async fn answered(nats: &Nats, subject: &str) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let sent = nats.request(subject.to_string(), "ping".into());
        if let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(250), sent).await {
            assert_eq!(&msg.payload[..], b"pong", "{subject}");
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a request on `subject` goes unanswered (no responders, or nothing within a second).
async fn unanswered(nats: &Nats, subject: &str) -> bool {
    let sent = nats.request(subject.to_string(), "ping".into());
    !matches!(
        tokio::time::timeout(Duration::from_secs(1), sent).await,
        Ok(Ok(_))
    )
}

/// Answers every request on `subject` with `pong` until dropped.
async fn responder(nats: &Nats, subject: &str) -> tokio::task::JoinHandle<()> {
    let mut requests = nats.subscribe(subject.to_string()).await.expect("sub");
    nats.round_trip().await;
    let client = nats.client.clone();
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            if let Some(reply) = req.reply {
                let _ = client.publish(reply, "pong".into()).await;
                let _ = client.flush().await;
            }
        }
    })
}

/// Pushes `token` on `$SYS.REQ.CLAIMS.UPDATE` (the full resolver's subject); asserts
/// nats-server's success reply.
async fn push(sys: &Nats, token: &str) {
    push_on(sys, "$SYS.REQ.CLAIMS.UPDATE", token).await;
}

/// Pushes `token` on `subject`; asserts nats-server's success reply.
async fn push_on(sys: &Nats, subject: &str, token: &str) {
    let reply = tokio::time::timeout(
        TIMEOUT,
        sys.request(subject.to_string(), token.to_string().into()),
    )
    .await
    .expect("update reply in time")
    .expect("update reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).expect("reply json");
    assert_eq!(body["data"]["code"], 200, "{body}");
}

#[tokio::test]
async fn an_expired_activation_stops_its_import_on_live_connections() {
    for broker in brokers() {
        let setup = Setup::new();
        let exp_key = setup.exp.public_key();
        setup.account(
            "exp.jwt",
            &setup.exp,
            "EXP",
            &[
                "--export-private-stream",
                "news.>",
                "--export-private-service",
                "svc.time",
                "--export-stream",
                "ctl.>",
            ],
        );
        let news = setup.activation("news.act", "--stream", "news.>", ACTIVATION_SECS);
        let svc = setup.activation("svc.act", "--service", "svc.time", ACTIVATION_SECS);
        let expires = unix_now() + ACTIVATION_SECS;
        let ctl = format!("{exp_key}:ctl.>");
        setup.account(
            "imp.jwt",
            &setup.imp,
            "IMP",
            &[
                "--import-activation",
                &news,
                "--import-activation",
                &svc,
                "--import-stream",
                &ctl,
            ],
        );
        let (exp_creds, imp_creds, sys_creds) =
            (setup.creds("exp"), setup.creds("imp"), setup.creds("sys"));
        let server = broker.config(&setup.config(None)).start();
        let exporter = connect(&server, &exp_creds).await;
        let importer = connect(&server, &imp_creds).await;
        let sys = connect(&server, &sys_creds).await;
        let mut watch = Watch::new(&importer).await;
        let _time = responder(&exporter, "svc.time").await;

        // Before `exp`: both private imports work.
        watch.until_crosses(&exporter, true, "before exp").await;
        assert!(answered(&importer, "svc.time").await, "service before exp");
        assert!(
            unix_now() < expires,
            "{}: the first round took past the activation's exp; nothing was tested",
            broker.name()
        );

        // The stream import stops once `exp` passes (not before), bounded by the grace.
        let deadline = Instant::now()
            + Duration::from_secs(u64::try_from(expires - unix_now()).unwrap_or(0))
            + EXPIRY_GRACE;
        loop {
            let now = unix_now();
            if !watch.crosses(&exporter).await {
                assert!(now >= expires - 1, "{}: stopped before exp", broker.name());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the stream import still works {EXPIRY_GRACE:?} after exp",
                broker.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // It stays stopped, the service import too; the connections are the same ones.
        assert!(!watch.crosses(&exporter).await, "{}", broker.name());
        assert!(
            unanswered(&importer, "svc.time").await,
            "{}: service import after exp",
            broker.name()
        );
        // An update of the importer with fresh activations (no `exp`) brings both back (the
        // memory resolver's per-account subject).
        let news = setup.activation("news2.act", "--stream", "news.>", 0);
        let svc = setup.activation("svc2.act", "--service", "svc.time", 0);
        let fresh = [
            "--import-activation",
            &news,
            "--import-activation",
            &svc,
            "--import-stream",
            &ctl,
        ];
        let token = setup.account("imp.jwt", &setup.imp, "IMP", &fresh);
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", setup.imp.public_key());
        push_on(&sys, &subject, &token).await;
        assert!(
            answered(&importer, "svc.time").await,
            "{}: service back",
            broker.name()
        );
        if broker.is_ringnats() {
            watch
                .until_crosses(&exporter, true, "ringnats: fresh activation")
                .await;
        } else {
            // nats-server 2.9.10 keeps the expired stream import (`si.invalid`) across the
            // update; ringnats builds the imports afresh.
            assert!(!watch.crosses(&exporter).await, "nats-server: stream back");
        }
        assert_eq!(importer.disconnects(), 0, "{}", broker.name());
        assert_eq!(exporter.disconnects(), 0, "{}", broker.name());
    }
}

#[tokio::test]
async fn pushed_import_and_export_changes_reach_connected_clients() {
    for broker in brokers() {
        let setup = Setup::new();
        let exp_key = setup.exp.public_key();
        let (ctl, news, svc) = (
            format!("{exp_key}:ctl.>"),
            format!("{exp_key}:news.>"),
            format!("{exp_key}:svc.x"),
        );
        let all_exports = [
            "--export-stream",
            "ctl.>",
            "--export-stream",
            "news.>",
            "--export-service",
            "svc.x",
        ];
        setup.account("exp.jwt", &setup.exp, "EXP", &all_exports);
        setup.account("imp.jwt", &setup.imp, "IMP", &["--import-stream", &ctl]);
        let (exp_creds, imp_creds, sys_creds) =
            (setup.creds("exp"), setup.creds("imp"), setup.creds("sys"));
        let dir = setup.dir.join("jwt");
        let server = broker.config(&setup.config(Some(&dir))).start();
        let exporter = connect(&server, &exp_creds).await;
        let importer = connect(&server, &imp_creds).await;
        let sys = connect(&server, &sys_creds).await;
        let mut watch = Watch::new(&importer).await;
        let _svc = responder(&exporter, "svc.x").await;
        let name = broker.name();

        // Not imported yet.
        assert!(
            !watch.crosses(&exporter).await,
            "{name}: news before the import"
        );
        assert!(
            unanswered(&importer, "svc.x").await,
            "{name}: svc.x before the import"
        );

        // The importer's account gains both imports: its live subscription gets news.
        let more = [
            "--import-stream",
            &ctl,
            "--import-stream",
            &news,
            "--import-service",
            &svc,
        ];
        push(&sys, &setup.account("imp.jwt", &setup.imp, "IMP", &more)).await;
        watch
            .until_crosses(&exporter, true, &format!("{name}: import added"))
            .await;
        assert!(answered(&importer, "svc.x").await, "{name}: svc.x imported");

        // The exporter withdraws the news export: the import it allowed stops.
        let fewer = ["--export-stream", "ctl.>", "--export-service", "svc.x"];
        push(&sys, &setup.account("exp.jwt", &setup.exp, "EXP", &fewer)).await;
        watch
            .until_crosses(&exporter, false, &format!("{name}: export removed"))
            .await;
        assert!(
            answered(&importer, "svc.x").await,
            "{name}: svc.x still imported"
        );

        // ... and offers it again; then the importer drops its service import.
        push(
            &sys,
            &setup.account("exp.jwt", &setup.exp, "EXP", &all_exports),
        )
        .await;
        watch
            .until_crosses(&exporter, true, &format!("{name}: export back"))
            .await;
        let no_service = ["--import-stream", &ctl, "--import-stream", &news];
        push(
            &sys,
            &setup.account("imp.jwt", &setup.imp, "IMP", &no_service),
        )
        .await;
        assert!(
            unanswered(&importer, "svc.x").await,
            "{name}: svc.x import removed"
        );
        assert!(
            watch.crosses(&exporter).await,
            "{name}: news still imported"
        );

        for (who, nats) in [("importer", &importer), ("exporter", &exporter)] {
            assert_eq!(nats.disconnects(), 0, "{name}: {who} reconnected");
        }
    }
}

/// ringnats only: nats-server does not notice a resolver file edited by hand.
#[tokio::test]
async fn edited_resolver_files_change_imports_of_connected_clients() {
    let setup = Setup::new();
    let exp_key = setup.exp.public_key();
    let ctl = format!("{exp_key}:ctl.>");
    setup.account(
        "exp.jwt",
        &setup.exp,
        "EXP",
        &[
            "--export-stream",
            "ctl.>",
            "--export-private-stream",
            "news.>",
        ],
    );
    setup.account("imp.jwt", &setup.imp, "IMP", &["--import-stream", &ctl]);
    let (exp_creds, imp_creds) = (setup.creds("exp"), setup.creds("imp"));
    let dir = setup.dir.join("jwt");
    let server = Launch::ringnats().config(&setup.config(Some(&dir))).start();
    let exporter = connect(&server, &exp_creds).await;
    let importer = connect(&server, &imp_creds).await;
    let mut watch = Watch::new(&importer).await;
    assert!(!watch.crosses(&exporter).await, "news before the import");
    let file = dir.join(format!("{}.jwt", setup.imp.public_key()));

    // An importer file with an activation for the private export: news crosses.
    let act = setup.activation("news.act", "--stream", "news.>", 0);
    let with_import = ["--import-stream", &ctl, "--import-activation", &act];
    let token = setup.account("imp.jwt", &setup.imp, "IMP", &with_import);
    std::fs::write(&file, &token).expect("edit the resolver file");
    watch
        .until_crosses(&exporter, true, "file with the import")
        .await;

    // The same file without it: news stops.
    let token = setup.account("imp.jwt", &setup.imp, "IMP", &["--import-stream", &ctl]);
    std::fs::write(&file, &token).expect("edit the resolver file");
    watch
        .until_crosses(&exporter, false, "file without the import")
        .await;
    assert_eq!(importer.disconnects(), 0, "importer reconnected");
}

/// ringnats only: an activation whose `exp` is as far away as a JWT can put it (near
/// `i64::MAX` seconds) is in force, and the control plane, which waits for the next
/// activation expiry, keeps answering `$SYS` requests.
#[tokio::test]
async fn a_far_activation_expiry_leaves_the_control_plane_working() {
    let setup = Setup::new();
    let exp_key = setup.exp.public_key();
    let ctl = format!("{exp_key}:ctl.>");
    setup.account(
        "exp.jwt",
        &setup.exp,
        "EXP",
        &[
            "--export-stream",
            "ctl.>",
            "--export-private-stream",
            "news.>",
        ],
    );
    let act = setup.activation("news.act", "--stream", "news.>", i64::MAX - 1);
    let imports = ["--import-stream", &ctl, "--import-activation", &act];
    setup.account("imp.jwt", &setup.imp, "IMP", &imports);
    let (exp_creds, imp_creds, sys_creds) =
        (setup.creds("exp"), setup.creds("imp"), setup.creds("sys"));
    let server = Launch::ringnats().config(&setup.config(None)).start();
    let exporter = connect(&server, &exp_creds).await;
    let importer = connect(&server, &imp_creds).await;
    let sys = connect(&server, &sys_creds).await;
    let mut watch = Watch::new(&importer).await;
    watch.until_crosses(&exporter, true, "far activation").await;
    let token = setup.account("imp.jwt", &setup.imp, "IMP", &imports);
    let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", setup.imp.public_key());
    push_on(&sys, &subject, &token).await;
    assert!(watch.crosses(&exporter).await, "after the update");
}
