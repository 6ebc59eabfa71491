//! Tests of the whole config path: grammar, variables, includes, model and error texts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn origin() -> &'static Path {
    Path::new("server.conf")
}

fn parse(text: &str) -> Map {
    parse_str(text, origin()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn parse_err(text: &str) -> String {
    match parse_str(text, origin()) {
        Ok(map) => panic!("{text:?} parsed: {map:?}"),
        Err(e) => e.to_string(),
    }
}

fn load(text: &str) -> ServerOptions {
    load_str(text, origin()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn load_err(text: &str) -> String {
    match load_str(text, origin()) {
        Ok(opts) => panic!("{text:?} loaded: {opts:?}"),
        Err(e) => e.to_string(),
    }
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringnats-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn int(map: &Map, key: &str) -> i64 {
    map.get(key)
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("{key} in {map:?}"))
}

fn string<'a>(map: &'a Map, key: &str) -> &'a str {
    map.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} in {map:?}"))
}

// ---- grammar ----

#[test]
fn key_separators() {
    for text in [
        "port: 4222",
        "port = 4222",
        "port 4222",
        "port:4222",
        "port=4222",
        "port\t4222",
    ] {
        assert_eq!(int(&parse(text), "port"), 4222, "{text}");
    }
}

#[test]
fn entry_separators_and_comments() {
    let map = parse("port: 4222; max_payload: 1MB;\n# c\n// c\ndebug: true # x\ntrace: on // y");
    assert_eq!(int(&map, "port"), 4222);
    assert_eq!(int(&map, "max_payload"), 1 << 20);
    assert_eq!(map.get("debug").and_then(Value::as_bool), Some(true));
    assert_eq!(map.get("trace").and_then(Value::as_bool), Some(true));
    assert_eq!(map.len(), 4);
    let map = parse("a: 1, b: 2,\n,\nc: 3;;");
    assert_eq!((int(&map, "a"), int(&map, "b"), int(&map, "c")), (1, 2, 3));
}

#[test]
fn value_must_end_the_line() {
    let err = parse_err("port: 4222 x");
    assert_eq!(
        err,
        "server.conf:1: parse error: Expected a top-level value to end with a new line, \
         comment or EOF, but got 'x' instead."
    );
    assert!(parse_err("port=4222 debug=true").contains("got 'd'"));
    assert!(parse_err("port:\n4222").contains("Expected value but found new line"));
    assert!(parse_err("port").contains("Expected value but found EOF"));
    assert!(parse_err("port: 1 }").contains("got '}' instead"));
    assert!(parse_err("}").contains("Unexpected '}'"));
}

#[test]
fn keys_are_matched_case_insensitively() {
    let map = parse("Port: 1\nMAX_PAYLOAD: 2");
    assert_eq!(int(&map, "port"), 1);
    assert_eq!(int(&map, "max_payload"), 2);
    let opts = load("Port: 4333\nMAX_PAYLOAD: 1k\nDebug: TRUE");
    assert_eq!(opts.port, 4333);
    assert_eq!(opts.max_payload, 1000);
    assert!(opts.debug);
}

#[test]
fn quoted_keys() {
    let map = parse("\"port\": 4222\n'server name': x");
    assert_eq!(int(&map, "port"), 4222);
    assert_eq!(string(&map, "server name"), "x");
}

#[test]
fn maps_and_arrays() {
    let map = parse(
        "cluster {\n  port: 6222\n  routes: [\n    a\n    b,\n    c # comment\n  ]\n  \
         inner { x: 1 }\n}\nlist: [1, \"two\", 3.5, true, {k: v}, [x]]",
    );
    let cluster = map.get("cluster").and_then(Value::as_map).unwrap();
    assert_eq!(int(cluster, "port"), 6222);
    let routes = cluster
        .get("routes")
        .unwrap()
        .expect_strings("routes")
        .unwrap();
    assert_eq!(routes, vec!["a", "b", "c"]);
    assert_eq!(int(cluster.get("inner").unwrap().as_map().unwrap(), "x"), 1);
    let list = map.get("list").and_then(Value::as_array).unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list[0].as_int(), Some(1));
    assert_eq!(list[1].as_str(), Some("two"));
    assert_eq!(list[2].as_float(), Some(3.5));
    assert_eq!(list[3].as_bool(), Some(true));
    assert_eq!(string(list[4].as_map().unwrap(), "k"), "v");
    assert_eq!(list[5].as_array().unwrap()[0].as_str(), Some("x"));
    assert_eq!(
        parse("a: []")
            .get("a")
            .and_then(Value::as_array)
            .map(<[Value]>::len),
        Some(0)
    );
    assert!(parse("a: [1, 2,]").get("a").is_some());
}

#[test]
fn malformed_structures() {
    assert!(parse_err("a { b").contains("Expected value but found EOF"));
    assert!(parse_err("a { b: 1").contains("Unexpected EOF processing map."));
    assert!(parse_err("a: [1, 2").contains("Unexpected EOF processing array."));
    let err = parse_err("a: [ a b ]");
    assert!(
        err.contains(
            "Expected an array value terminator \",\" or an array terminator \"]\", but got 'b'"
        ),
        "{err}"
    );
    assert!(parse_err("a { b: 1 x }").contains("Expected a map value to end"));
    assert!(parse_err("a: \"unterminated").contains("Unexpected EOF processing quoted string."));
    assert!(parse_err("a: ;").contains("Expected value but found ';'"));
}

#[test]
fn strings_of_every_kind() {
    let map = parse(
        "a: \"x\\ty\\u00e9\"\nb: 'raw\\n$X'\nc: bare-word.with:colon\nd: (\nline one\nline two\n)\n",
    );
    assert_eq!(string(&map, "a"), "x\tyé");
    assert_eq!(string(&map, "b"), "raw\\n$X");
    assert_eq!(string(&map, "c"), "bare-word.with:colon");
    assert_eq!(string(&map, "d"), "\nline one\nline two\n");
    assert!(parse_err("x = \"\\q\"").contains("Invalid escape character 'q'"));
}

#[test]
fn block_string_rules() {
    assert!(parse_err("server_name: ( abc )").contains("Unexpected EOF processing block."));
    assert!(parse_err("server_name: (abc)").contains("Unexpected EOF processing block."));
    let map = parse("a: (\nabc)\n)\nb: 1");
    assert_eq!(string(&map, "a"), "\nabc)\n");
    assert_eq!(int(&map, "b"), 1);
    assert_eq!(map.entry("b").unwrap().pos.line, 4);
}

#[test]
fn numbers_sizes_and_floats() {
    let map = parse("a: 512k\nb: 2MB\nc: 1.5\nd: -1\ne: 1gb\nf: 10KiB\ng: 127.0.0.1");
    assert_eq!(int(&map, "a"), 512_000);
    assert_eq!(int(&map, "b"), 2_097_152);
    assert_eq!(map.get("c").and_then(Value::as_float), Some(1.5));
    assert_eq!(int(&map, "d"), -1);
    assert_eq!(int(&map, "e"), 1 << 30);
    assert_eq!(int(&map, "f"), 10_240);
    assert_eq!(string(&map, "g"), "127.0.0.1");
    assert!(parse_err("a: 99999999999999999999").contains("out of the range"));
    assert!(parse_err("a: 5.").contains("Floats must have a digit after the '.'"));
}

#[test]
fn booleans() {
    let map = parse("a: true\nb: FALSE\nc: yes\nd: No\ne: on\nf: OFF\ng: \"yes\"");
    let b = |k| map.get(k).and_then(Value::as_bool);
    assert_eq!(
        [b("a"), b("b"), b("c"), b("d"), b("e"), b("f")],
        [
            Some(true),
            Some(false),
            Some(true),
            Some(false),
            Some(true),
            Some(false)
        ]
    );
    assert_eq!(string(&map, "g"), "yes");
}

#[test]
fn datetimes() {
    let map = parse("at: 2026-01-01T00:00:00Z\nq: \"2026-01-01T00:00:00Z\"");
    let at = map.get("at").unwrap();
    assert!(matches!(at.kind, ValueKind::DateTime(_)));
    assert_eq!(
        at.as_datetime().map(|d| d.unix_seconds),
        Some(1_767_225_600)
    );
    assert_eq!(map.get("q").unwrap().as_datetime(), at.as_datetime());
    assert!(parse_err("a: 2006-01-02").contains("Zulu"));
}

#[test]
fn positions_are_kept() {
    let map = parse("\n\na: 1\nb {\n  c: [\n    x\n  ]\n}\n");
    let a = map.entry("a").unwrap();
    assert_eq!(a.pos.line, 3);
    assert_eq!(a.pos.file.as_ref(), Path::new("server.conf"));
    let b = map.get("b").unwrap().as_map().unwrap();
    assert_eq!(b.entry("c").unwrap().pos.line, 5);
    assert_eq!(b.get("c").unwrap().as_array().unwrap()[0].pos.line, 6);
    assert_eq!(parse_err("a: 1\n\nb: \"x").split(':').nth(1), Some("3"));
}

#[test]
fn typed_accessor_errors_name_position_and_key() {
    let map = parse("\nport: \"abc\"\nt: \"1s\"\nf: 0.5\n");
    let port = map.get("port").unwrap();
    assert_eq!(
        port.expect_int("port").unwrap_err().to_string(),
        "server.conf:2: port: expected an integer, got string"
    );
    assert_eq!(
        map.get("t")
            .unwrap()
            .expect_seconds_or_duration("t")
            .unwrap(),
        Duration::from_secs(1)
    );
    assert_eq!(
        map.get("f")
            .unwrap()
            .expect_seconds_or_duration("f")
            .unwrap(),
        Duration::from_millis(500)
    );
}

// ---- variables ----

#[test]
fn variables_resolve_innermost_map_outward() {
    let map = parse("X: 5\nport: $X\ncluster { Y: 7, port: $X, other: $Y }\n");
    assert_eq!(int(&map, "port"), 5);
    let cluster = map.get("cluster").unwrap().as_map().unwrap();
    assert_eq!(int(cluster, "port"), 5);
    assert_eq!(int(cluster, "other"), 7);
    assert!(map.entry("X").unwrap().is_used_variable());
    assert!(!map.entry("port").unwrap().is_used_variable());
    let map = parse("X: 1\nm { X: 2, v: $X }");
    assert_eq!(
        int(map.get("m").unwrap().as_map().unwrap(), "v"),
        2,
        "inner wins"
    );
}

#[test]
fn variables_are_case_sensitive_and_scoped() {
    assert_eq!(
        parse_err("X: 1\nport: $x"),
        "server.conf:2: variable reference for 'x' on line 2 can not be found"
    );
    assert!(
        parse_err("cluster { X: 5 }\nport: $X")
            .contains("variable reference for 'X' on line 2 can not be found")
    );
}

#[test]
fn variable_holding_a_map() {
    let map = parse("PERM = { publish: \"a.>\" }\nusers: [ { user: a, permissions: $PERM } ]");
    let users = map.get("users").unwrap().as_array().unwrap();
    let perms = users[0].as_map().unwrap().get("permissions").unwrap();
    assert_eq!(string(perms.as_map().unwrap(), "publish"), "a.>");
    assert_eq!(
        perms.pos.line, 2,
        "a substituted value sits at the reference"
    );
}

/// Environment variables can only be set without `unsafe` on a child process, so the env tests
/// re-run themselves in a child with the variables set, and check the child ran exactly them.
fn run_in_child_with_env(test_name: &str, vars: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let mut command = std::process::Command::new(exe);
    command
        .args([test_name, "--exact", "--test-threads=1"])
        .env(CHILD_MARKER, "1");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains("1 passed"),
        "child did not run {test_name}: {stdout}"
    );
    true
}

const CHILD_MARKER: &str = "RINGNATS_CONFIG_TEST_CHILD";

#[test]
fn environment_variables_are_parsed_as_values() {
    let vars = [
        ("RINGNATS_TEST_TOK", "envtok"),
        ("RINGNATS_TEST_SIZE", "1k"),
        ("RINGNATS_TEST_MAP", "{ a: 1 }"),
        ("RINGNATS_TEST_BAD", "a b"),
        ("RINGNATS_TEST_LOOP", "$RINGNATS_TEST_LOOP"),
    ];
    if run_in_child_with_env(
        "config::tests::environment_variables_are_parsed_as_values",
        &vars,
    ) {
        return;
    }
    let map = parse("t: $RINGNATS_TEST_TOK\ns: $RINGNATS_TEST_SIZE\nm: $RINGNATS_TEST_MAP");
    assert_eq!(string(&map, "t"), "envtok");
    assert_eq!(int(&map, "s"), 1000);
    assert_eq!(int(map.get("m").unwrap().as_map().unwrap(), "a"), 1);
    assert_eq!(map.get("m").unwrap().pos.line, 3);
    let err = parse_err("\nserver_name: $RINGNATS_TEST_BAD");
    assert!(
        err.starts_with(
            "server.conf:2: variable reference for 'RINGNATS_TEST_BAD' on line 2 could not be \
             parsed: "
        ),
        "{err}"
    );
    assert_eq!(load("max_payload: $RINGNATS_TEST_SIZE").max_payload, 1000);
    // The spec vector: `authorization { token: $MY_TOKEN }` with the token from the env.
    let map = parse("authorization { token: $RINGNATS_TEST_TOK }");
    assert_eq!(
        string(map.get("authorization").unwrap().as_map().unwrap(), "token"),
        "envtok"
    );
    // A self-referencing variable is an error, not a stack overflow.
    let err = parse_err("a: $RINGNATS_TEST_LOOP");
    assert!(err.contains("could not be parsed"), "{err}");
    // A config variable shadows the environment.
    assert_eq!(
        string(
            &parse("RINGNATS_TEST_TOK: mine\nt: $RINGNATS_TEST_TOK"),
            "t"
        ),
        "mine"
    );
}

#[test]
fn bcrypt_2a_is_literal_and_2b_is_a_variable() {
    let hash = "$2a$11$1RnkH9O8BLx1W3jb/ph/BOJfeHLa2U5ucJBVQYRoR3Dv6gX53y7ju";
    let map = parse(&format!("authorization {{ user: a, password: {hash} }}"));
    let auth = map.get("authorization").unwrap().as_map().unwrap();
    assert_eq!(string(auth, "password"), hash);
    let err = parse_err(
        "authorization { user: a, password: \
         $2b$11$1RnkH9O8BLx1W3jb/ph/BOJfeHLa2U5ucJBVQYRoR3Dv6gX53y7ju }",
    );
    assert_eq!(
        err,
        "server.conf:1: variable reference for \
         '2b$11$1RnkH9O8BLx1W3jb/ph/BOJfeHLa2U5ucJBVQYRoR3Dv6gX53y7ju' on line 1 can not be found"
    );
    let quoted = parse("p: \"$2b$11$abc\"");
    assert_eq!(string(&quoted, "p"), "$2b$11$abc");
}

// ---- includes ----

#[test]
fn include_is_relative_to_the_including_file() {
    let dir = temp_dir("include");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/inc.conf"),
        "port: 4333\ninclude ../limits.conf\n",
    )
    .unwrap();
    std::fs::write(dir.join("limits.conf"), "max_payload: 1k\n").unwrap();
    std::fs::write(dir.join("quoted.conf"), "server_name: q\n").unwrap();
    let main = dir.join("main.conf");
    std::fs::write(
        &main,
        "include ./sub/inc.conf\nINCLUDE \"quoted.conf\"\ndebug: true\n",
    )
    .unwrap();
    let opts = load_file(&main).unwrap();
    assert_eq!(opts.port, 4333);
    assert_eq!(opts.max_payload, 1000);
    assert_eq!(opts.server_name.as_deref(), Some("q"));
    assert!(opts.debug);
    let map = parse_file(&main).unwrap();
    let port = map.entry("port").unwrap();
    assert_eq!(port.pos.file.as_ref(), dir.join("./sub/inc.conf").as_path());
    assert_eq!(port.pos.line, 1);
}

#[test]
fn include_inside_a_map_and_errors_in_included_files() {
    let dir = temp_dir("include-map");
    std::fs::write(dir.join("c.conf"), "port: 6222\n").unwrap();
    std::fs::write(dir.join("bad.conf"), "\nfoo_bar: 1\n").unwrap();
    std::fs::write(dir.join("a.conf"), "cluster { include c.conf }\n").unwrap();
    std::fs::write(dir.join("b.conf"), "include bad.conf\n").unwrap();
    let map = parse_file(&dir.join("a.conf")).unwrap();
    assert_eq!(
        int(map.get("cluster").unwrap().as_map().unwrap(), "port"),
        6222
    );
    let err = load_file(&dir.join("b.conf")).unwrap_err().to_string();
    assert!(
        err.ends_with("bad.conf:2: unknown field \"foo_bar\""),
        "{err}"
    );
}

#[test]
fn missing_and_cyclic_includes() {
    let dir = temp_dir("include-missing");
    std::fs::write(dir.join("m.conf"), "\ninclude nothere.conf\n").unwrap();
    let err = load_file(&dir.join("m.conf")).unwrap_err().to_string();
    assert!(
        err.contains("m.conf:2: error parsing include file 'nothere.conf', "),
        "{err}"
    );
    std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
    let err = load_file(&dir.join("loop.conf")).unwrap_err().to_string();
    assert!(err.contains("include cycle"), "{err}");
    let err = load_file(&dir.join("absent.conf")).unwrap_err().to_string();
    assert!(err.contains("absent.conf: "), "{err}");
}

// ---- model ----

#[test]
fn defaults() {
    let opts = load("");
    assert_eq!(opts.host, "0.0.0.0");
    assert_eq!(opts.port, 4222);
    assert_eq!(opts.max_payload, 1 << 20);
    assert_eq!(opts.max_pending, 64 << 20);
    assert_eq!(opts.max_control_line, 4096);
    assert_eq!(opts.max_connections, 65_536);
    assert_eq!(opts.max_subscriptions, 0);
    assert_eq!(opts.ping_interval, Duration::from_secs(120));
    assert_eq!(opts.ping_max, 2);
    assert_eq!(opts.write_deadline, Duration::from_secs(10));
    assert!(opts.logtime);
    assert!(!opts.debug && !opts.trace);
    assert!(opts.warnings.is_empty());
    assert_eq!(opts.config_file.as_deref(), Some(origin()));
}

#[test]
fn every_supported_key() {
    let opts = load(
        "host: 127.0.0.1\nport: 5222\nserver_name: srv1\nmax_payload: 2MB\nmax_pending: 32MB\n\
         max_control_line: 1k\nmax_connections: 10\nmax_subscriptions: 20\n\
         ping_interval: \"30s\"\nping_max: 5\nwrite_deadline: \"1.5s\"\ndebug: yes\ntrace: on\n\
         logtime: false\nlogfile: /var/log/r.log\n",
    );
    assert_eq!(opts.host, "127.0.0.1");
    assert_eq!(opts.port, 5222);
    assert_eq!(opts.server_name.as_deref(), Some("srv1"));
    assert_eq!(opts.max_payload, 2 << 20);
    assert_eq!(opts.max_pending, 32 << 20);
    assert_eq!(opts.max_control_line, 1000);
    assert_eq!(opts.max_connections, 10);
    assert_eq!(opts.max_subscriptions, 20);
    assert_eq!(opts.ping_interval, Duration::from_secs(30));
    assert_eq!(opts.ping_max, 5);
    assert_eq!(opts.write_deadline, Duration::from_millis(1500));
    assert!(opts.debug && opts.trace && !opts.logtime);
    assert_eq!(opts.logfile.as_deref(), Some(Path::new("/var/log/r.log")));
}

#[test]
fn aliases() {
    let opts =
        load("net: 10.0.0.1\nmax_conn: 3\nmax_subs: 4\nlog_file: x.log\ntrace_verbose: true");
    assert_eq!(opts.host, "10.0.0.1");
    assert_eq!(opts.max_connections, 3);
    assert_eq!(opts.max_subscriptions, 4);
    assert_eq!(opts.logfile.as_deref(), Some(Path::new("x.log")));
    assert!(opts.trace && opts.trace_verbose);
}

#[test]
fn listen_forms() {
    let opts = load("listen: 127.0.0.1:4333");
    assert_eq!((opts.host.as_str(), opts.port), ("127.0.0.1", 4333));
    let opts = load("listen: localhost:4334");
    assert_eq!((opts.host.as_str(), opts.port), ("localhost", 4334));
    let opts = load("listen: 4335");
    assert_eq!((opts.host.as_str(), opts.port), ("0.0.0.0", 4335));
    let opts = load("listen: \":4336\"");
    assert_eq!((opts.host.as_str(), opts.port), ("0.0.0.0", 4336));
    let opts = load("listen: \"[::1]:4337\"");
    assert_eq!((opts.host.as_str(), opts.port), ("::1", 4337));
    assert_eq!(
        load_err("listen: \"a:b:c\""),
        "server.conf:1: listen: could not parse address string \"a:b:c\""
    );
    assert!(load_err("listen: zzzq").contains("could not parse address string \"zzzq\""));
}

#[test]
fn ports() {
    assert_eq!(load("port: -1").port, -1);
    assert_eq!(load("port: -1").listen_port(), 0);
    assert_eq!(load("port: 0").port, 4222, "nats-server setBaselineOptions");
    assert!(load_err("port: 70000").contains("port: invalid port 70000"));
    assert!(load_err("port: -2").contains("invalid port -2"));
}

#[test]
fn spec_vectors_valid() {
    assert_eq!(load("port 4222").port, 4222);
    assert_eq!(load("max_payload: 512k").max_payload, 512_000);
    let dir = temp_dir("vector-include");
    std::fs::write(dir.join("inc.conf"), "port: 4999\n").unwrap();
    std::fs::write(dir.join("main.conf"), "include ./inc.conf\n").unwrap();
    assert_eq!(load_file(&dir.join("main.conf")).unwrap().port, 4999);
}

#[test]
fn spec_vectors_invalid() {
    assert!(
        load_err("ping_interval: \"30x\"")
            .contains("server.conf:1: ping_interval: time: unknown unit \"x\" in duration \"30x\"")
    );
    assert_eq!(
        load_err("foo_bar: 1"),
        "server.conf:1: unknown field \"foo_bar\""
    );
    assert_eq!(
        load_err("port: 4222\nfoo_bar: 1"),
        "server.conf:2: unknown field \"foo_bar\""
    );
    assert_eq!(
        load_err("port: 4222\n\nmax_payload: 70MB"),
        "server.conf:3: max_payload: max_payload (73400320) cannot be higher than max_pending \
         (67108864)"
    );
}

#[test]
fn security_sections_are_kept_raw_and_unsupported_ones_are_refused() {
    let text = "authorization {\n  user: a\n  password: $2a$11$abc\n}\n";
    let map = parse_str(text, origin()).unwrap();
    let opts = options_from_map(&map, origin()).unwrap();
    let auth = opts
        .auth_section("authorization")
        .unwrap()
        .as_map()
        .unwrap();
    assert_eq!(string(auth, "password"), "$2a$11$abc");
    assert!(
        check_supported(&opts).is_ok(),
        "authorization is implemented"
    );
    for key in crate::config::model::UNSUPPORTED_SECURITY_KEYS {
        let err = load_err(&format!("{key}: x"));
        assert!(
            err.contains(&format!("\"{key}\" is not supported yet")),
            "{err}"
        );
    }
    // Operator mode is kept raw for `auth::operator`, which checks it.
    let opts = load("trusted_keys: [x]\nresolver: MEMORY");
    assert!(opts.auth_section("trusted_keys").is_some());
    assert!(opts.auth_section("resolver").is_some());
}

#[test]
fn unimplemented_subsystems_are_ignored_with_a_warning() {
    let opts = load("port: 1\ncluster { port: 6222 }\nprof_port: 8222\njetstream: enabled");
    assert_eq!(opts.warnings.len(), 3);
    assert_eq!(
        opts.warnings[0],
        "server.conf:2: \"cluster\" is not supported by ringnats and is ignored"
    );
    assert!(opts.warnings[1].contains("\"prof_port\""));
    for key in IGNORED_KEYS {
        let opts = load(&format!("{key}: 1"));
        assert_eq!(opts.warnings.len(), 1, "{key}");
    }
}

#[test]
fn monitoring_ports_and_base_path_are_read() {
    let opts = load("http_port: 8222\nhttp_base_path: /nats");
    assert_eq!(opts.http_port, 8222);
    assert_eq!(opts.http_base_path, "/nats");
    assert!(opts.warnings.is_empty(), "{:?}", opts.warnings);
    assert_eq!(load("monitor_port: 8223").http_port, 8223);
    let opts = load("http: \"127.0.0.1:8224\"");
    assert_eq!(
        (opts.http_host.as_deref(), opts.http_port),
        (Some("127.0.0.1"), 8224)
    );
    assert_eq!(load("http: 8225").http_port, 8225);
    assert_eq!(load("https_port: -1").https_port, -1);
    assert!(load_err("http_port: 70000").contains("invalid port"));
}

#[test]
fn keys_nats_server_does_not_know_are_fatal() {
    for key in [
        "ports_file",
        "max_closed_clients",
        "tls_timeout",
        "tls_cert",
        "connection_deadline",
    ] {
        assert_eq!(
            load_err(&format!("{key}: 1")),
            format!("server.conf:1: unknown field \"{key}\"")
        );
    }
}

#[test]
fn used_variables_are_not_unknown_fields() {
    assert_eq!(load("X: 4333\nport: $X").port, 4333);
    assert_eq!(
        load_err("X: 1\nport: 4222"),
        "server.conf:1: unknown field \"X\""
    );
    assert_eq!(load("PORT: 4333\nPort: $PORT").port, 4333);
}

#[test]
fn type_errors_name_the_key() {
    assert_eq!(
        load_err("port: \"abc\""),
        "server.conf:1: port: expected an integer, got string"
    );
    assert!(load_err("debug: maybe").contains("debug: expected a boolean, got string"));
    assert!(load_err("max_payload: 1.5").contains("max_payload: expected an integer, got float"));
    assert!(load_err("server_name: 2006-01-02T15:04:05Z").contains("got datetime"));
    assert!(load_err("max_connections: \"5\"").contains("max_connections: expected an integer"));
    assert!(load_err("max_pending: -1").contains("must not be negative"));
    assert!(load_err("ping_max: -3").contains("ping_max"));
}

#[test]
fn size_limits() {
    assert_eq!(
        load_err("max_payload: 3G"),
        "server.conf:1: max_payload: max_payload value is too big"
    );
    assert!(load_err("max_control_line: 5G").contains("max_control_line value is too big"));
    assert_eq!(load("max_control_line: 2G").max_control_line, 2_000_000_000);
    assert!(load_err("max_pending: 100").contains("max_payload (1048576) cannot be higher"));
}

#[test]
fn large_payload_warns() {
    let opts = load("max_payload: 9MB");
    assert_eq!(opts.max_payload, 9 << 20);
    assert_eq!(opts.warnings.len(), 1);
    assert!(opts.warnings[0].contains("Maximum payloads over 8.00 MB"));
    assert!(load("max_payload: 8MB").warnings.is_empty());
}

#[test]
fn durations_and_integer_seconds() {
    assert_eq!(
        load("ping_interval: \"1h30m\"").ping_interval,
        Duration::from_secs(5400)
    );
    assert_eq!(
        load("write_deadline: \"500ms\"").write_deadline,
        Duration::from_millis(500)
    );
    assert_eq!(
        load("write_deadline: \"2µs\"").write_deadline,
        Duration::from_micros(2)
    );
    let opts = load("ping_interval: 30");
    assert_eq!(opts.ping_interval, Duration::from_secs(30));
    assert_eq!(
        opts.warnings,
        vec![
            "server.conf:1: invalid use of field \"ping_interval\": ping_interval should be \
             converted to a duration"
                .to_string()
        ]
    );
    assert_eq!(
        load("write_deadline: 3").write_deadline,
        Duration::from_secs(3)
    );
    assert!(load_err("ping_interval: 1.5").contains("ping_interval: expected a duration"));
    assert!(load_err("write_deadline: zzzq").contains("time: invalid duration \"zzzq\""));
}

#[test]
fn server_name_rules() {
    assert!(load_err("server_name: \"a b\"").contains("server name cannot contain spaces"));
    assert_eq!(load("server_name: 'n1'").server_name.as_deref(), Some("n1"));
}

// ---- robustness ----

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse_err(&deep).contains("nesting deeper than"));
    let deep_maps = format!("a: {}", "{b: ".repeat(10_000));
    assert!(parse_err(&deep_maps).contains("nesting deeper than"));
}

#[test]
fn fuzz_load_never_panics_on_seeds_and_mutations() {
    let seeds: &[&str] = &[
        "port: 4222",
        "listen: 127.0.0.1:4222\nmax_payload: 1MB",
        "a { b: [1, 2, {c: $X}] }\nX: 1",
        "s: (\nblock\n)\n",
        "authorization { users: [ {user: a, password: $2a$11$x} ] }",
        "t: 2006-01-02T15:04:05Z\nu: \"\\u00e9\\x41\"",
        "include x.conf",
        "ping_interval: \"1h\"; write_deadline: 5",
    ];
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let alphabet = b"{}[]()\"'$:=;,#/\\\n \t-.0123456789kmgbKMGBaxyzTZ\xc3\xa9";
    for seed in seeds {
        fuzz_load(seed.as_bytes());
        for _ in 0..300 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..(next() % 6 + 1) {
                let at = (next() as usize) % (bytes.len() + 1);
                match next() % 3 {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => {
                        bytes[at] = alphabet[(next() as usize) % alphabet.len()];
                    }
                    _ => bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            fuzz_load(&bytes);
        }
    }
}

proptest::proptest! {
    #[test]
    fn fuzz_load_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(0u8..=255, 0..200)) {
        fuzz_load(&data);
    }

    #[test]
    fn fuzz_load_never_panics_on_config_like_text(text in "[a-z$:={}\\[\\]()\"' \n,;#0-9.kKmMbB-]{0,120}") {
        fuzz_load(text.as_bytes());
    }
}

#[test]
fn pid_file_and_lame_duck_keys_are_applied() {
    let opts = load("pid_file: \"/run/x.pid\"");
    assert_eq!(opts.pid_file.as_deref(), Some(Path::new("/run/x.pid")));
    assert_eq!(load("pidfile: y").pid_file.as_deref(), Some(Path::new("y")));
    let opts = load("port: 1");
    assert_eq!(opts.lame_duck_duration, Duration::from_secs(120));
    assert_eq!(opts.lame_duck_grace_period, Duration::from_secs(10));
    let opts = load("lame_duck_duration: \"45s\"\nlame_duck_grace_period: \"1s\"");
    assert_eq!(opts.lame_duck_duration, Duration::from_secs(45));
    assert_eq!(opts.lame_duck_grace_period, Duration::from_secs(1));
    assert!(opts.warnings.is_empty(), "{:?}", opts.warnings);
}

#[test]
fn lame_duck_limits_are_nats_servers() {
    let err = load_err("lame_duck_duration: \"20s\"");
    assert!(
        err.contains("invalid lame_duck_duration of 20s, minimum is 30 seconds"),
        "{err}"
    );
    let err = load_err("lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"30s\"");
    assert!(
        err.contains(
            "lame duck grace period (30s) should be strictly lower than lame duck duration (30s)"
        ),
        "{err}"
    );
}

#[test]
fn system_account_is_kept_for_auth_without_a_warning() {
    let opts = load("accounts { SYS { users [{user: s, password: s}] } }\nsystem_account: SYS");
    assert!(opts.warnings.is_empty(), "{:?}", opts.warnings);
    assert!(opts.auth_section("system_account").is_some());
}
