//! Message templates per event and language: built-in defaults (English, French, Arabic) that a
//! country overrides or extends with files `<dir>/<event>.<lang>.txt`. A template's first line is
//! the subject, the rest (after one optional empty line) the body; `{{name}}` is a variable.
//!
//! Rendering refuses any variable holding a control character (CR, LF, …): a subject line with a
//! line break in it would let a value add mail headers, and no legitimate name, number or reason
//! code needs one.

use crate::NotifyError;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Largest template file.
pub const TEMPLATE_BYTES_MAX: usize = 16 * 1024;
/// Most template files read from a directory.
pub const TEMPLATE_FILES_MAX: usize = 1000;
/// Longest variable value, in characters.
pub const VAR_CHARS_MAX: usize = 500;
/// Most variables per message.
pub const VARS_MAX: usize = 16;

/// A template split into subject and body, both checked for well-formed `{{variables}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    subject: String,
    body: String,
}

/// A rendered message.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Rendered {
    /// The text names the person: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendered { .. }")
    }
}

impl Template {
    /// # Errors
    /// `Template` when the text has no subject line, a control character in the subject, or a
    /// malformed `{{variable}}`.
    pub fn parse(text: &str) -> Result<Self, NotifyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (subject, rest) = text.split_once('\n').unwrap_or((text, ""));
        let subject = subject.trim_end_matches('\r').trim();
        let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).unwrap_or(rest);
        if subject.is_empty() || subject.chars().any(char::is_control) {
            return Err(NotifyError::Template("a template's first line is its subject: one line of text"));
        }
        let t = Template { subject: subject.to_owned(), body: rest.replace("\r\n", "\n") };
        names(&t.subject)?;
        names(&t.body)?;
        Ok(t)
    }

    /// Fills in `vars`.
    ///
    /// # Errors
    /// `Variable` when a variable the template uses is missing or holds a control character.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<Rendered, NotifyError> {
        check_vars(vars)?;
        Ok(Rendered { subject: fill(&self.subject, vars)?, body: fill(&self.body, vars)? })
    }
}

/// Checks caller-supplied variables: names are lowercase identifiers, values printable text
/// without control characters (so no CR/LF can reach a header), everything bounded.
///
/// # Errors
/// `Variable` naming the rule, never the value.
pub fn check_vars(vars: &BTreeMap<String, String>) -> Result<(), NotifyError> {
    if vars.len() > VARS_MAX {
        return Err(NotifyError::Variable("too many variables (at most 16)"));
    }
    for (k, v) in vars {
        if !is_var_name(k) {
            return Err(NotifyError::Variable("a variable name is 1..=32 lowercase letters, digits or underscores"));
        }
        if v.chars().count() > VAR_CHARS_MAX {
            return Err(NotifyError::Variable("a variable is longer than 500 characters"));
        }
        if v.chars().any(char::is_control) {
            return Err(NotifyError::Variable("a variable holds a control character (CR, LF, …)"));
        }
    }
    Ok(())
}

fn is_var_name(k: &str) -> bool {
    !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The variable names used in `text`, checking the syntax.
fn names(text: &str) -> Result<Vec<&str>, NotifyError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(NotifyError::Template("`{{` without `}}` in a template"))?;
        let name = after[..end].trim();
        if !is_var_name(name) {
            return Err(NotifyError::Template("a template variable is 1..=32 lowercase letters, digits or underscores"));
        }
        out.push(name);
        rest = &after[end + 2..];
    }
    Ok(out)
}

fn fill(text: &str, vars: &BTreeMap<String, String>) -> Result<String, NotifyError> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(NotifyError::Template("`{{` without `}}` in a template"))?;
        let value = vars.get(after[..end].trim()).ok_or(NotifyError::Variable("the template uses a variable the message does not have"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every template in force: files over built-ins, by `(event, language)`.
#[derive(Debug, Clone)]
pub struct Templates {
    by_key: HashMap<(String, String), Template>,
    fallback: String,
}

/// The built-in templates: (event, language, text).
const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "registration.issued",
        "eng",
        "Your national identity number\n\nDear {{name}},\n\nYour registration is complete. Your Unique Identification Number (UIN) is {{uin}}.\nKeep it safe: you will need it to prove who you are.\n",
    ),
    (
        "registration.issued",
        "fra",
        "Votre numéro d'identité national\n\nBonjour {{name}},\n\nVotre enregistrement est terminé. Votre numéro d'identification unique (UIN) est {{uin}}.\nConservez-le précieusement : il vous servira à prouver votre identité.\n",
    ),
    (
        "registration.issued",
        "ara",
        "رقم هويتك الوطنية\n\nعزيزي/عزيزتي {{name}}،\n\nاكتمل تسجيلك. رقم التعريف الفريد الخاص بك هو {{uin}}.\nاحتفظ به في مكان آمن، فستحتاج إليه لإثبات هويتك.\n",
    ),
    (
        "registration.duplicate",
        "eng",
        "Your registration {{rid}}\n\nDear {{name}},\n\nYou are already registered, so registration {{rid}} did not give you a new number.\nIf you have lost your number, please visit a registration centre.\n",
    ),
    (
        "registration.duplicate",
        "fra",
        "Votre enregistrement {{rid}}\n\nBonjour {{name}},\n\nVous êtes déjà enregistré(e) : l'enregistrement {{rid}} ne vous a pas attribué de nouveau numéro.\nSi vous avez perdu votre numéro, rendez-vous dans un centre d'enregistrement.\n",
    ),
    (
        "registration.duplicate",
        "ara",
        "تسجيلك رقم {{rid}}\n\nعزيزي/عزيزتي {{name}}،\n\nأنت مسجل بالفعل، لذلك لم يمنحك التسجيل {{rid}} رقماً جديداً.\nإذا فقدت رقمك، يرجى زيارة أحد مراكز التسجيل.\n",
    ),
    (
        "registration.rejected",
        "eng",
        "Your registration {{rid}} was not accepted\n\nDear {{name}},\n\nYour registration {{rid}} could not be accepted ({{reason}}).\nPlease visit a registration centre to register again.\n",
    ),
    (
        "registration.rejected",
        "fra",
        "Votre enregistrement {{rid}} n'a pas été accepté\n\nBonjour {{name}},\n\nVotre enregistrement {{rid}} n'a pas pu être accepté ({{reason}}).\nVeuillez vous rendre dans un centre d'enregistrement pour vous enregistrer à nouveau.\n",
    ),
    (
        "registration.rejected",
        "ara",
        "لم يُقبل تسجيلك رقم {{rid}}\n\nعزيزي/عزيزتي {{name}}،\n\nتعذّر قبول تسجيلك {{rid}} ({{reason}}).\nيرجى زيارة أحد مراكز التسجيل للتسجيل من جديد.\n",
    ),
    (
        "registration.adjudication",
        "eng",
        "Your registration {{rid}} is being reviewed\n\nDear {{name}},\n\nYour registration {{rid}} needs a review by our staff. We will write to you again once it is decided.\n",
    ),
    (
        "registration.adjudication",
        "fra",
        "Votre enregistrement {{rid}} est en cours d'examen\n\nBonjour {{name}},\n\nVotre enregistrement {{rid}} doit être examiné par nos services. Nous vous écrirons à nouveau dès qu'une décision sera prise.\n",
    ),
    (
        "registration.adjudication",
        "ara",
        "تسجيلك رقم {{rid}} قيد المراجعة\n\nعزيزي/عزيزتي {{name}}،\n\nيحتاج تسجيلك {{rid}} إلى مراجعة من موظفينا. سنراسلك مجدداً فور اتخاذ القرار.\n",
    ),
];

impl Templates {
    /// The built-ins, then every `<event>.<lang>.txt` in `dir` (when given and present) over
    /// them. `fallback` is the language used when a message's own has no template.
    ///
    /// # Errors
    /// `Template` for an unreadable, oversized or malformed file (named by its file name, which
    /// is ours, not a person's), or too many files.
    pub fn load(dir: Option<&Path>, fallback: &str) -> Result<Self, NotifyError> {
        let mut by_key = HashMap::new();
        for (event, lang, text) in BUILT_IN {
            by_key.insert(((*event).to_owned(), (*lang).to_owned()), Template::parse(text)?);
        }
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(dir).map_err(|e| NotifyError::TemplateFile(dir.display().to_string(), e.to_string()))?;
            let mut n = 0;
            for e in entries.flatten() {
                let path = e.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                let Some(stem) = name.strip_suffix(".txt") else { continue };
                let Some((event, lang)) = stem.rsplit_once('.') else { continue };
                n += 1;
                if n > TEMPLATE_FILES_MAX {
                    return Err(NotifyError::Template("more than 1000 template files"));
                }
                let bad = |why: String| NotifyError::TemplateFile(name.to_owned(), why);
                let meta = std::fs::metadata(&path).map_err(|e| bad(e.to_string()))?;
                if meta.len() > TEMPLATE_BYTES_MAX as u64 {
                    return Err(bad("larger than 16 KiB".into()));
                }
                let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
                let t = Template::parse(&text).map_err(|e| bad(e.to_string()))?;
                by_key.insert((event.to_owned(), lang.to_owned()), t);
            }
        }
        let t = Templates { by_key, fallback: fallback.to_owned() };
        Ok(t)
    }

    /// The language a message for `event` will be written in: `wanted` when there is a
    /// template for it, else the fallback.
    ///
    /// # Errors
    /// `NoTemplate` when neither exists.
    pub fn language_for(&self, event: &str, wanted: Option<&str>) -> Result<String, NotifyError> {
        for lang in wanted.into_iter().chain(std::iter::once(self.fallback.as_str())) {
            if self.by_key.contains_key(&(event.to_owned(), lang.to_owned())) {
                return Ok(lang.to_owned());
            }
        }
        Err(NotifyError::NoTemplate)
    }

    /// Renders `event` in `language` (or the fallback).
    ///
    /// # Errors
    /// `NoTemplate`; `Variable` as `Template::render`.
    pub fn render(&self, event: &str, language: &str, vars: &BTreeMap<String, String>) -> Result<Rendered, NotifyError> {
        let lang = self.language_for(event, Some(language))?;
        self.by_key.get(&(event.to_owned(), lang)).ok_or(NotifyError::NoTemplate)?.render(vars)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn built_ins_render_in_every_language() {
        let t = Templates::load(None, "eng").unwrap();
        let v = vars(&[("name", "Amina"), ("uin", "4783920165"), ("rid", "1"), ("reason", "quality_low")]);
        for (event, lang, _) in BUILT_IN {
            let r = t.render(event, lang, &v).unwrap();
            assert!(!r.subject.is_empty() && !r.body.contains("{{"), "{event}.{lang}");
        }
        let r = t.render("registration.issued", "ara", &v).unwrap();
        assert!(r.body.contains("4783920165") && r.subject.starts_with("رقم"));
        // No template in this language: the fallback.
        assert_eq!(t.render("registration.issued", "swa", &v).unwrap().subject, "Your national identity number");
        assert!(matches!(t.render("no.such.event", "eng", &v), Err(NotifyError::NoTemplate)));
    }

    #[test]
    fn line_breaks_in_variables_are_refused() {
        let t = Templates::load(None, "eng").unwrap();
        for evil in ["x\r\nBcc: victim@example.org", "x\nBcc: a@b", "x\rY", "tab\there"] {
            let v = vars(&[("name", "A"), ("rid", evil)]);
            assert!(matches!(t.render("registration.duplicate", "eng", &v), Err(NotifyError::Variable(_))), "{evil:?}");
        }
        let missing = vars(&[("name", "A")]);
        assert!(matches!(t.render("registration.issued", "eng", &missing), Err(NotifyError::Variable(_))));
    }

    #[test]
    fn files_override_and_extend() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registration.issued.eng.txt"), "Welcome {{name}}\n\nUIN: {{uin}}\n").unwrap();
        std::fs::write(dir.path().join("registration.issued.wol.txt"), "Dalal ak jàmm\r\nSa UIN: {{uin}}\r\n").unwrap();
        let t = Templates::load(Some(dir.path()), "eng").unwrap();
        let v = vars(&[("name", "Awa"), ("uin", "123")]);
        let r = t.render("registration.issued", "eng", &v).unwrap();
        assert_eq!((r.subject.as_str(), r.body.as_str()), ("Welcome Awa", "UIN: 123\n"));
        let r = t.render("registration.issued", "wol", &v).unwrap();
        assert_eq!((r.subject.as_str(), r.body.as_str()), ("Dalal ak jàmm", "Sa UIN: 123\n"));
        std::fs::write(dir.path().join("bad.eng.txt"), "Hello {{name\n").unwrap();
        assert!(matches!(Templates::load(Some(dir.path()), "eng"), Err(NotifyError::TemplateFile(..))));
    }
}
