//! Fuzz target `parser`: the client protocol parser must give the same ops and error for every
//! chunking of the input and never panic. The checks live in `ringnats::protocol::fuzz_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringnats::protocol::fuzz_parse(data));
