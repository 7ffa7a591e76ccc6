//! Property tests for UIN and VID: every generated id validates against an independent
//! implementation of MOSIP's rules (MOSIP's own regexes, with back-references), and Verhoeff
//! catches every single-digit error and adjacent transposition.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tessera_core::{IdRule, IdRules, Uin, Vid, verhoeff};
use tessera_testkit::mosip;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn generated_uins_pass_mosip(seed in any::<u64>()) {
        let uin = Uin::generate(&IdRules::uin_default(), &mut StdRng::seed_from_u64(seed)).unwrap();
        prop_assert!(mosip::uin_ok(uin.expose()), "{}", uin.expose());
        prop_assert_eq!(Uin::parse(uin.expose()), Ok(uin));
    }

    #[test]
    fn generated_vids_pass_mosip(seed in any::<u64>()) {
        let vid = Vid::generate(&IdRules::vid_default(), &mut StdRng::seed_from_u64(seed)).unwrap();
        prop_assert!(mosip::vid_ok(vid.expose()), "{}", vid.expose());
        prop_assert_eq!(Vid::parse(vid.expose()), Ok(vid));
    }

    /// Our validator and MOSIP's regexes agree on arbitrary 10-digit strings, both ways.
    #[test]
    fn validator_agrees_with_mosip(s in "[2-9][0-9]{9}") {
        prop_assert_eq!(Uin::parse(&s).is_ok(), mosip::uin_ok(&s), "{}", s);
    }

    #[test]
    fn vid_validator_agrees_with_mosip(s in "[2-9][0-9]{15}") {
        prop_assert_eq!(Vid::parse(&s).is_ok(), mosip::vid_ok(&s), "{}", s);
    }

    #[test]
    fn verhoeff_catches_every_single_digit_error(payload in prop::collection::vec(0u8..10, 1..20), pos in any::<prop::sample::Index>(), delta in 1u8..10) {
        let mut d = payload.clone();
        d.push(verhoeff::check_digit(&payload));
        prop_assert!(verhoeff::is_valid(&d));
        let i = pos.index(d.len());
        d[i] = (d[i] + delta) % 10;
        prop_assert!(!verhoeff::is_valid(&d));
    }

    #[test]
    fn verhoeff_catches_every_adjacent_transposition(payload in prop::collection::vec(0u8..10, 2..20), pos in any::<prop::sample::Index>(), delta in 1u8..10) {
        // Force the two swapped digits to differ (swapping equal digits is no error at all).
        let mut p = payload.clone();
        let i = pos.index(p.len() - 1);
        p[i + 1] = (p[i] + delta) % 10;
        let mut d = p.clone();
        d.push(verhoeff::check_digit(&p));
        d.swap(i, i + 1);
        prop_assert!(!verhoeff::is_valid(&d));
    }

    /// Parsing never panics on arbitrary text and never accepts a non-digit.
    #[test]
    fn parse_total(s in "\\PC{0,40}") {
        if let Ok(u) = Uin::parse(&s) {
            prop_assert!(u.expose().bytes().all(|b| b.is_ascii_digit()));
        }
        let _ = tessera_core::Rid::parse(&s);
    }
}

/// Exhaustive over every payload position and digit for one length: no single error slips by.
#[test]
fn verhoeff_exhaustive_single_errors_for_uin_length() {
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..1000 {
        let uin = Uin::generate(&IdRules::uin_default(), &mut rng).unwrap();
        let d: Vec<u8> = uin.expose().bytes().map(|b| b - b'0').collect();
        for i in 0..10 {
            for x in 0..10 {
                if x != d[i] {
                    let mut e = d.clone();
                    e[i] = x;
                    assert!(!verhoeff::is_valid(&e));
                }
            }
        }
    }
}

#[test]
fn acceptance_examples_name_the_rule() {
    assert_eq!(Uin::parse("1234567890").unwrap_err(), IdRule::StartsWith('1'));
    assert_eq!(Uin::parse("2345678901").unwrap_err().code(), "sequence");
    assert_eq!(Uin::parse("2945294529").unwrap_err().code(), "repeating_block");
    assert_eq!(Uin::parse("29452945").unwrap_err().code(), "length");
}
