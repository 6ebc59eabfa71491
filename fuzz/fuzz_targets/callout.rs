//! Fuzz target `callout`: any bytes as an auth callout response (plain, sealed, and as the
//! claims of a token signed by the expected issuer) end in a verdict, never a panic
//! (`ringnats::auth::callout::fuzz_decode_response`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ringnats::auth::callout::fuzz_decode_response(data);
});
