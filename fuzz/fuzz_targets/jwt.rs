//! Fuzz target `jwt`: any bytes as a NATS JWT, as a `.creds` file and as the claims of a token
//! must end in `Ok` or a `JwtError`, never a panic (`ringnats::auth::jwt::fuzz_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringnats::auth::jwt::fuzz_decode(data));
