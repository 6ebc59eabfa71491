//! Fuzz target `subject`: inserts, removes and matches against the subject index, each match
//! checked against a naive matcher. The checks live in `ringnats::subject::fuzz_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringnats::subject::fuzz_parse(data));
