//! Fuzz target `config`: any bytes as a nats-server configuration file, parsed and turned into
//! options, must end in `Ok` or an error, never a panic (`ringnats::config::fuzz_load`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringnats::config::fuzz_load(data));
