//! The fuzz seed corpora stay meaningful and the fuzz entry points keep working on them.
//!
//! Checked: every file under `fuzz/seeds/<target>/` is run through the entry point that the
//! cargo-fuzz target of that name wraps (`parser` -> `protocol::fuzz_parse`, `subject` ->
//! `subject::fuzz_parse`, `config` -> `config::fuzz_load`, `callout` ->
//! `auth::callout::fuzz_decode_response`), each corpus has a minimum size, and
//! the seeds still reach what they are there for: some parser seeds yield ops and some end in
//! each kind of protocol error, some subject seeds insert valid filters that a later line
//! matches, and some config seeds load while others are refused. Guards the fuzz targets
//! (`fuzz/`, built with nightly only) against a corpus that rots into inputs that stop at the
//! first byte, and runs their checks on every `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

use ringnats::protocol::{Parser, ParserLimits, ProtocolError};
use ringnats::subject::{is_valid_filter, naive_match};

/// Every file of `fuzz/seeds/<target>/`, sorted, with its name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable seed directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name.unwrap_or_default(), bytes)
        })
        .collect()
}

/// Ops parsed from `data` in one read with headers on, and the error that ended it, if any.
fn parse_all(data: &[u8]) -> (usize, Option<ProtocolError>) {
    let mut parser = Parser::new(ParserLimits::default());
    parser.set_headers(true);
    let mut rest = data;
    let mut ops = 0;
    loop {
        match parser.parse(rest) {
            Ok(Some((_op, consumed))) => {
                ops += 1;
                rest = &rest[consumed..];
            }
            Ok(None) => return (ops, None),
            Err(e) => return (ops, Some(e)),
        }
    }
}

#[test]
fn parser_seeds_pass_the_split_invariance_check() {
    let seeds = seeds("parser");
    assert!(seeds.len() >= 8, "only {} parser seeds", seeds.len());
    for (name, data) in &seeds {
        println!("parser seed {name}");
        ringnats::protocol::fuzz_parse(data);
    }
}

#[test]
fn parser_seeds_cover_ops_and_each_error_kind() {
    let runs: Vec<(String, usize, Option<ProtocolError>)> = seeds("parser")
        .into_iter()
        .map(|(name, data)| {
            let (ops, error) = parse_all(&data);
            (name, ops, error)
        })
        .collect();
    let clean_with_ops = runs
        .iter()
        .filter(|(_, ops, e)| *ops >= 3 && e.is_none())
        .count();
    assert!(clean_with_ops >= 3, "too few seeds parse cleanly: {runs:?}");
    for wanted in [
        ProtocolError::UnknownOp,
        ProtocolError::ControlLineTooLong,
        ProtocolError::PayloadTooLarge,
        ProtocolError::BadArgs,
        ProtocolError::BadPayloadTerminator,
    ] {
        assert!(
            runs.iter().any(|(_, _, e)| *e == Some(wanted)),
            "no parser seed ends in {wanted:?}: {runs:?}"
        );
    }
}

#[test]
fn subject_seeds_pass_the_naive_matcher_check() {
    let seeds = seeds("subject");
    assert!(seeds.len() >= 4, "only {} subject seeds", seeds.len());
    for (name, data) in &seeds {
        println!("subject seed {name}");
        ringnats::subject::fuzz_parse(data);
    }
}

#[test]
fn subject_seeds_insert_filters_that_later_lines_match() {
    // The fuzz line format: `<op><subject>[ <queue>]`, ops i..=l insert, anything but r..=u
    // matches. A seed is useful when a match line hits a filter inserted before it.
    let mut useful = 0;
    for (name, data) in seeds("subject") {
        let mut inserted: Vec<&[u8]> = Vec::new();
        let mut hits = 0;
        for line in data.split(|&b| b == b'\n') {
            let Some((&op, rest)) = line.split_first() else {
                continue;
            };
            let subject = rest.split(|&b| b == b' ').next().unwrap_or_default();
            match op {
                b'i'..=b'l' if is_valid_filter(subject) => inserted.push(subject),
                b'r'..=b'u' => {}
                _ => hits += inserted.iter().filter(|f| naive_match(f, subject)).count(),
            }
        }
        println!(
            "subject seed {name}: {} inserts, {hits} hits",
            inserted.len()
        );
        if hits > 0 {
            useful += 1;
        }
    }
    assert!(useful >= 4, "only {useful} subject seeds match anything");
}

#[test]
fn config_seeds_load_or_are_refused_without_panicking() {
    let seeds = seeds("config");
    assert!(seeds.len() >= 6, "only {} config seeds", seeds.len());
    let origin = Path::new("seed.conf");
    let mut loaded = 0;
    let mut refused = 0;
    for (name, data) in &seeds {
        ringnats::config::fuzz_load(data);
        let text = std::str::from_utf8(data).unwrap_or_else(|e| panic!("{name}: {e}"));
        match ringnats::config::parse_str(text, origin)
            .and_then(|map| ringnats::config::options_from_map(&map, origin))
        {
            Ok(_) => loaded += 1,
            Err(e) => {
                println!("config seed {name}: {e}");
                refused += 1;
            }
        }
    }
    assert!(loaded >= 4, "only {loaded} config seeds load");
    assert!(refused >= 2, "only {refused} config seeds are refused");
}

#[test]
fn jwt_seeds_decode_or_are_refused_without_panicking() {
    let seeds = seeds("jwt");
    assert!(seeds.len() >= 6, "only {} jwt seeds", seeds.len());
    let (mut accepted, mut refused) = (0, 0);
    for (name, data) in &seeds {
        ringnats::auth::jwt::fuzz_decode(data);
        match ringnats::auth::jwt::decode(&String::from_utf8_lossy(data)) {
            Ok(_) => accepted += 1,
            Err(e) => {
                println!("jwt seed {name}: {e}");
                refused += 1;
            }
        }
    }
    assert!(accepted >= 4, "only {accepted} jwt seeds decode");
    assert!(refused >= 2, "only {refused} jwt seeds are refused");
}

#[test]
fn callout_seeds_reach_every_response_check() {
    use ringnats::auth::callout::{CalloutError, fuzz_decode_response};
    let seeds = seeds("callout");
    assert!(seeds.len() >= 8, "only {} callout seeds", seeds.len());
    let mut reached = std::collections::BTreeSet::new();
    for (name, data) in &seeds {
        // As the claims of a signed token: past the signature, into the claim checks.
        let verdict = fuzz_decode_response(data);
        println!("callout seed {name}: {verdict:?}");
        let kind = match verdict {
            Ok(_) => "accepted",
            Err(CalloutError::Response(_)) => "undecodable",
            Err(CalloutError::ResponseSubject) => "subject",
            Err(CalloutError::ServiceError) => "service error",
            Err(CalloutError::ResponseClaims) => "claims",
            Err(CalloutError::UserJwt(_)) => "user jwt",
            Err(_) => "other",
        };
        reached.insert(kind);
    }
    for kind in [
        "accepted",
        "undecodable",
        "subject",
        "service error",
        "claims",
        "user jwt",
    ] {
        assert!(
            reached.contains(kind),
            "no callout seed ends as {kind}: {reached:?}"
        );
    }
}
