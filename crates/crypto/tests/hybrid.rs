//! MOSIP hybrid encryption through the software keystore: the scenarios of `common` (shared
//! with the PKCS#11 keystore), and its decryption rate.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;
use tessera_crypto::{MasterKey, SoftwareKeystore};

fn keystore() -> (tempfile::TempDir, SoftwareKeystore) {
    let dir = tempfile::tempdir().unwrap();
    let ks = SoftwareKeystore::create(&dir.path().join("keys"), MasterKey::generate().unwrap(), None, 1_767_225_600_000).unwrap();
    (dir, ks)
}

#[test]
fn round_trip_rotation_and_rejections() {
    let (_dir, ks) = keystore();
    common::round_trip_rotation_and_rejections(&ks, 1_767_225_700_000);
}

#[test]
fn pre_1_2_layout_decrypts() {
    let (_dir, ks) = keystore();
    common::pre_1_2_layout_decrypts(&ks);
}

/// Not an assertion: prints the decryption rate (`cargo test --release -- --nocapture`).
#[test]
fn throughput_report() {
    let (_dir, ks) = keystore();
    let small = common::decrypts_per_second(&ks, 1024, Duration::from_secs(2));
    let large = common::decrypts_per_second(&ks, 1024 * 1024, Duration::from_secs(2));
    eprintln!("software keystore hybrid_decrypt, 1 thread: {small:.0}/s (1 KiB payload), {large:.0}/s (1 MiB payload)");
}
