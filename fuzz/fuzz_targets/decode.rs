#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../targets_common.rs");

fuzz_target!(|data: &[u8]| {
    fuzz_decode(data);
});
