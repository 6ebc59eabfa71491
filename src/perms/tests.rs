use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::parse_str;

fn from_config(text: &str) -> Result<Permissions, ConfigError> {
    let map = parse_str(&format!("permissions: {text}"), Path::new("p.conf")).expect("parses");
    Permissions::from_value(map.get("permissions").expect("key"))
}

fn perms(text: &str) -> Permissions {
    from_config(text).expect("valid permissions")
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The `[live]` permission config of auth.md.
fn spec_user_a() -> Permissions {
    perms(
        "{ publish: {allow: [\"foo.>\", \"req.*\"], deny: [\"foo.secret\"]}, \
         subscribe: {allow: \"_INBOX.>\", deny: [\"_INBOX.x\"]} }",
    )
}

#[test]
fn spec_live_vectors() {
    let p = spec_user_a();
    let mut cache = PermCache::new();
    assert!(!cache.can_publish(&p, b"foo.secret"), "deny wins");
    assert!(!cache.can_publish(&p, b"baz"));
    assert!(cache.can_publish(&p, b"foo.ok"));
    assert!(cache.can_publish(&p, b"req.one"));
    assert!(!cache.can_publish(&p, b"req.one.two"));
    assert!(!cache.can_subscribe(&p, b"other", None));
    assert!(!cache.can_subscribe(&p, b"foo.>", Some(b"q")));
    assert!(!cache.can_subscribe(&p, b"_INBOX.x", None));
    assert!(
        cache.can_subscribe(&p, b"_INBOX.*", None),
        "wildcard sub covering a deny is accepted"
    );
    assert!(p.sub_needs_delivery_filter(b"_INBOX.*"));
    assert!(!p.sub_needs_delivery_filter(b"_INBOX.y"));
    assert!(!cache.can_deliver(&p, b"_INBOX.x"));
    assert!(cache.can_deliver(&p, b"_INBOX.y"));
}

#[test]
fn forms_string_list_and_map() {
    let p = perms("{ publish: \"a.b\", subscribe: [\"c\", \"d.*\"] }");
    assert!(p.check_publish(b"a.b"));
    assert!(!p.check_publish(b"a.c"));
    assert!(p.check_subscribe(b"d.x", None));
    assert!(!p.check_subscribe(b"e", None));
    let p = perms("{ pub: {deny: \"x.>\"} }");
    assert!(
        p.check_publish(b"anything"),
        "deny only: allow absent allows all"
    );
    assert!(!p.check_publish(b"x.y"));
    assert!(
        p.check_subscribe(b"x.y", None),
        "no subscribe section: all allowed"
    );
    let p = perms("{ import: \"i\", export: \"e\" }");
    assert!(p.check_publish(b"i") && !p.check_publish(b"e"));
    assert!(p.check_subscribe(b"e", None) && !p.check_subscribe(b"i", None));
}

#[test]
fn wildcard_entries_and_literal_subjects() {
    let p = perms("{ publish: [\"foo.*\"], subscribe: [\"foo.>\"] }");
    assert!(p.check_publish(b"foo.bar"));
    assert!(
        p.check_publish(b"foo.*"),
        "a wildcard publish subject is matched literally"
    );
    assert!(!p.check_publish(b"foo.bar.baz"));
    assert!(p.check_subscribe(b"foo.*", None));
    assert!(p.check_subscribe(b"foo.>", None));
    assert!(!p.check_subscribe(b"foo", None));
    let p = perms("{ subscribe: [\"foo.bar\"] }");
    assert!(
        !p.check_subscribe(b"foo.*", None),
        "a narrower allow does not allow a wildcard"
    );
}

#[test]
fn queue_entries() {
    let p = perms("{ subscribe: [\"bar\", \"q.sub grp\"] }");
    assert!(!p.check_subscribe(b"q.sub", None));
    assert!(p.check_subscribe(b"q.sub", Some(b"grp")));
    assert!(!p.check_subscribe(b"q.sub", Some(b"other")));
    assert!(
        p.check_subscribe(b"bar", Some(b"anyq")),
        "plain entries allow any queue"
    );
    assert!(p.check_subscribe(b"bar", None));
    let p = perms("{ subscribe: [\"q.> grp.*\"] }");
    assert!(
        p.check_subscribe(b"q.a", Some(b"grp.1")),
        "wildcard queue names"
    );
    assert!(!p.check_subscribe(b"q.a", Some(b"grp")));
    let p = perms("{ subscribe: {deny: [\"q.x grp\"]} }");
    assert!(!p.check_subscribe(b"q.x", Some(b"grp")));
    assert!(p.check_subscribe(b"q.x", Some(b"other")));
    assert!(p.check_subscribe(b"q.x", None));
    assert!(
        p.check_deliver(b"q.x"),
        "queue deny entries do not filter deliveries"
    );
}

#[test]
fn system_queue_is_refused() {
    let p = Permissions::default();
    assert!(!p.check_subscribe(b"foo", Some(b"_sys_")));
    assert!(p.check_subscribe(b"foo", Some(b"_sys")));
    let mut cache = PermCache::new();
    assert!(!cache.can_subscribe(&p, b"foo", Some(b"_sys_")));
}

#[test]
fn invalid_entries_are_config_errors() {
    let e = from_config("{ publish: \"foo..bar\" }")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "p.conf:1: permissions: subject \"foo..bar\" is not a valid subject"
    );
    let e = from_config("{ subscribe: [\"foo bar baz\"] }")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("subject \"foo bar baz\" is not a valid subject"),
        "{e}"
    );
    let e = from_config("{ subscribe: [\"foo. bar\"] }")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("subject \"foo.\" is not a valid subject"),
        "{e}"
    );
    let e = from_config("{ publish: {allowx: \"a\"} }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Unknown field name \"allowx\" parsing subject permissions"),
        "{e}"
    );
    let e = from_config("{ allow_responses: {maxx: 1} }")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("Unknown field \"maxx\" parsing permissions"),
        "{e}"
    );
    let e = from_config("{ allow_responses: {expires: \"1x\"} }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("error parsing expires: time: unknown unit \"x\""),
        "{e}"
    );
    let e = from_config("{ publish: 5 }").unwrap_err().to_string();
    assert!(e.contains("got integer"), "{e}");
}

#[test]
fn allow_responses_forms() {
    let p = perms("{ allow_responses: true }");
    assert_eq!(p.allow_responses(), Some(ResponsePermission::default()));
    assert!(
        !p.check_publish(b"anything"),
        "publish becomes deny-all-except-replies"
    );
    let p = perms("{ allow_responses: {max: 2, expires: \"1s\"}, publish: \"ok\" }");
    let resp = p.allow_responses().unwrap();
    assert_eq!((resp.max, resp.expires), (2, Duration::from_secs(1)));
    assert!(p.check_publish(b"ok"), "an explicit allow list is kept");
    let p = perms("{ allow_responses: false }");
    assert!(p.allow_responses().is_none());
    assert!(p.check_publish(b"x"));
}

#[test]
fn response_tracker_counts_and_expires() {
    let resp = ResponsePermission {
        max: 2,
        expires: Duration::from_secs(60),
    };
    let t0 = Instant::now();
    let mut tracker = ResponseTracker::new();
    assert!(!tracker.allow_reply(&resp, b"_INBOX.r1", t0));
    tracker.record(&resp, b"_INBOX.r1", t0);
    assert!(tracker.allow_reply(&resp, b"_INBOX.r1", t0));
    assert!(tracker.allow_reply(&resp, b"_INBOX.r1", t0));
    assert!(
        !tracker.allow_reply(&resp, b"_INBOX.r1", t0),
        "third reply is over max"
    );
    assert!(tracker.is_empty());
    tracker.record(&resp, b"_INBOX.r2", t0);
    assert!(!tracker.allow_reply(&resp, b"_INBOX.r2", t0 + Duration::from_secs(61)));
    tracker.record(&resp, b"_INBOX.r3", t0);
    tracker.sweep(&resp, t0 + Duration::from_secs(61));
    assert!(tracker.is_empty(), "sweep drops expired replies");
    // max 0 and expires 0: unlimited.
    let open = ResponsePermission {
        max: 0,
        expires: Duration::ZERO,
    };
    tracker.record(&open, b"r", t0);
    for _ in 0..10 {
        assert!(tracker.allow_reply(&open, b"r", t0 + Duration::from_secs(3600)));
    }
}

#[test]
fn response_tracker_is_bounded() {
    let resp = ResponsePermission::default();
    let t0 = Instant::now();
    let mut tracker = ResponseTracker::new();
    for i in 0..RESPONSE_TRACKER_CAPACITY + 10 {
        let at = t0 + Duration::from_millis(i as u64);
        tracker.record(&resp, format!("r.{i}").as_bytes(), at);
    }
    assert_eq!(tracker.len(), RESPONSE_TRACKER_CAPACITY);
    assert!(!tracker.allow_reply(&resp, b"r.0", t0), "oldest evicted");
    let newest = format!("r.{}", RESPONSE_TRACKER_CAPACITY + 9);
    assert!(tracker.allow_reply(&resp, newest.as_bytes(), t0));
}

#[test]
fn response_tracker_leaves_the_cache_alone() {
    let p = perms("{ allow_responses: true }");
    let mut cache = PermCache::new();
    let mut tracker = ResponseTracker::new();
    let resp = p.allow_responses().unwrap();
    let now = Instant::now();
    tracker.record(&resp, b"_INBOX.a", now);
    let allowed =
        cache.can_publish(&p, b"_INBOX.a") || tracker.allow_reply(&resp, b"_INBOX.a", now);
    assert!(allowed);
    assert_eq!(cache.len(), 1, "only the list answer is cached");
    let again = cache.can_publish(&p, b"_INBOX.a") || tracker.allow_reply(&resp, b"_INBOX.a", now);
    assert!(!again, "max 1 reply");
}

#[test]
fn cache_is_bounded() {
    let p = perms("{ publish: \"x.>\" }");
    let mut cache = PermCache::new();
    for i in 0..1000 {
        let s = format!("x.{i}");
        assert!(cache.can_publish(&p, s.as_bytes()));
        assert!(cache.len() <= PERM_CACHE_CAPACITY);
    }
    assert!(!cache.can_publish(&p, b"y"));
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn subset_match() {
    assert!(is_subset_match(b"foo.bar", b"foo.*"));
    assert!(is_subset_match(b"foo.bar", b"foo.>"));
    assert!(is_subset_match(b"foo.*", b"foo.>"));
    assert!(is_subset_match(b"foo.*", b"foo.*"));
    assert!(!is_subset_match(b"foo.*", b"foo.bar"));
    assert!(!is_subset_match(b"foo.>", b"foo.*"));
    assert!(!is_subset_match(b"foo", b"foo.>"));
    assert!(!is_subset_match(b"foo.bar.baz", b"foo.*"));
}

/// Issue 8 §4: an allow entry admits a SUB only when it covers every subject the SUB can match.
#[test]
fn sub_allow_is_a_subset_test() {
    let p = perms("{ subscribe: [\"in.*\"] }");
    assert!(!p.check_subscribe(b"in.>", None), "in.> reaches in.a.b");
    assert!(p.check_subscribe(b"in.*", None));
    assert!(p.check_subscribe(b"in.a", None));
    let p = perms("{ subscribe: [\"*\"] }");
    assert!(!p.check_subscribe(b">", None), "> reaches a.b");
    assert!(!p.check_subscribe(b"*.*", None));
    assert!(p.check_subscribe(b"*", None));
    let p = perms("{ subscribe: [\"q.* grp\"] }");
    assert!(!p.check_subscribe(b"q.>", Some(b"grp")));
    assert!(p.check_subscribe(b"q.*", Some(b"grp")));
    // The cached answer is the same, the second time too.
    let mut cache = PermCache::new();
    for _ in 0..2 {
        assert!(!cache.can_subscribe(&p, b"q.>", Some(b"grp")));
        assert!(cache.can_subscribe(&p, b"q.*", Some(b"grp")));
    }
}

/// Issue 8 §4: a wildcard SUB that overlaps a deny entry without containing it is filtered.
#[test]
fn deny_overlap_turns_the_delivery_filter_on() {
    let p = perms("{ subscribe: {deny: [\"*.secret\", \"a.*.c\"]} }");
    assert!(p.check_subscribe(b"in.>", None));
    assert!(p.sub_needs_delivery_filter(b"in.>"));
    assert!(p.check_subscribe(b"a.b.*", None));
    assert!(p.sub_needs_delivery_filter(b"a.b.*"));
    assert!(!p.sub_needs_delivery_filter(b"a.b.d"));
    assert!(
        !p.sub_needs_delivery_filter(b"x.y.z.>"),
        "x.y.z.* is never *.secret"
    );
    assert!(!p.check_deliver(b"in.secret"));
    assert!(!p.check_deliver(b"a.b.c"));
    assert!(p.check_deliver(b"a.b.d"));
}

#[test]
fn overlap() {
    assert!(subjects_overlap(b"*.secret", b"in.>"));
    assert!(subjects_overlap(b"a.*.c", b"a.b.*"));
    assert!(subjects_overlap(b"a.>", b"a.b"));
    assert!(subjects_overlap(b">", b"a"));
    assert!(subjects_overlap(b"a.b", b"a.b"));
    assert!(!subjects_overlap(b"a", b"a.>"));
    assert!(!subjects_overlap(b"a.*", b"a"));
    assert!(!subjects_overlap(b"a.b", b"a.c"));
    assert!(!subjects_overlap(b"*.secret", b"in.*.x"));
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just("*".to_string()),
        Just(">".to_string()),
        Just(String::new()),
    ]
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..4).prop_map(|t| t.join("."))
}

fn entry() -> impl Strategy<Value = String> {
    (
        subject(),
        prop::option::of(prop_oneof![Just("q"), Just("r")]),
    )
        .prop_map(|(s, q)| match q {
            Some(q) => format!("{s} {q}"),
            None => s,
        })
}

fn spec() -> impl Strategy<Value = PermissionSpec> {
    let list = || prop::collection::vec(subject(), 0..4);
    let sub_list = || prop::collection::vec(entry(), 0..4);
    (
        prop::option::of(list()),
        list(),
        prop::option::of(sub_list()),
        sub_list(),
    )
        .prop_map(|(pa, pd, sa, sd)| PermissionSpec {
            publish_allow: pa,
            publish_deny: pd,
            subscribe_allow: sa,
            subscribe_deny: sd,
            response: None,
        })
}

proptest! {
    #[test]
    fn cache_agrees_with_uncached_check(
        spec in spec(),
        ops in prop::collection::vec(
            (0u8..3, subject(), prop::option::of(prop_oneof![Just("q"), Just("r"), Just("_sys_")]))
            , 1..300),
    ) {
        // Invalid entries must be refused, valid ones compiled.
        let Ok(p) = Permissions::compile(&spec) else {
            return Ok(());
        };
        let mut cache = PermCache::new();
        for _round in 0..2 {
            for (op, s, q) in &ops {
                let s = s.as_bytes();
                let q = q.map(str::as_bytes);
                match op {
                    0 => prop_assert_eq!(cache.can_publish(&p, s), p.check_publish(s)),
                    1 => prop_assert_eq!(cache.can_subscribe(&p, s, q), p.check_subscribe(s, q)),
                    _ => prop_assert_eq!(cache.can_deliver(&p, s), p.check_deliver(s)),
                }
            }
        }
    }

    /// What a SUB the checks accept can receive is what the user may receive: every literal
    /// subject it matches is allowed to subscribe to, or is filtered out of its deliveries.
    #[test]
    fn accepted_sub_receives_only_allowed_subjects(
        spec in spec(),
        filter in subject(),
        literal in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..5),
    ) {
        let Ok(p) = Permissions::compile(&spec) else {
            return Ok(());
        };
        let literal = literal.join(".");
        let (filter, literal) = (filter.as_bytes(), literal.as_bytes());
        let accepted = crate::subject::is_valid_filter(filter) && p.check_subscribe(filter, None);
        if accepted && filter_matches(filter, literal) {
            let filtered = p.sub_needs_delivery_filter(filter) && !p.check_deliver(literal);
            prop_assert!(
                p.check_subscribe(literal, None) || filtered,
                "SUB {} receives {}",
                String::from_utf8_lossy(filter),
                String::from_utf8_lossy(literal)
            );
        }
    }

    #[test]
    fn overlap_agrees_with_a_witness(
        a in subject(),
        b in subject(),
        literal in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..6),
    ) {
        let literal = literal.join(".");
        let valid = crate::subject::is_valid_filter(a.as_bytes())
            && crate::subject::is_valid_filter(b.as_bytes());
        let both = filter_matches(a.as_bytes(), literal.as_bytes())
            && filter_matches(b.as_bytes(), literal.as_bytes());
        if valid && both {
            prop_assert!(subjects_overlap(a.as_bytes(), b.as_bytes()));
        }
    }

    #[test]
    fn deny_always_wins_on_publish(allow in prop::collection::vec(subject(), 0..3), s in subject()) {
        let spec = PermissionSpec {
            publish_allow: Some(allow),
            publish_deny: strings(&[">"]),
            ..PermissionSpec::default()
        };
        if let Ok(p) = Permissions::compile(&spec) {
            prop_assert!(!p.check_publish(s.as_bytes()));
        }
    }
}

/// Checked against nats-server 2.9.10 over a raw socket: when queue entries match, the queue
/// name decides, in the deny list too (a plain deny of `q.x` does not stop `SUB q.x other`).
#[test]
fn queue_rules_match_live_nats_server() {
    let a = perms(
        "{ subscribe: { allow: [\"q.sub\", \"q.sub grp\", \">\"], deny: [\"q.x\", \"q.x grp\"] } }",
    );
    assert!(a.check_subscribe(b"q.x", Some(b"other")));
    assert!(!a.check_subscribe(b"q.x", Some(b"grp")));
    assert!(!a.check_subscribe(b"q.x", None));
    let b = perms("{ subscribe: [\"q.sub\", \"q.sub grp\"] }");
    assert!(!b.check_subscribe(b"q.sub", Some(b"other")));
    assert!(b.check_subscribe(b"q.sub", Some(b"grp")));
    assert!(b.check_subscribe(b"q.sub", None));
}
