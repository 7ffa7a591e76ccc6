//! MOSIP's identifier filters (kernel id generator and validator), as configuration with MOSIP's
//! defaults. Every rule here is written out by hand rather than as MOSIP's regexes, because the
//! `regex` crate has no back-references; the tests check them against MOSIP's literal regexes.

use crate::verhoeff;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Attempts `IdRules::generate` makes before it gives up. With MOSIP's UIN defaults about one
/// candidate in eleven passes, so running out means the rules are (nearly) unsatisfiable.
pub const GENERATE_ATTEMPTS_MAX: u32 = 100_000;

/// The rule an identifier broke. `code()` is stable and machine-readable; the message never
/// repeats the identifier itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdRule {
    #[error("must be {expected} digits long, found {actual} characters")]
    Length { expected: usize, actual: usize },
    #[error("must contain only the digits 0-9")]
    NotDigits,
    #[error("must not start with the digit {0}")]
    StartsWith(char),
    #[error("must not contain an ascending or descending run of {limit} digits (at position {at})")]
    Sequence { limit: usize, at: usize },
    #[error("a digit must not repeat within {limit} positions (at position {at})")]
    RepeatingDigit { limit: usize, at: usize },
    #[error("a block of {limit} or more digits must not appear twice (at position {at})")]
    RepeatingBlock { limit: usize, at: usize },
    #[error("must not contain {limit} consecutive even digits from 2,4,6,8 (at position {at})")]
    EvenDigits { limit: usize, at: usize },
    #[error("the first {limit} digits must not equal the last {limit}")]
    FirstEqualsLast { limit: usize },
    #[error("the first {limit} digits must not equal the last {limit} reversed")]
    FirstEqualsLastReversed { limit: usize },
    #[error("must not contain a restricted number (at position {at})")]
    Restricted { at: usize },
    #[error("must not contain a cyclic number (at position {at})")]
    Cyclic { at: usize },
    #[error("the check digit is wrong (Verhoeff)")]
    Checksum,
    #[error("no valid identifier found in {GENERATE_ATTEMPTS_MAX} attempts: the rules are too strict")]
    Unsatisfiable,
}

impl IdRule {
    /// Stable, machine-readable name of the rule.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            IdRule::Length { .. } => "length",
            IdRule::NotDigits => "not_digits",
            IdRule::StartsWith(_) => "not_start_with",
            IdRule::Sequence { .. } => "sequence",
            IdRule::RepeatingDigit { .. } => "repeating_digit",
            IdRule::RepeatingBlock { .. } => "repeating_block",
            IdRule::EvenDigits { .. } => "conjugative_even_digits",
            IdRule::FirstEqualsLast { .. } => "first_equals_last",
            IdRule::FirstEqualsLastReversed { .. } => "first_equals_last_reversed",
            IdRule::Restricted { .. } => "restricted_number",
            IdRule::Cyclic { .. } => "cyclic_number",
            IdRule::Checksum => "checksum",
            IdRule::Unsatisfiable => "unsatisfiable_rules",
        }
    }
}

/// The filters a number must pass. `None` or empty disables a filter. Names follow MOSIP's
/// `mosip.kernel.{uin,vid}.*` properties so an integrator can carry settings over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdRules {
    /// Total length including the check digit.
    pub length: usize,
    /// `sequence-limit`: no ascending or descending run (wrapping 9→0) of this many digits.
    pub sequence_limit: Option<usize>,
    /// `repeating-limit`: no `(\d)\d{0,limit-1}\1`.
    pub repeating_limit: Option<usize>,
    /// `repeating-block-limit`: no `(\d{limit,}).*?\1`.
    pub repeating_block_limit: Option<usize>,
    /// `conjugative-even-digits-limit`: no `[2468]{limit}`.
    pub conjugative_even_digits_limit: Option<usize>,
    /// `digits-limit`: the first `n` digits must differ from the last `n`.
    pub digits_limit: Option<usize>,
    /// `reverse-digits-limit`: the first `n` digits must differ from the last `n` reversed.
    pub reverse_digits_limit: Option<usize>,
    /// `restricted-numbers`: substrings that must not appear.
    pub restricted_numbers: Vec<String>,
    /// `not-start-with`: forbidden first digits.
    pub not_start_with: Vec<char>,
    /// Reject the cyclic numbers (1/7 = 142857, 1/17, 1/19, …) as substrings.
    pub reject_cyclic_numbers: bool,
}

impl Default for IdRules {
    fn default() -> Self {
        Self::uin_default()
    }
}

impl IdRules {
    /// MOSIP's UIN defaults (`application-default.properties`).
    #[must_use]
    pub fn uin_default() -> Self {
        Self {
            length: 10,
            sequence_limit: Some(3),
            repeating_limit: Some(2),
            repeating_block_limit: Some(2),
            conjugative_even_digits_limit: Some(3),
            digits_limit: Some(5),
            reverse_digits_limit: Some(5),
            restricted_numbers: vec!["786".into(), "666".into()],
            not_start_with: vec!['0', '1'],
            reject_cyclic_numbers: true,
        }
    }

    /// MOSIP's VID defaults: no even-digit, first/last or cyclic filters.
    #[must_use]
    pub fn vid_default() -> Self {
        Self {
            length: 16,
            sequence_limit: Some(3),
            repeating_limit: Some(2),
            repeating_block_limit: Some(2),
            conjugative_even_digits_limit: None,
            digits_limit: None,
            reverse_digits_limit: None,
            restricted_numbers: vec!["786".into(), "666".into()],
            not_start_with: vec!['0', '1'],
            reject_cyclic_numbers: false,
        }
    }

    /// Checks the rules themselves, so a bad configuration fails at start, not at first use.
    ///
    /// # Errors
    /// A sentence naming the offending setting.
    pub fn check_config(&self) -> Result<(), String> {
        if !(4..=64).contains(&self.length) {
            return Err(format!("length must be between 4 and 64, not {}", self.length));
        }
        for (name, v) in [
            ("sequence_limit", self.sequence_limit),
            ("repeating_limit", self.repeating_limit),
            ("repeating_block_limit", self.repeating_block_limit),
            ("conjugative_even_digits_limit", self.conjugative_even_digits_limit),
        ] {
            if v.is_some_and(|n| n < 1 || n > self.length) {
                return Err(format!("{name} must be between 1 and the length"));
            }
        }
        for (name, v) in [("digits_limit", self.digits_limit), ("reverse_digits_limit", self.reverse_digits_limit)] {
            if v.is_some_and(|n| n < 1 || 2 * n > self.length) {
                return Err(format!("{name} must be between 1 and half the length"));
            }
        }
        if self.restricted_numbers.iter().any(|r| r.is_empty() || !r.bytes().all(|b| b.is_ascii_digit())) {
            return Err("restricted_numbers must be non-empty strings of digits".into());
        }
        if self.not_start_with.iter().any(|c| !c.is_ascii_digit()) {
            return Err("not_start_with must list digits".into());
        }
        Ok(())
    }

    /// Checks `s` against every rule, in a fixed order, and names the first it breaks.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check(&self, s: &str) -> Result<(), IdRule> {
        match self.violations_up_to(s, 1).into_iter().next() {
            Some(rule) => Err(rule),
            None => Ok(()),
        }
    }

    /// Every rule `s` breaks, in the same order as `check` (empty when valid). For people:
    /// `1234567890` breaks both `not_start_with` and `sequence`, and an operator wants both named.
    #[must_use]
    pub fn violations(&self, s: &str) -> Vec<IdRule> {
        self.violations_up_to(s, usize::MAX)
    }

    fn violations_up_to(&self, s: &str, max: usize) -> Vec<IdRule> {
        if s.len() != self.length {
            return vec![IdRule::Length { expected: self.length, actual: s.chars().count() }];
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return vec![IdRule::NotDigits];
        }
        let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let mut found = Vec::new();
        let checks: [&dyn Fn() -> Option<IdRule>; 10] = [
            &|| self.not_start_with.iter().find(|&&c| s.starts_with(c)).map(|&c| IdRule::StartsWith(c)),
            &|| self.sequence_limit.and_then(|limit| find_sequence(&d, limit).map(|at| IdRule::Sequence { limit, at })),
            &|| self.repeating_limit.and_then(|limit| find_repeating_digit(&d, limit).map(|at| IdRule::RepeatingDigit { limit, at })),
            &|| self.repeating_block_limit.and_then(|limit| find_repeating_block(&d, limit).map(|at| IdRule::RepeatingBlock { limit, at })),
            &|| self.conjugative_even_digits_limit.and_then(|limit| find_even_run(&d, limit).map(|at| IdRule::EvenDigits { limit, at })),
            &|| self.digits_limit.filter(|&n| d[..n] == d[d.len() - n..]).map(|limit| IdRule::FirstEqualsLast { limit }),
            &|| {
                self.reverse_digits_limit
                    .filter(|&n| d[..n].iter().eq(d[d.len() - n..].iter().rev()))
                    .map(|limit| IdRule::FirstEqualsLastReversed { limit })
            },
            &|| self.restricted_numbers.iter().find_map(|r| s.find(r.as_str())).map(|at| IdRule::Restricted { at }),
            &|| {
                if !self.reject_cyclic_numbers {
                    return None;
                }
                cyclic_numbers().iter().filter(|c| c.len() <= s.len()).find_map(|c| s.find(c.as_str())).map(|at| IdRule::Cyclic { at })
            },
            &|| (!verhoeff::is_valid(&d)).then_some(IdRule::Checksum),
        ];
        for check in checks {
            if found.len() >= max {
                break;
            }
            if let Some(rule) = check() {
                found.push(rule);
            }
        }
        found
    }

    /// Draws random numbers until one passes every rule: `length - 1` uniform random digits, then
    /// the Verhoeff check digit (as MOSIP's generator does).
    ///
    /// # Errors
    /// `IdRule::Unsatisfiable` after `GENERATE_ATTEMPTS_MAX` failed candidates.
    pub fn generate<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<String, IdRule> {
        let mut d = vec![0u8; self.length];
        let mut s = String::with_capacity(self.length);
        for _ in 0..GENERATE_ATTEMPTS_MAX {
            for x in &mut d[..self.length - 1] {
                *x = rng.random_range(0..10);
            }
            d[self.length - 1] = verhoeff::check_digit(&d[..self.length - 1]);
            s.clear();
            s.extend(d.iter().map(|&x| char::from(b'0' + x)));
            if self.check(&s).is_ok() {
                return Ok(s);
            }
        }
        Err(IdRule::Unsatisfiable)
    }
}

/// Start of the first run of `limit` digits each one above (or each one below) the previous,
/// wrapping 9→0: MOSIP checks against "01234567890123456789" and its reverse.
fn find_sequence(d: &[u8], limit: usize) -> Option<usize> {
    if limit < 2 {
        return (limit == 1 && !d.is_empty()).then_some(0);
    }
    d.windows(limit).position(|w| {
        let up = w.windows(2).all(|p| p[1] == (p[0] + 1) % 10);
        let down = w.windows(2).all(|p| p[0] == (p[1] + 1) % 10);
        up || down
    })
}

/// `(\d)\d{0,limit-1}\1`: the same digit twice with at most `limit - 1` digits between.
fn find_repeating_digit(d: &[u8], limit: usize) -> Option<usize> {
    (0..d.len()).find(|&i| (i + 1..=(i + limit).min(d.len() - 1)).any(|j| d[i] == d[j]))
}

/// `(\d{limit,}).*?\1`: some block of `limit` digits appears again later without overlapping.
/// Checking blocks of exactly `limit` digits suffices: a longer repeated block repeats its prefix.
fn find_repeating_block(d: &[u8], limit: usize) -> Option<usize> {
    (0..d.len().saturating_sub(limit)).find(|&i| {
        let block = &d[i..i + limit];
        (i + limit..=d.len() - limit).any(|j| &d[j..j + limit] == block)
    })
}

/// `[2468]{limit}`: a run of `limit` even digits, not counting 0 (as MOSIP's regex does).
fn find_even_run(d: &[u8], limit: usize) -> Option<usize> {
    d.windows(limit).position(|w| w.iter().all(|&x| matches!(x, 2 | 4 | 6 | 8)))
}

/// The cyclic numbers MOSIP rejects: the repetends of 1/p for the full-reptend primes
/// 7, 17, 19, 23, 29, 47, 59, 61 and 97, each p − 1 digits with its leading zeros
/// (142857, 0588235294117647, …), computed by long division rather than copied.
#[must_use]
pub fn cyclic_numbers() -> &'static [String] {
    static CYCLIC: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CYCLIC.get_or_init(|| {
        [7u32, 17, 19, 23, 29, 47, 59, 61, 97]
            .iter()
            .map(|&p| {
                let mut rem = 1u32;
                (1..p)
                    .map(|_| {
                        rem *= 10;
                        let digit = rem / p;
                        rem %= p;
                        char::from_digit(digit, 10).unwrap_or('?')
                    })
                    .collect()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Result<(), IdRule> {
        IdRules::uin_default().check(s)
    }

    /// Appends the Verhoeff digit so a test isolates the filter it is about.
    fn with_check(payload: &str) -> String {
        let d: Vec<u8> = payload.bytes().map(|b| b - b'0').collect();
        format!("{payload}{}", verhoeff::check_digit(&d))
    }

    #[test]
    fn cyclic_numbers_are_the_known_repetends() {
        let c = cyclic_numbers();
        assert_eq!(c[0], "142857");
        assert_eq!(c[1], "0588235294117647");
        assert_eq!(c[2], "052631578947368421");
        assert_eq!(c[3], "0434782608695652173913");
        assert_eq!(c[4], "0344827586206896551724137931");
        assert_eq!(c.iter().map(String::len).collect::<Vec<_>>(), [6, 16, 18, 22, 28, 46, 58, 60, 96]);
    }

    #[test]
    fn each_rule_is_named() {
        assert_eq!(rule("123").unwrap_err().code(), "length");
        assert_eq!(rule("12345abcde").unwrap_err().code(), "not_digits");
        assert_eq!(rule(&with_check("123456789")).unwrap_err(), IdRule::StartsWith('1'));
        assert_eq!(rule(&with_check("234567890")).unwrap_err().code(), "sequence");
        assert_eq!(rule(&with_check("290138574")).unwrap_err().code(), "sequence"); // 901 wraps
        assert_eq!(rule(&with_check("473210958")).unwrap_err().code(), "sequence"); // 321
        assert_eq!(rule(&with_check("471185930")).unwrap_err().code(), "repeating_digit"); // 11
        assert_eq!(rule(&with_check("471595830")).unwrap_err().code(), "repeating_digit"); // 595
        assert_eq!(rule(&with_check("473904739")).unwrap_err().code(), "repeating_block"); // 47..47
        assert_eq!(rule(&with_check("524830591")).unwrap_err().code(), "conjugative_even_digits"); // 248
        assert_eq!(rule(&with_check("537869402")).unwrap_err().code(), "restricted_number");
        // 142857 contains 428, which the even-digit rule catches first under the defaults.
        assert_eq!(rule(&with_check("314285793")).unwrap_err().code(), "conjugative_even_digits");
        let no_even = IdRules { conjugative_even_digits_limit: None, ..IdRules::uin_default() };
        assert_eq!(no_even.check(&with_check("314285793")).unwrap_err().code(), "cyclic_number");
    }

    #[test]
    fn first_last_rules() {
        // With every other filter off, only the rule under test can fire.
        let only = |digits_limit, reverse_digits_limit| IdRules {
            sequence_limit: None,
            repeating_limit: None,
            repeating_block_limit: None,
            conjugative_even_digits_limit: None,
            restricted_numbers: vec![],
            not_start_with: vec![],
            reject_cyclic_numbers: false,
            digits_limit,
            reverse_digits_limit,
            ..IdRules::uin_default()
        };
        // A number whose halves are equal has a check digit we do not control, so these check the
        // filters alone.
        assert_eq!(only(Some(5), None).violations("3052930529")[0].code(), "first_equals_last");
        assert_eq!(only(None, Some(5)).violations("3052992503")[0].code(), "first_equals_last_reversed");
    }

    #[test]
    fn wrong_check_digit_is_named() {
        let good = IdRules::uin_default().generate(&mut rand::rng()).unwrap();
        let last = good.as_bytes()[9] - b'0';
        for wrong in (0..10u8).filter(|&x| x != last) {
            let bad = format!("{}{wrong}", &good[..9]);
            // A different last digit may break a filter too, but the checksum is always named.
            assert!(rule(&bad).is_err());
            assert!(IdRules::uin_default().violations(&bad).contains(&IdRule::Checksum), "{bad}");
        }
    }

    #[test]
    fn every_broken_rule_is_listed() {
        let codes: Vec<&str> = IdRules::uin_default().violations("1234567890").iter().map(IdRule::code).collect();
        assert!(codes.starts_with(&["not_start_with", "sequence"]), "{codes:?}");
        assert!(IdRules::uin_default().violations(&IdRules::uin_default().generate(&mut rand::rng()).unwrap()).is_empty());
        assert_eq!(IdRules::uin_default().violations("12").len(), 1, "a wrong length stops the checks");
    }

    #[test]
    fn config_is_checked() {
        assert!(IdRules::uin_default().check_config().is_ok());
        assert!(IdRules::vid_default().check_config().is_ok());
        let bad = IdRules { digits_limit: Some(6), ..IdRules::uin_default() };
        assert!(bad.check_config().is_err());
        let bad = IdRules { not_start_with: vec!['x'], ..IdRules::uin_default() };
        assert!(bad.check_config().is_err());
    }

    #[test]
    fn impossible_rules_give_up() {
        let rules = IdRules { not_start_with: ('0'..='9').collect(), ..IdRules::uin_default() };
        assert_eq!(rules.generate(&mut rand::rng()), Err(IdRule::Unsatisfiable));
    }
}
