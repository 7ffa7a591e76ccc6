//! Text normalization per language (Unicode decomposition, diacritics, case, punctuation,
//! titles, replacement rules, particles), transliteration to ASCII for matching keys, and the
//! phonetic keys of names (Double Metaphone and a consonant skeleton).
//!
//! Transliteration is lossy (Arabic script writes no short vowels): its output is only ever a
//! matching key, compared together with phonetic codes that ignore vowels, never shown or stored
//! as the person's name.

use crate::Error;
use crate::config::{Config, LanguageRules};
use rphonetic::DoubleMetaphone;
use std::collections::{HashMap, HashSet};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Passes of the token rules until nothing changes (a validated configuration needs two; the
/// bound keeps a pathological one finite).
const TOKEN_PASSES_MAX: usize = 4;
/// Length of Double Metaphone codes: 4 (the algorithm's classic length) groups "Abdulrahman" and
/// "Abdullah" together; 6 tells them apart while staying short enough to absorb late typos.
pub const METAPHONE_CODE_LEN: usize = 6;

/// Characters deleted rather than turned into a space, so that "O'Brien" = "OBrien".
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | 'ʼ' | 'ʻ' | '`' | '´' | 'ʹ' | '‘')
}

/// Arabic tatweel (kashida) only stretches a word; it is a letter by Unicode's classes.
const TATWEEL: char = '\u{0640}';

/// Case-folds, decomposes (NFKD), strips combining marks (diacritics, Arabic harakat), applies
/// the character foldings, deletes apostrophes and turns every other non-alphanumeric into a
/// space. The output is stable under the same folding.
fn fold_chars(text: &str, chars: &HashMap<char, String>, out: &mut String) {
    for c in text.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        for lower in c.to_lowercase() {
            for d in std::iter::once(lower).nfkd() {
                if is_combining_mark(d) || d == TATWEEL || is_apostrophe(d) {
                    continue;
                }
                if let Some(r) = chars.get(&d) {
                    out.push_str(r);
                } else if d.is_alphanumeric() {
                    out.push(d);
                } else {
                    out.push(' ');
                }
            }
        }
    }
}

/// One language's rules, merged with the common ones and folded.
#[derive(Debug, Default, Clone)]
struct Lang {
    titles: HashSet<String>,
    name_replacements: HashMap<String, Vec<String>>,
    particles: HashSet<String>,
    address_replacements: HashMap<String, Vec<String>>,
    chars: HashMap<char, String>,
}

/// The compiled rules of every configured language.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    langs: HashMap<String, Lang>,
    common: Lang,
}

fn invalid(what: String) -> Error {
    Error::InvalidConfig(what)
}

impl Rules {
    pub(crate) fn compile(config: &Config) -> Result<Rules, Error> {
        let common = compile_lang("common", &[&config.common])?;
        let mut langs = HashMap::new();
        for (code, rules) in &config.languages {
            langs.insert(code.clone(), compile_lang(code, &[rules, &config.common])?);
        }
        Ok(Rules { langs, common })
    }

    fn lang(&self, language: &str) -> &Lang {
        self.langs.get(language).unwrap_or(&self.common)
    }

    /// The tokens of a normalized name.
    pub(crate) fn name_tokens(&self, language: &str, text: &str) -> Vec<String> {
        let lang = self.lang(language);
        let mut folded = String::with_capacity(text.len());
        fold_chars(text, &lang.chars, &mut folded);
        let tokens: Vec<String> = folded.split_whitespace().map(str::to_owned).collect();
        apply_token_rules(tokens, |t| name_pass(lang, t))
    }

    /// The tokens of a normalized address.
    pub(crate) fn address_tokens(&self, language: &str, text: &str) -> Vec<String> {
        let lang = self.lang(language);
        let mut folded = String::with_capacity(text.len());
        fold_chars(text, &lang.chars, &mut folded);
        let tokens: Vec<String> = folded.split_whitespace().map(str::to_owned).collect();
        apply_token_rules(tokens, |t| replace(&lang.address_replacements, t))
    }

    /// The tokens of a name's matching key: normalized in its own script, transliterated to
    /// ASCII, normalized again (so Latin-script rules of the language apply to the result).
    pub(crate) fn name_key_tokens(&self, language: &str, text: &str) -> Vec<String> {
        let native = self.name_tokens(language, text).join(" ");
        self.name_tokens(language, &transliterate(&native))
    }

    /// The same for addresses and places.
    pub(crate) fn address_key_tokens(&self, language: &str, text: &str) -> Vec<String> {
        let native = self.address_tokens(language, text).join(" ");
        self.address_tokens(language, &transliterate(&native))
    }
}

fn apply_token_rules(mut tokens: Vec<String>, pass: impl Fn(Vec<String>) -> Vec<String>) -> Vec<String> {
    for _ in 0..TOKEN_PASSES_MAX {
        let next = pass(tokens.clone());
        if next == tokens {
            break;
        }
        tokens = next;
    }
    tokens
}

fn replace(table: &HashMap<String, Vec<String>>, tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        match table.get(&t) {
            Some(r) => out.extend(r.iter().cloned()),
            None => out.push(t),
        }
    }
    out
}

/// Replacements, then titles dropped, then particles glued to the token that follows them.
fn name_pass(lang: &Lang, tokens: Vec<String>) -> Vec<String> {
    let tokens = replace(&lang.name_replacements, tokens);
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut pending = String::new();
    let last = tokens.len().saturating_sub(1);
    for (i, t) in tokens.into_iter().enumerate() {
        if pending.is_empty() && lang.titles.contains(&t) {
            continue;
        }
        pending.push_str(&t);
        // A particle (or a run of them: "abd al") waits for the next token, unless it ends the
        // name. The joined run is checked again so that "a l" never becomes the particle "al".
        if i < last && lang.particles.contains(&pending) {
            continue;
        }
        if i < last && lang.particles.contains(&t) {
            continue;
        }
        out.push(std::mem::take(&mut pending));
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    out
}

fn fold_plain(text: &str) -> String {
    let mut out = String::new();
    fold_chars(text, &HashMap::new(), &mut out);
    out
}

fn fold_token(context: &str, what: &str, text: &str, chars: &HashMap<char, String>) -> Result<String, Error> {
    let mut out = String::new();
    fold_chars(text, chars, &mut out);
    let tokens: Vec<&str> = out.split_whitespace().collect();
    match tokens.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(invalid(format!("languages.{context}.{what}: each entry must be one word"))),
    }
}

fn fold_tokens(text: &str, chars: &HashMap<char, String>) -> Vec<String> {
    let mut out = String::new();
    fold_chars(text, chars, &mut out);
    out.split_whitespace().map(str::to_owned).collect()
}

/// Merges rule sets (the first wins for replacements) and folds every entry.
fn compile_lang(context: &str, sets: &[&LanguageRules]) -> Result<Lang, Error> {
    let mut lang = Lang::default();
    for set in sets.iter().rev() {
        for (k, v) in &set.characters {
            let key = fold_plain(k);
            let mut key_chars = key.chars();
            let (Some(c), None) = (key_chars.next(), key_chars.next()) else {
                return Err(invalid(format!("languages.{context}.characters: each key must be one character")));
            };
            lang.chars.insert(c, fold_plain(v));
        }
    }
    if lang.chars.values().any(|v| v.chars().any(|c| lang.chars.contains_key(&c))) {
        return Err(invalid(format!("languages.{context}.characters: a replacement contains a character that is itself replaced")));
    }
    let chars = lang.chars.clone();
    for set in sets.iter().rev() {
        for t in &set.titles {
            lang.titles.insert(fold_token(context, "titles", t, &chars)?);
        }
        for p in &set.particles {
            lang.particles.insert(fold_token(context, "particles", p, &chars)?);
        }
        for (k, v) in &set.name_replacements {
            lang.name_replacements.insert(fold_token(context, "name_replacements", k, &chars)?, fold_tokens(v, &chars));
        }
        for (k, v) in &set.address_replacements {
            lang.address_replacements.insert(fold_token(context, "address_replacements", k, &chars)?, fold_tokens(v, &chars));
        }
    }
    for (what, table) in [("name_replacements", &lang.name_replacements), ("address_replacements", &lang.address_replacements)] {
        if table.values().flatten().any(|t| table.contains_key(t)) {
            return Err(invalid(format!("languages.{context}.{what}: a replacement's word is itself replaced (chains are not allowed)")));
        }
    }
    Ok(lang)
}

/// Transliteration of any script to ASCII (lossy; for matching keys only).
pub fn transliterate(text: &str) -> String {
    any_ascii::any_ascii(text)
}

/// A consonant skeleton of an ASCII token: vowels dropped, `w`/`y` dropped after the first
/// letter (Arabic writes long vowels with them), `q`/`c` → `k`, a final `h` after a consonant
/// dropped (ta marbuta), runs squeezed. "Youssef", "Yusuf" and يوسف (`ywsf`) all give `ysf`;
/// "Mohammed" and محمد (`mhmd`) give `mhmd`. Written here because no phonetic algorithm in
/// rphonetic is built for vowel-less transliterations.
pub fn skeleton(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for (i, c) in token.chars().enumerate() {
        let c = match c {
            'q' | 'c' => 'k',
            'a' | 'e' | 'i' | 'o' | 'u' => continue,
            'w' | 'y' if i > 0 => continue,
            c if c.is_ascii_alphanumeric() => c,
            _ => continue,
        };
        if out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    if out.len() > 2 && out.ends_with('h') {
        out.pop();
    }
    out
}

/// Double Metaphone codes (primary, alternate) of an ASCII token.
pub(crate) fn metaphone(dm: &DoubleMetaphone, token: &str) -> (String, String) {
    let r = dm.double_metaphone(token);
    (r.primary(), r.alternate())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules::compile(&Config::default()).unwrap()
    }

    fn name(lang: &str, text: &str) -> String {
        rules().name_tokens(lang, text).join(" ")
    }

    fn key(lang: &str, text: &str) -> String {
        rules().name_key_tokens(lang, text).join(" ")
    }

    #[test]
    fn names_lose_case_diacritics_punctuation_and_titles() {
        assert_eq!(name("fra", "Mme Hélène  LEFÈVRE-Dupont"), "helene lefevre dupont");
        assert_eq!(name("eng", "Dr. John O'Brien, Jr."), "john obrien");
        assert_eq!(name("eng", "Mohd Al-Hassan"), "mohammed alhassan");
        assert_eq!(name("eng", "Mohammed El Hassan"), "mohammed alhassan");
        assert_eq!(name("eng", "Abd al-Rahman"), "abdalrahman");
        assert_eq!(name("eng", "Abdul Rahman"), "abdulrahman");
        // A trailing particle stays a word.
        assert_eq!(name("eng", "Rahman Al"), "rahman al");
        assert_eq!(name("ara", "السيد مُحَمَّد"), "محمد");
        assert_eq!(name("ara", "فاطمة"), "فاطمه");
        // Unknown languages get the common rules.
        assert_eq!(name("xyz", "Mr Smith"), "mr smith");
    }

    #[test]
    fn match_keys_are_ascii() {
        assert_eq!(key("ara", "محمد الحسن"), "mhmd lhsn");
        assert_eq!(key("eng", "Zoë Łukasz"), "zoe lukasz");
        assert!(key("ara", "عبد الرحمن").is_ascii());
    }

    #[test]
    fn skeletons_meet_across_scripts() {
        assert_eq!(skeleton("youssef"), "ysf");
        assert_eq!(skeleton("yusuf"), "ysf");
        assert_eq!(skeleton("ywsf"), "ysf");
        assert_eq!(skeleton("mohammed"), "mhmd");
        assert_eq!(skeleton("mhmd"), "mhmd");
        assert_eq!(skeleton("fatimah"), "ftm");
        assert_eq!(skeleton("ftmh"), "ftm");
        assert_eq!(skeleton("qasim"), skeleton("kassem"));
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut c = Config::default();
        c.common.name_replacements.insert("mohammed".into(), "muhammad".into());
        assert!(Rules::compile(&c).is_err(), "chain mohd → mohammed → muhammad");
        let mut c = Config::default();
        c.common.titles.push("two words".into());
        assert!(Rules::compile(&c).is_err());
        let mut c = Config::default();
        c.common.characters.insert("ab".into(), "c".into());
        assert!(Rules::compile(&c).is_err());
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(lang in prop::sample::select(vec!["eng", "fra", "ara", "xyz"]), text in "\\PC{0,40}") {
            let r = rules();
            let once = r.name_tokens(lang, &text).join(" ");
            prop_assert_eq!(r.name_tokens(lang, &once).join(" "), once.clone());
            let k = r.name_key_tokens(lang, &text).join(" ");
            prop_assert_eq!(r.name_key_tokens(lang, &k).join(" "), k.clone());
            prop_assert!(k.is_ascii());
            let a = r.address_tokens(lang, &text).join(" ");
            prop_assert_eq!(r.address_tokens(lang, &a).join(" "), a);
        }

        #[test]
        fn particle_heavy_names_are_idempotent(words in prop::collection::vec(prop::sample::select(vec!["al", "a", "l", "abd", "de", "la", "mohd", "el", "x", "mr"]), 0..8)) {
            let r = rules();
            let text = words.join(" ");
            let once = r.name_tokens("eng", &text).join(" ");
            prop_assert_eq!(r.name_tokens("eng", &once).join(" "), once);
        }
    }
}
