//! Field comparison and the Fellegi–Sunter score: each field's similarity (Jaro-Winkler, token
//! alignment, phonetic codes, date and number typo rules) falls in one of its agreement levels,
//! whose weight `log2(m/u)` is added to the score; a missing field adds nothing.

use crate::config::{Config, Field, FieldModels};
use crate::normalize::{self, Rules};
use crate::record::{Date, Gender, Record};
use rphonetic::DoubleMetaphone;
use serde::Serialize;

/// Similarity given to names with the same words in another order.
const SWAPPED_SIMILARITY: f64 = 0.97;
/// Token alignment (Monge–Elkan) is scaled down a little: it forgives missing words.
const TOKEN_SET_FACTOR: f64 = 0.98;
/// Similarity of names whose every word sounds the same (Double Metaphone or skeleton).
const PHONETIC_SIMILARITY: f64 = 0.93;
/// A name whose words (two or more) all appear in a longer one ("Ali El Hassan" in "Ali Anas
/// El Hassan"): the mean similarity of its words, scaled by this.
const SUBSET_FACTOR: f64 = 0.93;
/// Below this Jaro-Winkler, two words count as different in word alignment: Jaro-Winkler gives
/// 0.83 to unrelated short words ("ali" and "khalid").
const WORD_JW_MIN: f64 = 0.88;
/// Similarity of a typo: one digit or character off, two swapped.
const TYPO_SIMILARITY: f64 = 0.8;
/// Similarity of birth dates only a year apart at most, otherwise different.
const NEAR_YEAR_SIMILARITY: f64 = 0.4;
/// Similarity of e-mail addresses with the same local part at another domain, and of a
/// near-identical local part at the same domain.
const SAME_LOCAL_SIMILARITY: f64 = 0.8;
const SIMILAR_LOCAL_SIMILARITY: f64 = 0.75;
const SIMILAR_LOCAL_JW_MIN: f64 = 0.92;
/// Phone numbers are compared on their last digits (the national significant number), so
/// `+212 6…` and `06…` agree; shorter ones count as missing.
pub(crate) const PHONE_DIGITS: usize = 9;
pub(crate) const PHONE_DIGITS_MIN: usize = 6;
/// Phonetic and skeleton codes shorter than this say too little to count as agreement.
const SKELETON_LEN_MIN: usize = 3;
/// Words that sound alike must also be this similar in spelling: Double Metaphone codes every
/// initial vowel as `A`, so "Ahmed" and "Imad" share `AMT`.
const PHONETIC_JW_MIN: f64 = 0.7;

/// How a field's similarity was established.
/// Ordered by preference when two ways give the same similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Exact,
    JaroWinkler,
    TokenSet,
    TokenSubset,
    SwappedOrder,
    Phonetic,
    DayMonthSwapped,
    OneDigit,
    DigitsTransposed,
    YearOffByOne,
    NearYear,
    OneEdit,
    SameLocalPart,
    SimilarLocalPart,
    /// `locality` compared on the region, a side lacking the city.
    Region,
    /// Not counted: a more specific field of the same place was compared (address lines over
    /// postal code over locality), as they are far from independent.
    Covered,
    Different,
    Missing,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::JaroWinkler => "jaro_winkler",
            Method::TokenSet => "token_set",
            Method::TokenSubset => "token_subset",
            Method::SwappedOrder => "swapped_order",
            Method::Phonetic => "phonetic",
            Method::DayMonthSwapped => "day_month_swapped",
            Method::OneDigit => "one_digit",
            Method::DigitsTransposed => "digits_transposed",
            Method::YearOffByOne => "year_off_by_one",
            Method::NearYear => "near_year",
            Method::OneEdit => "one_edit",
            Method::SameLocalPart => "same_local_part",
            Method::SimilarLocalPart => "similar_local_part",
            Method::Region => "region",
            Method::Covered => "covered",
            Method::Different => "different",
            Method::Missing => "missing",
        }
    }
}

/// One field's contribution to a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FieldEvidence {
    pub field: Field,
    pub method: Method,
    /// 0..=1; 0 when missing.
    pub similarity: f64,
    /// Bits added to the score (negative for disagreement, 0 when missing).
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Match,
    PossibleMatch,
    NonMatch,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Match => "match",
            Decision::PossibleMatch => "possible_match",
            Decision::NonMatch => "non_match",
        }
    }
}

/// Why the decision is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Score ≥ `match_min` (and corroborated where required).
    MatchScore,
    /// Score ≥ `match_min` but no agreement on address, phone or e-mail: a namesake is as likely.
    NotCorroborated,
    /// Score ≥ `match_min` but the names disagree.
    NamesDisagree,
    /// Score ≥ `match_min` but the birth dates are wholly different (a father and his son
    /// named after him share everything else).
    BirthDatesDisagree,
    /// `possible_min` ≤ score < `match_min`.
    PossibleScore,
    /// Score ≥ `possible_min` on address, phone or e-mail alone, with neither the names nor the
    /// birth dates agreeing: another person of the same household.
    NoIdentityAgreement,
    /// Score < `possible_min`.
    LowScore,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MatchScore => "score at or above match_min",
            Reason::NotCorroborated => "score at or above match_min, but no address, phone or e-mail agreement corroborates it",
            Reason::NamesDisagree => "score at or above match_min, but the names disagree",
            Reason::BirthDatesDisagree => "score at or above match_min, but the birth dates are wholly different",
            Reason::PossibleScore => "score between possible_min and match_min",
            Reason::NoIdentityAgreement => "score at or above possible_min, but neither the names nor the birth dates agree",
            Reason::LowScore => "score below possible_min",
        }
    }
}

/// The outcome of comparing two records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Sum of the fields' weights, in bits: log2 of the likelihood ratio "same person" over
    /// "different people" under the model's independence assumption.
    pub score: f64,
    pub decision: Decision,
    pub reason: Reason,
    /// One entry per field, in `Field::ALL` order.
    pub evidence: Vec<FieldEvidence>,
}

impl Comparison {
    /// `field:method:similarity:weight;…`, the evidence in one CSV cell.
    pub fn evidence_compact(&self) -> String {
        let parts: Vec<String> = self
            .evidence
            .iter()
            .map(|e| format!("{}:{}:{:.3}:{:+.2}", e.field.as_str(), e.method.as_str(), e.similarity, e.weight))
            .collect();
        parts.join(";")
    }
}

/// A name's matching forms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NameForm {
    language: String,
    pub(crate) tokens: Vec<String>,
    sorted: Vec<String>,
    concat: String,
    /// Per token: Double Metaphone primary and alternate, consonant skeleton.
    pub(crate) codes: Vec<(String, String)>,
    skeletons: Vec<String>,
}

/// A record prepared for comparison: every normalization and phonetic code computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub(crate) names: Vec<NameForm>,
    pub(crate) date_of_birth: Option<Date>,
    gender: Option<Gender>,
    /// (language, words) per language.
    pub(crate) address: Vec<(String, Vec<String>)>,
    pub(crate) city: Vec<(String, String)>,
    region: Vec<(String, String)>,
    postal_code: Option<String>,
    /// The last `PHONE_DIGITS` digits.
    pub(crate) phone: Option<String>,
    /// (local part, domain), lower case.
    pub(crate) email: Option<(String, String)>,
}

fn digit_value(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        // Arabic-Indic and Extended Arabic-Indic (Persian, Urdu) digits.
        '\u{0660}'..='\u{0669}' => char::from_digit(u32::from(c) - 0x0660, 10),
        '\u{06F0}'..='\u{06F9}' => char::from_digit(u32::from(c) - 0x06F0, 10),
        _ => None,
    }
}

pub(crate) fn prepare(rules: &Rules, dm: &DoubleMetaphone, config: &Config, r: &Record) -> Prepared {
    let limits = &config.limits;
    let mut names: Vec<NameForm> = Vec::new();
    for t in &r.full_name {
        let mut tokens = rules.name_key_tokens(&t.language, &t.value);
        tokens.truncate(limits.name_tokens_max);
        if tokens.is_empty() || names.iter().any(|n| n.tokens == tokens && n.language == t.language) {
            continue;
        }
        let codes = tokens.iter().map(|t| normalize::metaphone(dm, t)).collect();
        let skeletons = tokens.iter().map(|t| normalize::skeleton(t)).collect();
        let mut sorted = tokens.clone();
        sorted.sort();
        names.push(NameForm { language: t.language.clone(), concat: tokens.concat(), sorted, tokens, codes, skeletons });
    }
    // The city (in the same language, else the first given) ends the address: the same street
    // and number in another city is another place.
    let city_of = |language: &str| r.city.iter().find(|c| c.language == language).or(r.city.first());
    let mut address: Vec<(String, Vec<String>)> = Vec::new();
    for t in &r.address {
        let mut tokens = rules.address_key_tokens(&t.language, &t.value);
        if let Some(c) = city_of(&t.language) {
            tokens.push(rules.address_key_tokens(&c.language, &c.value).concat());
        }
        tokens.retain(|w| !w.is_empty());
        let entry = (t.language.clone(), tokens);
        if !entry.1.is_empty() && !address.contains(&entry) {
            address.push(entry);
        }
    }
    let places = |texts: &[crate::record::Text]| {
        let mut out: Vec<(String, String)> = Vec::new();
        for t in texts {
            let entry = (t.language.clone(), rules.address_key_tokens(&t.language, &t.value).concat());
            if !entry.1.is_empty() && !out.contains(&entry) {
                out.push(entry);
            }
        }
        out
    };
    let postal_code = r
        .postal_code
        .as_deref()
        .map(|p| p.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect::<String>())
        .filter(|p| !p.is_empty());
    let phone = r.phone.as_deref().and_then(|p| {
        let digits: String = p.chars().filter_map(digit_value).collect();
        (digits.len() >= PHONE_DIGITS_MIN).then(|| digits[digits.len().saturating_sub(PHONE_DIGITS)..].to_owned())
    });
    let email = r.email.as_deref().and_then(|e| {
        let e = e.trim().to_lowercase();
        let (local, domain) = e.rsplit_once('@')?;
        (!local.is_empty() && !domain.is_empty()).then(|| (local.to_owned(), domain.to_owned()))
    });
    Prepared {
        names,
        date_of_birth: r.date_of_birth,
        gender: r.gender,
        address,
        city: places(&r.city),
        region: places(&r.region),
        postal_code,
        phone,
        email,
    }
}

/// Jaro-Winkler computed in a fixed argument order, so that comparison is exactly symmetric.
fn jw(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    if a.is_ascii() && b.is_ascii() && a.len() <= 64 && b.len() <= 64 {
        jaro_winkler_ascii(a.as_bytes(), b.as_bytes())
    } else {
        strsim::jaro_winkler(a, b)
    }
}

/// `strsim::jaro_winkler` for ASCII strings of at most 64 bytes, with the match flags in two
/// `u64`s: the same arithmetic in the same order (a property test checks equality with strsim),
/// without the allocation and character counting strsim does on every call. Matching keys are
/// ASCII after transliteration, and Jaro-Winkler is most of the de-duplicator's time.
fn jaro_winkler_ascii(a: &[u8], b: &[u8]) -> f64 {
    let (la, lb) = (a.len(), b.len());
    if la == 0 && lb == 0 {
        return 1.0;
    } else if la == 0 || lb == 0 {
        return 0.0;
    }
    let range = (la.max(lb) / 2).saturating_sub(1);
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &x) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = lb.min(i + range + 1);
        for (j, &y) in b.iter().enumerate().take(hi).skip(lo) {
            if x == y && b_flags & (1 << j) == 0 {
                a_flags |= 1 << i;
                b_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0usize;
    for (i, &x) in a.iter().enumerate() {
        if a_flags & (1 << i) == 0 {
            continue;
        }
        while b_flags & (1 << j) == 0 {
            j += 1;
        }
        if x != b[j] {
            transpositions += 1;
        }
        j += 1;
    }
    transpositions /= 2;
    let m = matches as f64;
    let sim = (m / la as f64 + m / lb as f64 + (matches - transpositions) as f64 / m) / 3.0;
    if sim > 0.7 {
        let prefix = a.iter().take(4).zip(b).take_while(|(x, y)| x == y).count();
        sim + 0.1 * prefix as f64 * (1.0 - sim)
    } else {
        sim
    }
}

/// Mean over `a`'s tokens of the best similarity with a token of `b`.
fn monge_elkan(a: &[String], b: &[String], sim: &impl Fn(&str, &str) -> f64) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let total: f64 = a.iter().map(|x| b.iter().map(|y| sim(x, y)).fold(0.0, f64::max)).sum();
    total / a.len() as f64
}

fn symmetric_monge_elkan(a: &[String], b: &[String], sim: &impl Fn(&str, &str) -> f64) -> f64 {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    (monge_elkan(x, y, sim) + monge_elkan(y, x, sim)) / 2.0
}

fn sounds_alike(a: &NameForm, i: usize, b: &NameForm, j: usize) -> bool {
    sounds_alike_at(a, i, b, j, jw(&a.tokens[i], &b.tokens[j]))
}

/// `sounds_alike` given the words' Jaro-Winkler `spelling`.
fn sounds_alike_at(a: &NameForm, i: usize, b: &NameForm, j: usize, spelling: f64) -> bool {
    if spelling < PHONETIC_JW_MIN {
        return false;
    }
    let ((ap, aa), (bp, ba)) = (&a.codes[i], &b.codes[j]);
    let code = |x: &String, y: &String| x.len() >= 2 && x == y;
    code(ap, bp)
        || code(ap, ba)
        || code(aa, bp)
        || code(aa, ba)
        || (a.skeletons[i].len() >= SKELETON_LEN_MIN && a.skeletons[i] == b.skeletons[j])
}

/// Every word of `a` sounds like some word of `b`.
fn covered(a: &NameForm, b: &NameForm) -> bool {
    (0..a.tokens.len()).all(|i| (0..b.tokens.len()).any(|j| sounds_alike(a, i, b, j)))
}

/// Word-by-word similarities of two names: Jaro-Winkler where at least `WORD_JW_MIN`, at
/// least `PHONETIC_SIMILARITY` where the words sound alike, 0 otherwise.
fn word_matrix(a: &NameForm, b: &NameForm) -> Vec<Vec<f64>> {
    (0..a.tokens.len())
        .map(|i| {
            (0..b.tokens.len())
                .map(|j| {
                    let spelling = jw(&a.tokens[i], &b.tokens[j]);
                    let s = if spelling >= WORD_JW_MIN { spelling } else { 0.0 };
                    if sounds_alike_at(a, i, b, j, spelling) { s.max(PHONETIC_SIMILARITY) } else { s }
                })
                .collect()
        })
        .collect()
}

fn word_similarity(a: &str, b: &str) -> f64 {
    let s = jw(a, b);
    if s >= WORD_JW_MIN { s } else { 0.0 }
}

fn name_similarity(a: &NameForm, b: &NameForm) -> (f64, Method) {
    if a.tokens == b.tokens {
        return (1.0, Method::Exact);
    }
    // One fixed orientation, so that the result is exactly symmetric.
    let (a, b) = if (&a.tokens, &a.language) <= (&b.tokens, &b.language) { (a, b) } else { (b, a) };
    // Jaro-Winkler over the whole name only where the words are split differently ("Abdul
    // Rahman" / "Abdulrahman"): over aligned words it would forgive a whole different first
    // name next to a shared family name ("Adel Mansur" / "Waleed Mansur" score 0.91).
    let mut best =
        if a.tokens.len() == b.tokens.len() { (0.0, Method::Different) } else { (jw(&a.concat, &b.concat), Method::JaroWinkler) };
    let mut consider = |s: f64, m: Method| {
        if s > best.0 {
            best = (s, m);
        }
    };
    if a.sorted == b.sorted {
        consider(SWAPPED_SIMILARITY, Method::SwappedOrder);
    }
    let matrix = word_matrix(a, b);
    let rows: Vec<f64> = matrix.iter().map(|r| r.iter().copied().fold(0.0, f64::max)).collect();
    let cols: Vec<f64> = (0..b.tokens.len()).map(|j| matrix.iter().map(|r| r[j]).fold(0.0, f64::max)).collect();
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    consider((mean(&rows) + mean(&cols)) / 2.0 * TOKEN_SET_FACTOR, Method::TokenSet);
    // A subset only where the first words agree: a dropped middle name is common, a first name
    // that is the other's middle name is a relative ("Marie Martin", "Céline Marie Martin").
    let shorter = if a.tokens.len() < b.tokens.len() { &rows } else { &cols };
    if a.tokens.len() != b.tokens.len() && shorter.len() >= 2 && shorter.iter().all(|&s| s > 0.0) && matrix[0][0] > 0.0 {
        consider(mean(shorter) * SUBSET_FACTOR, Method::TokenSubset);
    }
    // Only names of as many words: a shorter name is a subset (above), judged word by word.
    if a.tokens.len() == b.tokens.len() && covered(a, b) && covered(b, a) {
        consider(PHONETIC_SIMILARITY, Method::Phonetic);
    }
    best
}

/// Damerau–Levenshtein distance exactly one (one substitution, insertion, deletion or adjacent
/// transposition), and which. Callers pass ASCII (digits, postal codes), compared as bytes: a
/// linear check, where `strsim::damerau_levenshtein` builds a full matrix and a hash map.
fn one_edit(a: &str, b: &str) -> Option<Method> {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if x == y {
        return None;
    }
    if x.len() == y.len() {
        let diff: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).take(3).collect();
        return match diff.as_slice() {
            [_] => Some(Method::OneEdit),
            [i, j] if *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i] => Some(Method::DigitsTransposed),
            _ => None,
        };
    }
    let (long, short) = if x.len() > y.len() { (x, y) } else { (y, x) };
    if long.len() != short.len() + 1 {
        return None;
    }
    let i = (0..short.len()).find(|&i| long[i] != short[i]).unwrap_or(short.len());
    (long[i + 1..] == short[i..]).then_some(Method::OneEdit)
}

fn date_similarity(a: Date, b: Date) -> (f64, Method) {
    if a == b {
        return (1.0, Method::Exact);
    }
    if a.year() == b.year() && a.month() == b.day() && a.day() == b.month() {
        return (TYPO_SIMILARITY, Method::DayMonthSwapped);
    }
    let (da, db) = (a.digits(), b.digits());
    let diff: Vec<usize> = (0..8).filter(|&i| da[i] != db[i]).collect();
    if diff.len() == 1 {
        return (TYPO_SIMILARITY, Method::OneDigit);
    }
    if diff.len() == 2 && diff[1] == diff[0] + 1 && da[diff[0]] == db[diff[1]] && da[diff[1]] == db[diff[0]] {
        return (TYPO_SIMILARITY, Method::DigitsTransposed);
    }
    if a.year().abs_diff(b.year()) == 1 && a.month() == b.month() && a.day() == b.day() {
        return (TYPO_SIMILARITY, Method::YearOffByOne);
    }
    if a.year().abs_diff(b.year()) <= 1 {
        return (NEAR_YEAR_SIMILARITY, Method::NearYear);
    }
    (0.0, Method::Different)
}

fn number_or_word_similarity(a: &str, b: &str) -> f64 {
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if numeric(a) && numeric(b) {
        if a == b {
            1.0
        } else if one_edit(a, b).is_some() {
            TYPO_SIMILARITY
        } else {
            0.0
        }
    } else {
        word_similarity(a, b)
    }
}

/// The best similarity over the two sides' language variants: only variants of the same
/// language when the sides share one (cheaper, and a name is best compared in one script),
/// every pair otherwise.
fn best_of<T>(a: &[T], b: &[T], lang: impl Fn(&T) -> &str, f: impl Fn(&T, &T) -> (f64, Method)) -> Option<(f64, Method)> {
    let shared = a.iter().any(|x| b.iter().any(|y| lang(x) == lang(y)));
    let mut best: Option<(f64, Method)> = None;
    for x in a {
        for y in b {
            if shared && lang(x) != lang(y) {
                continue;
            }
            let s = f(x, y);
            // Ties go to the preferred method, so the result does not depend on the visiting order.
            if best.is_none_or(|(bs, bm)| s.0 > bs || (s.0 == bs && s.1 < bm)) {
                best = Some(s);
            }
            if s.1 == Method::Exact {
                return best;
            }
        }
    }
    best
}

/// Whether both sides have the field (cheap: no similarity computed).
fn present(field: Field, a: &Prepared, b: &Prepared) -> bool {
    match field {
        Field::Name => !a.names.is_empty() && !b.names.is_empty(),
        Field::DateOfBirth => a.date_of_birth.is_some() && b.date_of_birth.is_some(),
        Field::Gender => a.gender.is_some() && b.gender.is_some(),
        Field::Address => !a.address.is_empty() && !b.address.is_empty(),
        Field::Locality => (!a.city.is_empty() && !b.city.is_empty()) || (!a.region.is_empty() && !b.region.is_empty()),
        Field::PostalCode => a.postal_code.is_some() && b.postal_code.is_some(),
        Field::Phone => a.phone.is_some() && b.phone.is_some(),
        Field::Email => a.email.is_some() && b.email.is_some(),
    }
}

fn exact_or_typo(x: &str, y: &str) -> (f64, Method) {
    if x == y { (1.0, Method::Exact) } else { one_edit(x, y).map_or((0.0, Method::Different), |m| (TYPO_SIMILARITY, m)) }
}

/// One field's similarity and method, `None` where a side lacks the field.
fn similarity(field: Field, a: &Prepared, b: &Prepared) -> Option<(f64, Method)> {
    match field {
        Field::Name => best_of(&a.names, &b.names, |n| &n.language, name_similarity),
        Field::DateOfBirth => a.date_of_birth.zip(b.date_of_birth).map(|(x, y)| date_similarity(x, y)),
        Field::Gender => a.gender.zip(b.gender).map(|(x, y)| if x == y { (1.0, Method::Exact) } else { (0.0, Method::Different) }),
        Field::Address => best_of(
            &a.address,
            &b.address,
            |x| &x.0,
            |(_, x), (_, y)| {
                if x == y { (1.0, Method::Exact) } else { (symmetric_monge_elkan(x, y, &number_or_word_similarity), Method::TokenSet) }
            },
        ),
        Field::Locality => {
            let place = |(_, x): &(String, String), (_, y): &(String, String)| {
                if x == y { (1.0, Method::Exact) } else { (jw(x, y), Method::JaroWinkler) }
            };
            best_of(&a.city, &b.city, |x| &x.0, place)
                .or_else(|| best_of(&a.region, &b.region, |x| &x.0, place).map(|(s, _)| (s, Method::Region)))
        }
        Field::PostalCode => a.postal_code.as_ref().zip(b.postal_code.as_ref()).map(|(x, y)| exact_or_typo(x, y)),
        Field::Phone => a.phone.as_ref().zip(b.phone.as_ref()).map(|(x, y)| exact_or_typo(x, y)),
        Field::Email => a.email.as_ref().zip(b.email.as_ref()).map(|((la, da), (lb, db))| {
            if la == lb && da == db {
                (1.0, Method::Exact)
            } else if la == lb {
                (SAME_LOCAL_SIMILARITY, Method::SameLocalPart)
            } else if da == db && jw(la, lb) >= SIMILAR_LOCAL_JW_MIN {
                (SIMILAR_LOCAL_SIMILARITY, Method::SimilarLocalPart)
            } else {
                (0.0, Method::Different)
            }
        }),
    }
}

/// Every field's own similarity (ignoring which are covered), for calibration.
pub(crate) fn similarities(a: &Prepared, b: &Prepared) -> [(Field, Option<(f64, Method)>); 8] {
    Field::ALL.map(|f| (f, similarity(f, a, b)))
}

/// The fields' levels as (similarity_min, weight), with each field's best weight: the log2
/// computed once, not per comparison.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    levels: [Vec<(f64, f64)>; 8],
    best: [f64; 8],
}

impl Weights {
    pub(crate) fn new(models: &FieldModels) -> Weights {
        let levels = Field::ALL.map(|f| models.get(f).levels.iter().map(|l| (l.similarity_min, l.weight())).collect::<Vec<_>>());
        let best = Field::ALL.map(|f| levels[f.index()].iter().map(|l| l.1).fold(0.0, f64::max));
        Weights { levels, best }
    }

    fn weight(&self, field: Field, similarity: f64) -> f64 {
        let levels = &self.levels[field.index()];
        levels.iter().find(|l| similarity >= l.0).or(levels.last()).map_or(0.0, |l| l.1)
    }
}

/// Cheap fields first, names and addresses (most of the time) last.
const EVALUATION_ORDER: [Field; 8] =
    [Field::DateOfBirth, Field::Gender, Field::Phone, Field::Email, Field::PostalCode, Field::Locality, Field::Name, Field::Address];

/// Scores two prepared records and decides. With `floor`, gives up (`None`) as soon as the
/// score can no longer reach it, whatever the fields still to compare: `dedupe` keeps only
/// pairs at or above `possible_min`, and most blocked pairs are far below.
pub(crate) fn compare_bounded(config: &Config, weights: &Weights, a: &Prepared, b: &Prepared, floor: Option<f64>) -> Option<Comparison> {
    let known = Field::ALL.map(|f| present(f, a, b));
    let is_known = |f: Field| known[f.index()];
    // Address lines, postal code and locality describe one place: only the most specific that
    // both sides have counts.
    let covered = |f: Field| match f {
        Field::PostalCode => is_known(Field::Address),
        Field::Locality => is_known(Field::Address) || is_known(Field::PostalCode),
        _ => false,
    };
    let mut slots: [Option<FieldEvidence>; 8] = [None; 8];
    let mut score = 0.0;
    for (step, field) in EVALUATION_ORDER.iter().copied().enumerate() {
        if let Some(floor) = floor {
            let rest: f64 =
                EVALUATION_ORDER[step..].iter().filter(|f| is_known(**f) && !covered(**f)).map(|f| weights.best[f.index()]).sum();
            if score + rest < floor {
                return None;
            }
        }
        let e = match similarity(field, a, b) {
            None => FieldEvidence { field, method: Method::Missing, similarity: 0.0, weight: 0.0 },
            Some((similarity, _)) if covered(field) => FieldEvidence { field, method: Method::Covered, similarity, weight: 0.0 },
            Some((similarity, method)) => FieldEvidence { field, method, similarity, weight: weights.weight(field, similarity) },
        };
        score += e.weight;
        slots[field.index()] = Some(e);
    }
    let mut evidence: Vec<FieldEvidence> = slots.into_iter().flatten().collect();
    // An e-mail local part is usually made of the name: where the names agree already, the
    // same or a similar local part at another address adds nothing.
    let names_agree = evidence.iter().any(|e| e.field == Field::Name && e.weight > 0.0);
    if names_agree {
        for e in &mut evidence {
            if matches!(e.method, Method::SameLocalPart | Method::SimilarLocalPart) && e.weight > 0.0 {
                score -= e.weight;
                e.weight = 0.0;
            }
        }
    }
    let dates_agree = evidence.iter().any(|e| e.field == Field::DateOfBirth && e.weight > 0.0);
    let (decision, reason) = if score >= config.possible_min && !names_agree && !dates_agree {
        // Address, phone and e-mail are shared by a household: without any agreement on who the
        // person is, they make a relative, not a candidate.
        (Decision::NonMatch, Reason::NoIdentityAgreement)
    } else if score >= config.match_min {
        let corroborated = evidence.iter().any(|e| e.field.corroboration_min().is_some_and(|min| e.weight > 0.0 && e.similarity >= min));
        let dates_differ = evidence.iter().any(|e| e.field == Field::DateOfBirth && e.method == Method::Different);
        if !config.match_requires_corroboration {
            (Decision::Match, Reason::MatchScore)
        } else if !names_agree {
            (Decision::PossibleMatch, Reason::NamesDisagree)
        } else if dates_differ {
            (Decision::PossibleMatch, Reason::BirthDatesDisagree)
        } else if !corroborated {
            (Decision::PossibleMatch, Reason::NotCorroborated)
        } else {
            (Decision::Match, Reason::MatchScore)
        }
    } else if score >= config.possible_min {
        (Decision::PossibleMatch, Reason::PossibleScore)
    } else {
        (Decision::NonMatch, Reason::LowScore)
    };
    Some(Comparison { score, decision, reason, evidence })
}

/// Scores two prepared records and decides, with every field's evidence.
pub(crate) fn compare(config: &Config, weights: &Weights, a: &Prepared, b: &Prepared) -> Comparison {
    compare_bounded(config, weights, a, b, None).unwrap_or_else(|| unreachable!("without a floor every pair is scored"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: u16, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap_or_else(|| Date::new(2000, 1, 1).unwrap_or_else(|| unreachable!()))
    }

    #[test]
    fn date_typos_are_recognised() {
        assert_eq!(date_similarity(d(1985, 3, 7), d(1985, 3, 7)).1, Method::Exact);
        assert_eq!(date_similarity(d(1985, 3, 7), d(1985, 7, 3)).1, Method::DayMonthSwapped);
        assert_eq!(date_similarity(d(1985, 3, 7), d(1985, 3, 8)).1, Method::OneDigit);
        assert_eq!(date_similarity(d(1985, 3, 17), d(1985, 3, 9)).1, Method::NearYear);
        assert_eq!(date_similarity(d(1985, 3, 12), d(1985, 3, 21)).1, Method::DigitsTransposed);
        assert_eq!(date_similarity(d(1985, 3, 7), d(1958, 3, 7)).1, Method::DigitsTransposed);
        assert_eq!(date_similarity(d(1989, 12, 7), d(1990, 12, 7)).1, Method::YearOffByOne);
        assert_eq!(date_similarity(d(1985, 3, 7), d(1986, 9, 20)).1, Method::NearYear);
        assert_eq!(date_similarity(d(1985, 3, 7), d(1970, 9, 20)).1, Method::Different);
    }

    proptest::proptest! {
        #[test]
        fn ascii_jaro_winkler_is_strsims(a in "[a-e0-2 ]{0,70}", b in "[a-e0-2 ]{0,70}") {
            if a.len() <= 64 && b.len() <= 64 {
                proptest::prop_assert_eq!(jaro_winkler_ascii(a.as_bytes(), b.as_bytes()), strsim::jaro_winkler(&a, &b));
            }
            proptest::prop_assert_eq!(jw(&a, &b), jw(&b, &a));
        }
    }

    #[test]
    fn one_edit_tells_transpositions() {
        assert_eq!(one_edit("612345678", "612354678"), Some(Method::DigitsTransposed));
        assert_eq!(one_edit("612345678", "612345679"), Some(Method::OneEdit));
        assert_eq!(one_edit("612345678", "612345678"), None);
        assert_eq!(one_edit("612345678", "698765432"), None);
        assert_eq!(one_edit("61234567", "612345678"), Some(Method::OneEdit));
        assert_eq!(one_edit("612345678", "12345678"), Some(Method::OneEdit));
        assert_eq!(one_edit("612345678", "6123456"), None);
        assert_eq!(one_edit("612345678", "621345687"), None);
    }
}
