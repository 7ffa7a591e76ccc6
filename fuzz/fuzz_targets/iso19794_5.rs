//! Fuzz target: the ISO/IEC 19794-5 face image parser never panics on any input, and whatever
//! parses is written again by `emit` and parses back to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_biometrics::iso19794::face_image::{emit, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = parse(data) {
        let bytes = emit(&record);
        assert!(bytes.is_ok(), "a parsed record could not be written again: {bytes:?}");
        let again = bytes.and_then(|b| parse(&b));
        assert_eq!(again.as_ref(), Ok(&record), "emit then parse changed the record");
    }
});
