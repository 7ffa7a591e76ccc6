//! Tessera's demographic de-duplication: normalization per language, transliteration and
//! phonetic keys of names, blocking, Fellegi–Sunter scoring with per-field evidence, and
//! synthetic populations with ground truth. Pure computation: no I/O, no clock; randomness is
//! passed in; threads only through `std::thread::scope`.
//!
//! ```
//! use tessera_demographics::{Matcher, Record, Decision};
//! let m = Matcher::default();
//! let a = Record::from_json("a", &serde_json::json!({"fullName": "Mohammed Al-Hassan", "dateOfBirth": "1984-03-07", "phone": "+212 612 345 678"})).unwrap();
//! let b = Record::from_json("b", &serde_json::json!({"fullName": "Muhammad Alhassan", "dateOfBirth": "1984-07-03", "phone": "0612345678"})).unwrap();
//! let c = m.compare(&a, &b);
//! assert_eq!(c.decision, Decision::Match, "{}", c.evidence_compact());
//! ```

pub mod blocking;
pub mod compare;
pub mod config;
pub mod normalize;
pub mod record;
pub mod synth;

pub use blocking::{Dedupe, DedupeStats, Pair};
pub use compare::{Comparison, Decision, FieldEvidence, Method, Prepared, Reason};
pub use config::{Config, Field, FieldModel, FieldModels, Level, Limits};
pub use record::{Date, Gender, Record, RecordError, Text};

use normalize::Rules;
use rphonetic::DoubleMetaphone;

/// Errors of the de-duplicator. Messages carry no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid demographics configuration: {0}")]
    InvalidConfig(String),
    #[error("blocking would compare {pairs} pairs, more than limits.pairs_compared_max = {max}")]
    TooManyPairs { pairs: u64, max: u64 },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A validated configuration with its rules compiled: the entry point of every operation.
#[derive(Debug, Clone)]
pub struct Matcher {
    config: Config,
    rules: Rules,
    weights: compare::Weights,
    metaphone: DoubleMetaphone,
}

impl Default for Matcher {
    fn default() -> Matcher {
        // The default configuration is valid (tested); `new` would only repeat the check.
        let config = Config::default();
        let rules = Rules::compile(&config).unwrap_or_else(|_| unreachable!("the default configuration is valid"));
        let weights = compare::Weights::new(&config.fields);
        Matcher { config, rules, weights, metaphone: DoubleMetaphone::new(Some(normalize::METAPHONE_CODE_LEN)) }
    }
}

fn check_config(c: &Config) -> Result<(), Error> {
    let bad = |s: &str| Err(Error::InvalidConfig(s.to_owned()));
    if !c.match_min.is_finite() || !c.possible_min.is_finite() || c.possible_min > c.match_min {
        return bad("possible_min and match_min must be numbers with possible_min ≤ match_min");
    }
    for field in Field::ALL {
        let levels = &c.fields.get(field).levels;
        let name = field.as_str();
        if levels.is_empty() || levels.last().is_some_and(|l| l.similarity_min != 0.0) {
            return Err(Error::InvalidConfig(format!("fields.{name}: levels must end with similarity_min = 0")));
        }
        if levels.windows(2).any(|w| w[0].similarity_min <= w[1].similarity_min) {
            return Err(Error::InvalidConfig(format!("fields.{name}: similarity_min must decrease from one level to the next")));
        }
        if levels.iter().any(|l| !(l.m > 0.0 && l.m <= 1.0 && l.u > 0.0 && l.u <= 1.0 && l.similarity_min <= 1.0)) {
            return Err(Error::InvalidConfig(format!("fields.{name}: m and u must be in (0, 1], similarity_min in [0, 1]")));
        }
    }
    let l = &c.limits;
    if l.block_size_max < 2 || l.candidates_max == 0 || l.name_tokens_max == 0 || l.blocking_keys_max == 0 || l.variants_max == 0 {
        return bad("limits: block_size_max ≥ 2, and candidates_max, name_tokens_max, blocking_keys_max, variants_max ≥ 1");
    }
    Ok(())
}

impl Matcher {
    /// Validates the configuration and compiles its rules.
    pub fn new(config: Config) -> Result<Matcher, Error> {
        check_config(&config)?;
        let rules = Rules::compile(&config)?;
        let weights = compare::Weights::new(&config.fields);
        Ok(Matcher { config, rules, weights, metaphone: DoubleMetaphone::new(Some(normalize::METAPHONE_CODE_LEN)) })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A name normalized in its own script: NFKD, diacritics stripped, case folded, punctuation
    /// to spaces (apostrophes deleted), spaces collapsed, titles dropped, replacement rules
    /// applied, particles glued to the next word. Idempotent.
    pub fn normalize(&self, language: &str, text: &str) -> String {
        self.rules.name_tokens(language, text).join(" ")
    }

    /// An address normalized the same way, with the address replacement rules (no titles or
    /// particles).
    pub fn normalize_address(&self, language: &str, text: &str) -> String {
        self.rules.address_tokens(language, text).join(" ")
    }

    /// A name's matching key: normalized, transliterated to ASCII, normalized again. Lossy; for
    /// comparison only.
    pub fn match_key(&self, language: &str, text: &str) -> String {
        self.rules.name_key_tokens(language, text).join(" ")
    }

    /// The phonetic keys of a name: per word, its Double Metaphone codes (primary, alternate when
    /// different) and consonant skeleton, as `dm:CODE` / `sk:skeleton`, sorted and distinct.
    pub fn phonetic_keys(&self, language: &str, text: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for token in self.rules.name_key_tokens(language, text) {
            let (primary, alternate) = normalize::metaphone(&self.metaphone, &token);
            for code in [primary, alternate] {
                if !code.is_empty() {
                    keys.push(format!("dm:{code}"));
                }
            }
            let sk = normalize::skeleton(&token);
            if !sk.is_empty() {
                keys.push(format!("sk:{sk}"));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Computes a record's normalized forms once, for many comparisons.
    pub fn prepare(&self, record: &Record) -> Prepared {
        compare::prepare(&self.rules, &self.metaphone, &self.config, record)
    }

    /// A record's blocking keys: deterministic strings (`ny:` phonetic name word + birth year,
    /// `nd:` phonetic name word + birth month and day, `n:` phonetic name word without a birth
    /// date, `nc:` phonetic first and last name words + city, `d:` birth date, `a:` normalized address,
    /// `p:` last 7 phone digits, `e:` e-mail local part), sorted, at most
    /// `limits.blocking_keys_max`. They depend on the configuration's rules: keys stored by the
    /// registration pipeline (as keyed digests) must be recomputed when the rules change.
    pub fn blocking_keys(&self, record: &Record) -> Vec<String> {
        blocking::keys(&self.prepare(record), self.config.limits.blocking_keys_max)
    }

    /// Scores two records and decides, with every field's evidence.
    pub fn compare(&self, a: &Record, b: &Record) -> Comparison {
        self.compare_prepared(&self.prepare(a), &self.prepare(b))
    }

    pub fn compare_prepared(&self, a: &Prepared, b: &Prepared) -> Comparison {
        compare::compare(&self.config, &self.weights, a, b)
    }

    /// `compare_prepared`, but `None` (without finishing) for a pair that cannot reach
    /// `possible_min`.
    pub fn compare_candidates(&self, a: &Prepared, b: &Prepared) -> Option<Comparison> {
        compare::compare_bounded(&self.config, &self.weights, a, b, Some(self.config.possible_min))
    }

    /// Finds the matches and possible matches among `records`, comparing only pairs that share
    /// a blocking key, on up to `threads` threads (the result does not depend on it).
    pub fn dedupe(&self, records: &[Record], threads: usize) -> Result<Dedupe, Error> {
        let threads = threads.clamp(1, blocking::THREADS_MAX);
        let chunk = records.len().div_ceil(threads).max(1);
        let prepared: Vec<Prepared> = std::thread::scope(|s| {
            let handles: Vec<_> =
                records.chunks(chunk).map(|c| s.spawn(move || c.iter().map(|r| self.prepare(r)).collect::<Vec<_>>())).collect();
            let mut all = Vec::with_capacity(records.len());
            for h in handles {
                all.extend(h.join().map_err(|_| Error::Internal("a preparing thread panicked"))?);
            }
            Ok::<_, Error>(all)
        })?;
        blocking::dedupe(self, &prepared, threads)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;
    use std::collections::HashSet;

    fn record(id: &str, v: serde_json::Value) -> Record {
        Record::from_json(id, &v).unwrap()
    }

    #[test]
    fn the_default_configuration_is_valid_and_fields_are_in_order() {
        assert!(Matcher::new(Config::default()).is_ok());
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }

    #[test]
    fn configuration_is_partial_and_strict() {
        let c: Config = serde_json::from_value(json!({"match_min": 40.0, "limits": {"block_size_max": 50}})).unwrap();
        assert_eq!(c.match_min, 40.0);
        assert_eq!(c.limits.block_size_max, 50);
        assert_eq!(c.limits.candidates_max, config::CANDIDATES_MAX);
        assert_eq!(c.fields, FieldModels::default());
        assert!(serde_json::from_value::<Config>(json!({"match_minimum": 1})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"limits": {"block_size": 1}})).is_err());
        let bad = Config { possible_min: 50.0, ..Config::default() };
        assert!(matches!(Matcher::new(bad), Err(Error::InvalidConfig(_))));
        let mut bad = Config::default();
        bad.fields.name.levels.reverse();
        assert!(Matcher::new(bad).is_err());
    }

    fn person() -> serde_json::Value {
        json!({
            "fullName": [{"language": "eng", "value": "Youssef Al-Hassan"}, {"language": "ara", "value": "يوسف الحسن"}],
            "dateOfBirth": "1984-03-07", "gender": "male",
            "addressLine1": [{"language": "eng", "value": "12 Palm Street"}], "city": [{"language": "eng", "value": "Rabat"}],
            "postalCode": "10072", "phone": "+212 612 345 678", "email": "youssef.alhassan@mail.ma"
        })
    }

    #[test]
    fn a_duplicate_with_realistic_errors_is_a_match_with_evidence() {
        let m = Matcher::default();
        let a = record("a", person());
        let b = record(
            "b",
            json!({
                "fullName": [{"language": "eng", "value": "ALHASSAN Yusuf"}],
                "dateOfBirth": "1984-07-03", "gender": "male",
                "addressLine1": "12 Palm St", "city": "Rabat", "phone": "0612354678"
            }),
        );
        let c = m.compare(&a, &b);
        assert_eq!(c.decision, Decision::Match, "{}", c.evidence_compact());
        let dob = c.evidence.iter().find(|e| e.field == Field::DateOfBirth).unwrap();
        assert_eq!(dob.method, Method::DayMonthSwapped);
        let phone = c.evidence.iter().find(|e| e.field == Field::Phone).unwrap();
        assert_eq!(phone.method, Method::DigitsTransposed);
        let email = c.evidence.iter().find(|e| e.field == Field::Email).unwrap();
        assert_eq!((email.method, email.weight), (Method::Missing, 0.0));
        assert_eq!(c.evidence.len(), Field::ALL.len());
        assert!(c.evidence_compact().starts_with("name:"));
    }

    #[test]
    fn a_namesake_is_not_a_match_on_demographics_alone() {
        let m = Matcher::default();
        let a = record("a", person());
        let namesake = record(
            "n",
            json!({
                "fullName": [{"language": "eng", "value": "Youssef Al-Hassan"}, {"language": "ara", "value": "يوسف الحسن"}],
                "dateOfBirth": "1984-03-07", "gender": "male",
                "addressLine1": "7 Station Road", "city": "Rabat", "postalCode": "10550",
                "phone": "+212 699 111 222", "email": "y.alhassan@gmail.com"
            }),
        );
        let c = m.compare(&a, &namesake);
        assert_ne!(c.decision, Decision::Match, "{}", c.evidence_compact());
        // The same without anything but name and birth date: a possible match at most.
        let bare = record("x", json!({"fullName": "Youssef Al-Hassan", "dateOfBirth": "1984-03-07", "gender": "male"}));
        let c = m.compare(&a, &bare);
        assert_eq!(c.decision, Decision::PossibleMatch, "{}", c.evidence_compact());
        assert_eq!(c.reason, Reason::NotCorroborated);
    }

    #[test]
    fn a_relative_sharing_the_home_is_not_a_candidate() {
        let m = Matcher::default();
        let a = record("a", person());
        let mut v = person();
        v["fullName"] = json!("Fatima Al-Hassan");
        v["dateOfBirth"] = json!("1990-11-23");
        v["gender"] = json!("female");
        v["email"] = json!(null);
        let c = m.compare(&a, &record("b", v));
        assert_eq!(c.decision, Decision::NonMatch, "{}", c.evidence_compact());
    }

    fn any_record() -> impl Strategy<Value = serde_json::Value> {
        let name = prop::sample::select(vec![
            "Mohammed Al-Hassan",
            "Muhammad Alhassan",
            "محمد الحسن",
            "Hélène Lefèvre",
            "Helene Lefebvre",
            "John O'Brien",
            "",
            "Dr. A",
        ]);
        let text = "\\PC{0,30}";
        (
            name,
            text,
            prop::option::of((1900u16..2030, 1u8..13, 1u8..32)),
            prop::option::of("[0-9 +]{0,14}"),
            prop::option::of("[a-z.]{0,8}@[a-z]{1,5}"),
            text,
        )
            .prop_map(|(name, free, dob, phone, email, city)| {
                let mut v = json!({"fullName": [{"language": "eng", "value": name}, {"language": "fra", "value": free}], "city": city});
                if let Some((y, m, d)) = dob {
                    v["dateOfBirth"] = json!(format!("{y:04}-{m:02}-{d:02}"));
                }
                if let Some(p) = phone {
                    v["phone"] = json!(p);
                }
                if let Some(e) = email {
                    v["email"] = json!(e);
                }
                v["addressLine1"] = json!(free);
                v
            })
    }

    proptest! {
        #[test]
        fn comparison_is_symmetric_and_finite(a in any_record(), b in any_record()) {
            let m = Matcher::default();
            let (a, b) = (record("a", a), record("b", b));
            let ab = m.compare(&a, &b);
            let ba = m.compare(&b, &a);
            prop_assert!(ab.score.is_finite());
            prop_assert_eq!(&ab, &ba);
            prop_assert!(ab.evidence.iter().all(|e| e.similarity.is_finite() && (0.0..=1.0).contains(&e.similarity) && e.weight.is_finite()));
            // The bounded comparison agrees with the full one whenever it answers.
            if let Some(c) = m.compare_candidates(&m.prepare(&a), &m.prepare(&b)) {
                prop_assert_eq!(c, ab.clone());
            } else {
                prop_assert!(ab.score < m.config().possible_min);
            }
        }

        #[test]
        fn blocking_keys_are_deterministic(a in any_record()) {
            let m = Matcher::default();
            let r = record("a", a.clone());
            let keys = m.blocking_keys(&r);
            prop_assert_eq!(&keys, &Matcher::default().blocking_keys(&record("b", a)));
            prop_assert!(keys.len() <= m.config().limits.blocking_keys_max);
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn transliteration_variants_share_a_block() {
        let m = Matcher::default();
        let a = m.blocking_keys(&record("a", json!({"fullName": "Mohammed Al-Hassan", "dateOfBirth": "1984-03-07"})));
        let b = m.blocking_keys(&record("b", json!({"fullName": "Hasan Muhammad", "dateOfBirth": "1985-03-07"})));
        assert!(a.iter().any(|k| b.contains(k)), "{a:?} / {b:?}");
        assert!(m.phonetic_keys("eng", "Youssef").contains(&"sk:ysf".to_owned()));
        assert_eq!(m.phonetic_keys("eng", "Youssef"), m.phonetic_keys("eng", "yousef"));
    }

    /// The planted duplicates of a synthetic population are found, namesakes are never called
    /// matches, and blocking compares a small share of all pairs.
    #[test]
    fn planted_duplicates_are_found_and_namesakes_are_not_matches() {
        let pop = synth::generate(&synth::SynthParams::new(20_000), &mut StdRng::seed_from_u64(77));
        let records = pop.parse().unwrap();
        let m = Matcher::default();
        let d = m.dedupe(&records, 2).unwrap();
        let truth: HashSet<(usize, usize)> = pop.duplicate_pairs().into_iter().collect();
        let namesakes: HashSet<(usize, usize)> = pop.namesake_pairs().into_iter().collect();
        let matches: Vec<(usize, usize)> =
            d.pairs.iter().filter(|p| p.comparison.decision == Decision::Match).map(|p| (p.a, p.b)).collect();
        let found = |list: &[(usize, usize)]| list.iter().filter(|p| truth.contains(p)).count() as f64;
        let candidates: Vec<(usize, usize)> = d.pairs.iter().map(|p| (p.a, p.b)).collect();
        let precision = found(&matches) / matches.len() as f64;
        let recall = found(&matches) / truth.len() as f64;
        let recall_candidates = found(&candidates) / truth.len() as f64;
        assert!(truth.len() > 1_500);
        assert!(precision >= 0.995, "match precision {precision}");
        assert!(recall >= 0.88, "match recall {recall}");
        assert!(recall_candidates >= 0.97, "match-or-possible recall {recall_candidates}");
        assert!(!namesakes.is_empty());
        assert_eq!(matches.iter().filter(|p| namesakes.contains(p)).count(), 0, "a namesake was called a match");
        assert!(d.stats.pairs_compared * 100 < d.stats.all_pairs, "{:?}", d.stats);
        assert_eq!(d.stats.matches as usize, matches.len());
        // The same on one thread.
        assert_eq!(m.dedupe(&records, 1).unwrap(), d);
    }

    #[test]
    fn oversized_blocks_are_skipped_and_counted_and_pairs_are_bounded() {
        let same: Vec<Record> =
            (0..30).map(|i| record(&format!("r{i}"), json!({"fullName": "John Smith", "dateOfBirth": "1980-01-01"}))).collect();
        let mut c = Config::default();
        c.limits.block_size_max = 10;
        let d = Matcher::new(c).unwrap().dedupe(&same, 2).unwrap();
        assert!(d.pairs.is_empty());
        assert!(d.stats.blocks_oversized > 0);
        assert_eq!(d.stats.pairs_in_oversized_blocks, d.stats.blocks_oversized * 435);
        assert_eq!(d.stats.pairs_compared, 0);
        let mut c = Config::default();
        c.limits.pairs_compared_max = 100;
        assert!(matches!(Matcher::new(c).unwrap().dedupe(&same, 1), Err(Error::TooManyPairs { .. })));
        let mut c = Config::default();
        c.limits.candidates_max = 3;
        let d = Matcher::new(c).unwrap().dedupe(&same, 1).unwrap();
        assert!(d.stats.pairs_over_candidates_max > 0);
        for r in 0..same.len() {
            assert!(d.pairs.iter().filter(|p| p.a == r || p.b == r).count() <= 3);
        }
    }

    /// `FieldModels::default()` is what `synth::calibrate` gives (on a smaller population here,
    /// so only well-estimated values are compared).
    #[test]
    fn defaults_match_calibration() {
        let pop = synth::generate(&synth::SynthParams::new(20_000), &mut StdRng::seed_from_u64(synth::CALIBRATION_SEED));
        let records = pop.parse().unwrap();
        let m = Matcher::default();
        let fresh = synth::calibrate(&m, &pop, &records, 300_000, &mut StdRng::seed_from_u64(1));
        let defaults = FieldModels::default();
        for f in Field::ALL {
            let (dl, cl) = (&defaults.get(f).levels, &fresh.get(f).levels);
            assert_eq!(dl.len(), cl.len());
            let mut compared = 0;
            for (d, c) in dl.iter().zip(cl) {
                // Levels seen often among both duplicates and strangers, at this size.
                if d.m >= 0.008 && d.u >= 1e-4 {
                    compared += 1;
                    assert!((d.weight() - c.weight()).abs() <= 1.0, "{}: default {d:?} recalibrated {c:?}\n{fresh:#?}", f.as_str());
                }
            }
            // Every field has a well-estimated disagreement level at least.
            assert!(compared >= 1, "{}", f.as_str());
        }
    }
}
