//! Fuzz target: the CBEFF XML parser never panics on any input, whatever parses is written again
//! by `emit` and parses back to the same records, and each record's BDB goes through the ISO/IEC
//! 19794 parser too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_biometrics::cbeff::{emit, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(birs) = parse(data) {
        for bir in &birs {
            let _ = bir.record();
        }
        let again = parse(emit(&birs).as_bytes());
        assert_eq!(again.as_ref(), Ok(&birs), "emit then parse changed the records");
    }
});
