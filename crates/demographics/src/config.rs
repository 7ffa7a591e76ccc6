//! The de-duplicator's configuration: per-language normalization rules, the Fellegi–Sunter model
//! of each field (agreement levels with their m and u probabilities), the decision thresholds and
//! every limit. Deserialized from the country's configuration; unknown keys are errors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which fields the model compares. The order is the order of the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `fullName`, every language.
    Name,
    /// `dateOfBirth`.
    DateOfBirth,
    /// `gender`.
    Gender,
    /// `addressLine1..3`, joined per language.
    Address,
    /// `city`, or `region` where either side lacks a city.
    Locality,
    /// `postalCode`.
    PostalCode,
    /// `phone`.
    Phone,
    /// `email`.
    Email,
}

impl Field {
    /// Every field, in evidence order.
    pub const ALL: [Field; 8] =
        [Field::Name, Field::DateOfBirth, Field::Gender, Field::Address, Field::Locality, Field::PostalCode, Field::Phone, Field::Email];

    /// The field's position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable name used in evidence and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::DateOfBirth => "date_of_birth",
            Field::Gender => "gender",
            Field::Address => "address",
            Field::Locality => "locality",
            Field::PostalCode => "postal_code",
            Field::Phone => "phone",
            Field::Email => "email",
        }
    }

    /// The similarity at which this field corroborates a match found on name and birth date:
    /// a namesake (same name, same birth date, another person) rarely shares the same address,
    /// phone (a typo allowed) or e-mail address. An e-mail's local part alone does not count: it
    /// is usually made of the name.
    pub fn corroboration_min(self) -> Option<f64> {
        match self {
            Field::Address => Some(0.97),
            Field::Phone => Some(0.8),
            Field::Email => Some(1.0),
            _ => None,
        }
    }
}

/// One agreement level of a field: a comparison whose similarity is at least `similarity_min`
/// (and below the level above) has probability `m` among true duplicates and `u` among pairs
/// of different people. Its weight is `log2(m / u)` bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub similarity_min: f64,
    pub m: f64,
    pub u: f64,
}

impl Level {
    /// The level's log-likelihood ratio in bits.
    pub fn weight(&self) -> f64 {
        (self.m / self.u).log2()
    }
}

/// A field's levels, highest similarity first; the last has `similarity_min = 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldModel {
    pub levels: Vec<Level>,
}

impl FieldModel {
    /// The level a similarity falls in (its index and weight).
    pub fn level_of(&self, similarity: f64) -> (usize, f64) {
        let i = self.levels.iter().position(|l| similarity >= l.similarity_min).unwrap_or(self.levels.len().saturating_sub(1));
        (i, self.levels.get(i).map_or(0.0, Level::weight))
    }

    fn from_table(table: &[(f64, f64, f64)]) -> FieldModel {
        FieldModel { levels: table.iter().map(|&(similarity_min, m, u)| Level { similarity_min, m, u }).collect() }
    }
}

/// The model of every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldModels {
    pub name: FieldModel,
    pub date_of_birth: FieldModel,
    pub gender: FieldModel,
    pub address: FieldModel,
    pub locality: FieldModel,
    pub postal_code: FieldModel,
    pub phone: FieldModel,
    pub email: FieldModel,
}

impl FieldModels {
    pub fn get(&self, field: Field) -> &FieldModel {
        match field {
            Field::Name => &self.name,
            Field::DateOfBirth => &self.date_of_birth,
            Field::Gender => &self.gender,
            Field::Address => &self.address,
            Field::Locality => &self.locality,
            Field::PostalCode => &self.postal_code,
            Field::Phone => &self.phone,
            Field::Email => &self.email,
        }
    }

    pub fn get_mut(&mut self, field: Field) -> &mut FieldModel {
        match field {
            Field::Name => &mut self.name,
            Field::DateOfBirth => &mut self.date_of_birth,
            Field::Gender => &mut self.gender,
            Field::Address => &mut self.address,
            Field::Locality => &mut self.locality,
            Field::PostalCode => &mut self.postal_code,
            Field::Phone => &mut self.phone,
            Field::Email => &mut self.email,
        }
    }
}

impl Default for FieldModels {
    /// Calibrated on the synthetic population by `synth::calibrate` (seed
    /// `synth::CALIBRATION_SEED`, `synth::CALIBRATION_RECORDS` records): m from the planted
    /// duplicate pairs, u from random pairs of different people. The test
    /// `defaults_match_calibration` re-runs the calibration and fails if these drift.
    fn default() -> FieldModels {
        FieldModels {
            name: FieldModel::from_table(&[
                (1.0, 0.7784, 0.0003296),
                (0.95, 0.134, 7.812e-5),
                (0.9, 0.07631, 0.0003976),
                (0.82, 0.001445, 0.002336),
                (0.0, 0.009835, 0.9969),
            ]),
            date_of_birth: FieldModel::from_table(&[
                (1.0, 0.86, 3.458e-5),
                (0.8, 0.1284, 0.001107),
                (0.4, 0.0009143, 0.03737),
                (0.0, 0.01063, 0.9615),
            ]),
            gender: FieldModel::from_table(&[(1.0, 0.9957, 0.5002), (0.0, 0.004347, 0.4998)]),
            address: FieldModel::from_table(&[(0.95, 0.8168, 8.987e-5), (0.85, 0.04256, 4.662e-5), (0.0, 0.1406, 0.9999)]),
            locality: FieldModel::from_table(&[(0.95, 0.48, 0.03497), (0.85, 0.48, 0.03497), (0.0, 0.04004, 0.9301)]),
            postal_code: FieldModel::from_table(&[(1.0, 0.9037, 8.221e-5), (0.8, 0.03119, 0.002419), (0.0, 0.06513, 0.9975)]),
            phone: FieldModel::from_table(&[(1.0, 0.4452, 1.763e-6), (0.8, 0.4452, 1.763e-6), (0.0, 0.1097, 1.0)]),
            email: FieldModel::from_table(&[(1.0, 0.9203, 4.69e-7), (0.75, 0.0138, 6.707e-5), (0.0, 0.06591, 0.9999)]),
        }
    }
}

/// Normalization rules of one language (or of every language: `Config::common`). Entries are
/// written as people write them ("Mme", "Mohd."); they go through the same character folding
/// as the text before use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageRules {
    /// Tokens dropped from names (honorifics, titles).
    pub titles: Vec<String>,
    /// Whole-token replacements in names (`"mohd" = "mohammed"`); the value may be several
    /// words, or empty to delete the token. A value's tokens must not be keys themselves.
    pub name_replacements: BTreeMap<String, String>,
    /// Particles glued to the next token of a name (`al hassan` → `alhassan`), so that
    /// "Al-Hassan", "Al Hassan" and "Alhassan" compare equal.
    pub particles: Vec<String>,
    /// Whole-token replacements in addresses (`"street" = "st"`).
    pub address_replacements: BTreeMap<String, String>,
    /// Single-character foldings applied after case folding (`"ى" = "ي"`).
    pub characters: BTreeMap<String, String>,
}

/// Every limit of the de-duplicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A block with more records than this is not compared (counted in the statistics); its
    /// records are still compared within their other blocks.
    pub block_size_max: usize,
    /// Most candidate pairs reported per record (the best-scoring are kept; the rest counted).
    pub candidates_max: usize,
    /// Most pairs one `dedupe` call may compare; beyond it fails rather than run unbounded.
    pub pairs_compared_max: u64,
    /// Most characters of text in one record, all fields together.
    pub record_fields_chars_max: usize,
    /// Most characters in one value.
    pub value_chars_max: usize,
    /// Most language variants of one multilingual field.
    pub variants_max: usize,
    /// Tokens of a name beyond this are ignored.
    pub name_tokens_max: usize,
    /// Most blocking keys of one record.
    pub blocking_keys_max: usize,
}

/// Defaults of `Limits`, as named constants.
pub const BLOCK_SIZE_MAX: usize = 1_000;
pub const CANDIDATES_MAX: usize = 50;
pub const PAIRS_COMPARED_MAX: u64 = 2_000_000_000;
pub const RECORD_FIELDS_CHARS_MAX: usize = 4_096;
pub const VALUE_CHARS_MAX: usize = 512;
pub const VARIANTS_MAX: usize = 8;
pub const NAME_TOKENS_MAX: usize = 8;
pub const BLOCKING_KEYS_MAX: usize = 64;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            block_size_max: BLOCK_SIZE_MAX,
            candidates_max: CANDIDATES_MAX,
            pairs_compared_max: PAIRS_COMPARED_MAX,
            record_fields_chars_max: RECORD_FIELDS_CHARS_MAX,
            value_chars_max: VALUE_CHARS_MAX,
            variants_max: VARIANTS_MAX,
            name_tokens_max: NAME_TOKENS_MAX,
            blocking_keys_max: BLOCKING_KEYS_MAX,
        }
    }
}

/// The whole configuration. Every section is optional; a section given replaces the default's
/// (a `languages` table replaces the default languages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Rules applied to every language, after the language's own.
    pub common: LanguageRules,
    /// Rules per language code of the identity schema (`eng`, `fra`, `ara`, …).
    pub languages: BTreeMap<String, LanguageRules>,
    pub fields: FieldModels,
    /// A pair scoring at least this many bits is a match (if corroborated, see below).
    pub match_min: f64,
    /// A pair scoring at least this many bits (and not a match) is a possible match, for review.
    pub possible_min: f64,
    /// A match also needs agreement on a field that namesakes rarely share (address, phone or
    /// email) and names that agree at least in part; otherwise it is a possible match at most.
    pub match_requires_corroboration: bool,
    pub limits: Limits,
}

/// Default thresholds, in bits, chosen on the synthetic population of the calibration
/// (100,000 records): match precision 99.9%, recall 92%; match-or-possible recall 98.8%, the
/// false possible matches being mostly namesakes. On another seed (`cargo xtask bench dedupe`):
/// 99.95%, 90.9% and 98.6% (see ARCHITECTURE.md).
pub const MATCH_MIN: f64 = 26.0;
pub const POSSIBLE_MIN: f64 = 18.0;

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn table(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Default for Config {
    fn default() -> Config {
        let common = LanguageRules {
            titles: vec![],
            // Spelling variants of one name, folded so that they compare equal.
            name_replacements: table(&[("mohd", "mohammed"), ("muhd", "mohammed"), ("el", "al"), ("ul", "al")]),
            particles: words(&[
                "al", "abd", "abdel", "abdul", "abu", "bin", "ibn", "bint", "ould", "mac", "mc", "van", "von", "de", "du", "da", "del",
                "della", "des", "di", "le", "la",
            ]),
            address_replacements: BTreeMap::new(),
            characters: BTreeMap::new(),
        };
        let eng = LanguageRules {
            titles: words(&["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "jr", "sr", "hon", "rev"]),
            address_replacements: table(&[
                ("street", "st"),
                ("avenue", "ave"),
                ("road", "rd"),
                ("boulevard", "blvd"),
                ("drive", "dr"),
                ("lane", "ln"),
                ("apartment", "apt"),
                ("building", "bldg"),
                ("number", "no"),
            ]),
            ..LanguageRules::default()
        };
        let fra = LanguageRules {
            titles: words(&["m", "mme", "mlle", "monsieur", "madame", "mademoiselle", "dr", "docteur", "pr", "me"]),
            address_replacements: table(&[
                ("avenue", "av"),
                ("boulevard", "bd"),
                ("rue", "r"),
                ("place", "pl"),
                ("appartement", "apt"),
                ("batiment", "bat"),
            ]),
            ..LanguageRules::default()
        };
        let ara = LanguageRules {
            titles: words(&["السيد", "السيدة", "الآنسة", "الدكتور", "الدكتورة", "الحاج", "الحاجة", "الشيخ", "د"]),
            // Letters written interchangeably in names: alif maqsura / ya, ta marbuta / ha.
            characters: table(&[("ى", "ي"), ("ة", "ه")]),
            ..LanguageRules::default()
        };
        Config {
            common,
            languages: [("eng".to_owned(), eng), ("fra".to_owned(), fra), ("ara".to_owned(), ara)].into_iter().collect(),
            fields: FieldModels::default(),
            match_min: MATCH_MIN,
            possible_min: POSSIBLE_MIN,
            match_requires_corroboration: true,
            limits: Limits::default(),
        }
    }
}
