//! The identity schema: which fields a country records about a person, their types and rules.
//!
//! A country writes its schema as JSON (see `default.json`); `Schema::from_json` checks the schema
//! itself, and `Schema::validate` checks one person's record against it, returning every error at
//! once with a JSON-pointer path and a stable code. Error messages never repeat the value, because
//! values are personal data.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use time::Date;
use time::macros::format_description;

/// Longest text value any field may hold, whatever the schema says (characters).
pub const TEXT_CHARS_MAX: usize = 1024;
/// Most fields a schema may declare.
pub const FIELDS_MAX: usize = 256;
/// Most languages a schema may declare.
pub const LANGUAGES_MAX: usize = 16;
/// Longest regex pattern accepted in a schema (bytes), and the compiled-size cap that keeps a
/// hostile pattern from using unbounded memory.
pub const PATTERN_BYTES_MAX: usize = 512;
const PATTERN_COMPILED_BYTES_MAX: usize = 1 << 20;
/// Longest document or biometric reference (a blob id).
pub const REFERENCE_CHARS_MAX: usize = 256;

/// The value types a field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A JSON string.
    Text,
    /// `[{"language": "eng", "value": "..."}, ...]`, languages from the schema.
    MultilingualText,
    /// `"YYYY-MM-DD"` (ISO 8601 calendar date).
    Date,
    /// One of the field's `values`.
    Enum,
    /// International phone number: optional `+`, then 6 to 15 digits (E.164 length).
    Phone,
    /// An e-mail address.
    Email,
    /// `{"type": <one of document_types>, "format": "pdf", "ref": "<blob id>"}`.
    Document,
    /// `{"format": "cbeff", "ref": "<blob id>"}`.
    Biometric,
}

/// One field as the schema file declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Personal data: encrypted at rest and never logged. Defaults to true; say `false` only for
    /// fields such as a residence category.
    #[serde(default = "yes")]
    pub pii: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Regular expression each text value must match (the `regex` crate's syntax: no look-around
    /// or back-references, so length rules are `min_length`/`max_length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed codes, for `enum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Earliest and latest allowed dates, for `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_date: Option<String>,
    /// For `date`: reject dates after the validation day.
    #[serde(default)]
    pub not_in_future: bool,
    /// Allowed document types, for `document`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub document_types: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The languages a multilingual value may use; the mandatory ones must all be present.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Languages {
    pub mandatory: Vec<String>,
    #[serde(default)]
    pub optional: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    id: String,
    version: u32,
    languages: Languages,
    fields: Vec<FieldSpec>,
}

/// A checked schema, ready to validate records.
#[derive(Debug, Clone)]
pub struct Schema {
    file: SchemaFile,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    spec: FieldSpec,
    pattern: Option<Regex>,
    min_date: Option<Date>,
    max_date: Option<Date>,
}

/// A problem in the schema file itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is not valid JSON for a schema: {0}")]
    Json(String),
    #[error("field {field}: {problem}")]
    Field { field: String, problem: String },
    #[error("{0}")]
    Schema(String),
}

/// Stable codes for record validation errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotAnObject,
    UnknownField,
    Required,
    WrongType,
    TooShort,
    TooLong,
    PatternMismatch,
    NotAllowedValue,
    InvalidDate,
    DateOutOfRange,
    UnknownLanguage,
    DuplicateLanguage,
    MissingLanguage,
    InvalidPhone,
    InvalidEmail,
    InvalidReference,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::Required => "required",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::TooShort => "too_short",
            ErrorCode::TooLong => "too_long",
            ErrorCode::PatternMismatch => "pattern_mismatch",
            ErrorCode::NotAllowedValue => "not_allowed_value",
            ErrorCode::InvalidDate => "invalid_date",
            ErrorCode::DateOutOfRange => "date_out_of_range",
            ErrorCode::UnknownLanguage => "unknown_language",
            ErrorCode::DuplicateLanguage => "duplicate_language",
            ErrorCode::MissingLanguage => "missing_language",
            ErrorCode::InvalidPhone => "invalid_phone",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidReference => "invalid_reference",
        }
    }
}

/// One problem with one value of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the offending value, e.g. `/fullName/1/language`.
    pub path: String,
    pub code: ErrorCode,
    /// Human-readable; never contains the value.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.code.as_str())
    }
}

/// A record that passed `Schema::validate`: a JSON object of known, well-typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord(Map<String, Value>);

impl ValidRecord {
    #[must_use]
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    #[must_use]
    pub fn into_inner(self) -> Map<String, Value> {
        self.0
    }
}

const DATE_FORMAT: &[time::format_description::FormatItem<'static>] = format_description!("[year]-[month]-[day]");

fn parse_date(s: &str) -> Option<Date> {
    // `[year]` alone also accepts a sign and more digits; insist on exactly YYYY-MM-DD.
    (s.len() == 10).then(|| Date::parse(s, DATE_FORMAT).ok()).flatten()
}

impl Schema {
    /// The schema Tessera ships with: names, birth date, gender, address, contact, documents and
    /// biometrics, in English with optional French and Arabic.
    #[must_use]
    pub fn default_schema() -> Self {
        #[allow(clippy::expect_used)] // Checked by a unit test; a broken built-in schema is a build defect.
        Self::from_json(DEFAULT_SCHEMA_JSON).expect("the built-in default schema is valid")
    }

    /// Parses and checks a schema file.
    ///
    /// # Errors
    /// The first problem found in the schema itself.
    pub fn from_json(text: &str) -> Result<Self, SchemaError> {
        let file: SchemaFile = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Self::from_file(file)
    }

    fn from_file(file: SchemaFile) -> Result<Self, SchemaError> {
        if file.id.is_empty() {
            return Err(SchemaError::Schema("schema id must not be empty".into()));
        }
        let langs = file.languages.mandatory.iter().chain(&file.languages.optional);
        let mut seen = HashSet::new();
        for l in langs {
            if !(l.len() == 3 && l.bytes().all(|b| b.is_ascii_lowercase())) {
                return Err(SchemaError::Schema(format!("language {l:?} is not an ISO 639-3 code (three lowercase letters)")));
            }
            if !seen.insert(l.as_str()) {
                return Err(SchemaError::Schema(format!("language {l} is listed twice")));
            }
        }
        if file.languages.mandatory.is_empty() {
            return Err(SchemaError::Schema("at least one mandatory language is needed".into()));
        }
        if seen.len() > LANGUAGES_MAX {
            return Err(SchemaError::Schema(format!("at most {LANGUAGES_MAX} languages")));
        }
        if file.fields.is_empty() || file.fields.len() > FIELDS_MAX {
            return Err(SchemaError::Schema(format!("a schema has between 1 and {FIELDS_MAX} fields")));
        }
        let mut ids = HashSet::new();
        let fields = file
            .fields
            .iter()
            .map(|spec| {
                if !ids.insert(spec.id.as_str()) {
                    return Err(field_err(spec, "is declared twice"));
                }
                Field::check(spec)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { file, fields })
    }

    /// The schema's id and version, to stamp on every record validated with it.
    #[must_use]
    pub fn id_version(&self) -> (&str, u32) {
        (&self.file.id, self.file.version)
    }

    /// The declared fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().map(|f| &f.spec)
    }

    #[must_use]
    pub fn languages(&self) -> &Languages {
        &self.file.languages
    }

    /// The schema as JSON (for `tessera schema show` and the API).
    #[must_use]
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.file).unwrap_or(Value::Null)
    }

    /// Checks a whole record and returns every problem, not just the first.
    /// `today` is the validation day for `not_in_future` rules.
    ///
    /// # Errors
    /// Every field error found, in field order.
    pub fn validate(&self, record: &Value, today: Date) -> Result<ValidRecord, Vec<FieldError>> {
        let Some(obj) = record.as_object() else {
            return Err(vec![FieldError {
                path: String::new(),
                code: ErrorCode::NotAnObject,
                message: "a record must be a JSON object".into(),
            }]);
        };
        let mut errs = Vec::new();
        for key in obj.keys() {
            if !self.fields.iter().any(|f| &f.spec.id == key) {
                errs.push(FieldError {
                    path: pointer(&[key]),
                    code: ErrorCode::UnknownField,
                    message: "this field is not in the identity schema".into(),
                });
            }
        }
        for field in &self.fields {
            let path = pointer(&[&field.spec.id]);
            match obj.get(&field.spec.id) {
                None | Some(Value::Null) => {
                    if field.spec.required {
                        errs.push(FieldError { path, code: ErrorCode::Required, message: "this field is required".into() });
                    }
                }
                Some(v) => field.validate(v, &path, &self.file.languages, today, &mut errs),
            }
        }
        if errs.is_empty() {
            // Nulls of optional fields carry nothing: drop them so stored records stay canonical.
            Ok(ValidRecord(obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()))
        } else {
            Err(errs)
        }
    }
}

/// The built-in default schema, as shipped (`tessera schema show` prints it).
pub const DEFAULT_SCHEMA_JSON: &str = include_str!("default.json");

fn field_err(spec: &FieldSpec, problem: &str) -> SchemaError {
    SchemaError::Field { field: spec.id.clone(), problem: problem.into() }
}

/// RFC 6901 JSON pointer from path segments.
fn pointer(segments: &[&str]) -> String {
    segments.iter().fold(String::new(), |mut acc, s| {
        acc.push('/');
        acc.push_str(&s.replace('~', "~0").replace('/', "~1"));
        acc
    })
}

impl Field {
    fn check(spec: &FieldSpec) -> Result<Self, SchemaError> {
        let valid_id = !spec.id.is_empty()
            && spec.id.len() <= 64
            && spec.id.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && spec.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_id {
            return Err(field_err(spec, "id must be 1-64 ASCII letters, digits or _, starting with a letter"));
        }
        let texty = matches!(spec.kind, FieldType::Text | FieldType::MultilingualText);
        if !texty && (spec.min_length.is_some() || spec.max_length.is_some()) {
            return Err(field_err(spec, "min_length/max_length apply only to text fields"));
        }
        if let (Some(lo), Some(hi)) = (spec.min_length, spec.max_length)
            && lo > hi
        {
            return Err(field_err(spec, "min_length is greater than max_length"));
        }
        if spec.max_length.is_some_and(|m| m > TEXT_CHARS_MAX) {
            return Err(field_err(spec, &format!("max_length may not exceed {TEXT_CHARS_MAX}")));
        }
        if (spec.kind == FieldType::Enum) == spec.values.is_empty() {
            return Err(field_err(spec, "values are required for enum fields and allowed only there"));
        }
        if spec.kind != FieldType::Date && (spec.min_date.is_some() || spec.max_date.is_some() || spec.not_in_future) {
            return Err(field_err(spec, "min_date/max_date/not_in_future apply only to date fields"));
        }
        if spec.kind != FieldType::Document && !spec.document_types.is_empty() {
            return Err(field_err(spec, "document_types apply only to document fields"));
        }
        if matches!(spec.kind, FieldType::Document | FieldType::Biometric | FieldType::Enum | FieldType::Date) && spec.pattern.is_some() {
            return Err(field_err(spec, "pattern applies only to text, phone and email fields"));
        }
        let pattern = spec
            .pattern
            .as_deref()
            .map(|p| {
                if p.len() > PATTERN_BYTES_MAX {
                    return Err(field_err(spec, &format!("pattern is longer than {PATTERN_BYTES_MAX} bytes")));
                }
                regex::RegexBuilder::new(p)
                    .size_limit(PATTERN_COMPILED_BYTES_MAX)
                    .build()
                    .map_err(|e| field_err(spec, &format!("pattern does not compile: {e}")))
            })
            .transpose()?;
        let date = |d: &Option<String>| {
            d.as_deref().map(|s| parse_date(s).ok_or_else(|| field_err(spec, "min_date/max_date must be YYYY-MM-DD"))).transpose()
        };
        let (min_date, max_date) = (date(&spec.min_date)?, date(&spec.max_date)?);
        Ok(Self { spec: spec.clone(), pattern, min_date, max_date })
    }

    fn validate(&self, v: &Value, path: &str, langs: &Languages, today: Date, errs: &mut Vec<FieldError>) {
        let mut err = |path: String, code: ErrorCode, message: String| errs.push(FieldError { path, code, message });
        match self.spec.kind {
            FieldType::Text => match v.as_str() {
                Some(s) => self.check_text(s, path, &mut err),
                None => err(path.into(), ErrorCode::WrongType, "expected a string".into()),
            },
            FieldType::MultilingualText => self.check_multilingual(v, path, langs, &mut err),
            FieldType::Date => match v.as_str().map(parse_date) {
                None => err(path.into(), ErrorCode::WrongType, "expected a date string YYYY-MM-DD".into()),
                Some(None) => err(path.into(), ErrorCode::InvalidDate, "not a real calendar date in the form YYYY-MM-DD".into()),
                Some(Some(d)) => {
                    let late = self.max_date.is_some_and(|m| d > m) || (self.spec.not_in_future && d > today);
                    if self.min_date.is_some_and(|m| d < m) || late {
                        err(path.into(), ErrorCode::DateOutOfRange, "the date is outside the allowed range".into());
                    }
                }
            },
            FieldType::Enum => match v.as_str() {
                Some(s) if self.spec.values.iter().any(|a| a == s) => {}
                Some(_) => err(path.into(), ErrorCode::NotAllowedValue, format!("must be one of: {}", self.spec.values.join(", "))),
                None => err(path.into(), ErrorCode::WrongType, "expected a string".into()),
            },
            FieldType::Phone => match v.as_str() {
                Some(s) => {
                    let digits = s.strip_prefix('+').unwrap_or(s);
                    let ok = (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
                    if !ok {
                        err(path.into(), ErrorCode::InvalidPhone, "expected an optional + and 6 to 15 digits".into());
                    } else {
                        self.check_pattern(s, path, &mut err);
                    }
                }
                None => err(path.into(), ErrorCode::WrongType, "expected a string".into()),
            },
            FieldType::Email => match v.as_str() {
                Some(s) => {
                    if is_email(s) {
                        self.check_pattern(s, path, &mut err);
                    } else {
                        err(path.into(), ErrorCode::InvalidEmail, "not a valid e-mail address".into());
                    }
                }
                None => err(path.into(), ErrorCode::WrongType, "expected a string".into()),
            },
            FieldType::Document => self.check_reference(v, path, true, &mut err),
            FieldType::Biometric => self.check_reference(v, path, false, &mut err),
        }
    }

    fn check_text(&self, s: &str, path: &str, err: &mut impl FnMut(String, ErrorCode, String)) {
        let n = s.chars().count();
        let max = self.spec.max_length.unwrap_or(TEXT_CHARS_MAX);
        if n > max {
            err(path.into(), ErrorCode::TooLong, format!("at most {max} characters"));
        } else if n < self.spec.min_length.unwrap_or(0) || (self.spec.required && s.trim().is_empty()) {
            err(path.into(), ErrorCode::TooShort, format!("at least {} characters", self.spec.min_length.unwrap_or(1)));
        } else {
            self.check_pattern(s, path, err);
        }
    }

    fn check_pattern(&self, s: &str, path: &str, err: &mut impl FnMut(String, ErrorCode, String)) {
        if let Some(re) = &self.pattern
            && !re.is_match(s)
        {
            err(path.into(), ErrorCode::PatternMismatch, "does not match the field's pattern".into());
        }
    }

    fn check_multilingual(&self, v: &Value, path: &str, langs: &Languages, err: &mut impl FnMut(String, ErrorCode, String)) {
        let Some(items) = v.as_array() else {
            return err(path.into(), ErrorCode::WrongType, "expected an array of {language, value}".into());
        };
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}/{i}");
            let obj = item.as_object();
            let (Some(lang), Some(text), true) = (
                obj.and_then(|o| o.get("language")).and_then(Value::as_str),
                obj.and_then(|o| o.get("value")).and_then(Value::as_str),
                obj.is_some_and(|o| o.len() == 2),
            ) else {
                err(ipath, ErrorCode::WrongType, "expected exactly {\"language\": string, \"value\": string}".into());
                continue;
            };
            if !langs.mandatory.iter().chain(&langs.optional).any(|l| l == lang) {
                err(format!("{ipath}/language"), ErrorCode::UnknownLanguage, "language is not in the schema".into());
            } else if !seen.insert(lang) {
                err(format!("{ipath}/language"), ErrorCode::DuplicateLanguage, "language given twice".into());
            }
            self.check_text(text, &format!("{ipath}/value"), err);
        }
        for l in &langs.mandatory {
            if !seen.contains(l.as_str()) && items.len() <= LANGUAGES_MAX {
                err(path.into(), ErrorCode::MissingLanguage, format!("a value in the mandatory language {l} is required"));
            }
        }
    }

    fn check_reference(&self, v: &Value, path: &str, document: bool, err: &mut impl FnMut(String, ErrorCode, String)) {
        let Some(obj) = v.as_object() else {
            return err(path.into(), ErrorCode::WrongType, "expected an object".into());
        };
        let allowed: &[&str] = if document { &["type", "format", "ref"] } else { &["format", "ref"] };
        for k in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            err(pointer_join(path, k), ErrorCode::UnknownField, "not a reference attribute".into());
        }
        let ok_ref = |s: &str| {
            !s.is_empty() && s.len() <= REFERENCE_CHARS_MAX && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
        };
        match obj.get("ref").and_then(Value::as_str) {
            Some(r) if ok_ref(r) => {}
            _ => err(format!("{path}/ref"), ErrorCode::InvalidReference, "ref must be a blob id (1-256 of A-Z a-z 0-9 - _ . : /)".into()),
        }
        match obj.get("format").and_then(Value::as_str) {
            Some(f) if !f.is_empty() && f.len() <= 32 && f.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                if !document && f != "cbeff" {
                    err(format!("{path}/format"), ErrorCode::NotAllowedValue, "biometrics must be in cbeff format".into());
                }
            }
            _ => err(format!("{path}/format"), ErrorCode::InvalidReference, "format must be a short alphanumeric code".into()),
        }
        if document {
            match obj.get("type").and_then(Value::as_str) {
                Some(t) if self.spec.document_types.is_empty() || self.spec.document_types.iter().any(|a| a == t) => {}
                Some(_) => err(
                    format!("{path}/type"),
                    ErrorCode::NotAllowedValue,
                    format!("must be one of: {}", self.spec.document_types.join(", ")),
                ),
                None => err(format!("{path}/type"), ErrorCode::Required, "the document type is required".into()),
            }
        }
    }
}

fn pointer_join(path: &str, key: &str) -> String {
    format!("{path}{}", pointer(&[key]))
}

/// A deliberately plain check: one `@`, a non-empty local part, a dotted domain of letters, digits
/// and hyphens, no spaces, at most 254 characters (RFC 5321's path limit).
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !local.contains(|c: char| c.is_whitespace() || c == '@' || c.is_control())
        && domain.contains('.')
        && labels_ok
}

#[cfg(test)]
mod tests;
