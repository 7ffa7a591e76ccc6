//! The demographic record compared by the de-duplicator, read from Tessera's identity JSON
//! (`fullName`, `dateOfBirth`, `gender`, `addressLine1..3`, `city`, `region`, `postalCode`,
//! `phone`, `email`). Missing fields are allowed; unreadable dates and phones count as missing.

use crate::config::Limits;
use serde_json::Value;

/// Errors reading a record. Messages name the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is not a JSON object")]
    NotAnObject,
    #[error("the id is empty or longer than {max} characters")]
    BadId { max: usize },
    #[error("{field}: wrong JSON type (expected a string or an array of {{\"language\", \"value\"}})")]
    WrongType { field: &'static str },
    #[error("{field}: a value is longer than {max} characters")]
    ValueTooLong { field: &'static str, max: usize },
    #[error("{field}: more than {max} language variants")]
    TooManyVariants { field: &'static str, max: usize },
    #[error("the record's text is longer than {max} characters in all")]
    RecordTooLong { max: usize },
}

/// Longest record id.
pub const ID_CHARS_MAX: usize = 128;

/// A value in one language (`language` is the identity schema's code: `eng`, `fra`, `ara`; empty
/// when the input gave a plain string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub language: String,
    pub value: String,
}

/// A calendar date (proleptic Gregorian; checked at parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        _ => 28,
    }
}

impl Date {
    /// A valid date, or `None`.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        ((1..=9999).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)).then_some(Date {
            year,
            month,
            day,
        })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Date> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num =
            |r: std::ops::Range<usize>| text.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit())).and_then(|s| s.parse::<u16>().ok());
        Date::new(num(0..4)?, u8::try_from(num(5..7)?).ok()?, u8::try_from(num(8..10)?).ok()?)
    }

    pub fn year(self) -> u16 {
        self.year
    }
    pub fn month(self) -> u8 {
        self.month
    }
    pub fn day(self) -> u8 {
        self.day
    }

    /// The 8 digits `YYYYMMDD`.
    pub(crate) fn digits(self) -> [u8; 8] {
        let s = format!("{:04}{:02}{:02}", self.year, self.month, self.day);
        let mut d = [0u8; 8];
        d.copy_from_slice(&s.as_bytes()[..8]);
        d
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Female,
    Male,
    Other,
}

impl Gender {
    /// The schema's values, and the common codes and words for them.
    pub fn parse(text: &str) -> Option<Gender> {
        match text.trim().to_lowercase().as_str() {
            "female" | "f" | "femme" | "féminin" | "feminin" | "أنثى" | "انثى" => Some(Gender::Female),
            "male" | "m" | "homme" | "masculin" | "ذكر" => Some(Gender::Male),
            "other" | "x" | "autre" | "آخر" => Some(Gender::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
        }
    }
}

/// One person's demographic data as the de-duplicator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub id: String,
    pub full_name: Vec<Text>,
    pub date_of_birth: Option<Date>,
    pub gender: Option<Gender>,
    /// `addressLine1..3`, the lines of each language joined with ", ".
    pub address: Vec<Text>,
    pub city: Vec<Text>,
    pub region: Vec<Text>,
    pub postal_code: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

struct Reader<'a> {
    limits: &'a Limits,
    chars: usize,
}

impl Reader<'_> {
    fn count(&mut self, field: &'static str, s: &str) -> Result<(), RecordError> {
        let n = s.chars().count();
        if n > self.limits.value_chars_max {
            return Err(RecordError::ValueTooLong { field, max: self.limits.value_chars_max });
        }
        self.chars += n;
        if self.chars > self.limits.record_fields_chars_max {
            return Err(RecordError::RecordTooLong { max: self.limits.record_fields_chars_max });
        }
        Ok(())
    }

    /// A multilingual field: `[{"language", "value"}]`, a plain string, or an array of strings.
    fn texts(&mut self, v: &Value, field: &'static str) -> Result<Vec<Text>, RecordError> {
        let mut out = Vec::new();
        match v.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                self.count(field, s)?;
                out.push(Text { language: String::new(), value: s.clone() });
            }
            Some(Value::Array(items)) => {
                if items.len() > self.limits.variants_max {
                    return Err(RecordError::TooManyVariants { field, max: self.limits.variants_max });
                }
                for item in items {
                    let (language, value) = match item {
                        Value::String(s) => ("", s),
                        Value::Object(o) => match (o.get("language"), o.get("value")) {
                            (Some(Value::String(l)), Some(Value::String(s))) => (l.as_str(), s),
                            (None | Some(Value::Null), Some(Value::String(s))) => ("", s),
                            _ => return Err(RecordError::WrongType { field }),
                        },
                        _ => return Err(RecordError::WrongType { field }),
                    };
                    if language.chars().count() > 16 {
                        return Err(RecordError::WrongType { field });
                    }
                    self.count(field, value)?;
                    if !value.trim().is_empty() {
                        out.push(Text { language: language.to_owned(), value: value.clone() });
                    }
                }
            }
            Some(_) => return Err(RecordError::WrongType { field }),
        }
        Ok(out)
    }

    /// A plain-text field (a one-element multilingual array is accepted too).
    fn text(&mut self, v: &Value, field: &'static str) -> Result<Option<String>, RecordError> {
        Ok(self.texts(v, field)?.into_iter().next().map(|t| t.value).filter(|s| !s.trim().is_empty()))
    }
}

impl Record {
    /// Reads a record from identity JSON with the default limits.
    pub fn from_json(id: impl Into<String>, v: &Value) -> Result<Record, RecordError> {
        Record::from_json_with(id, v, &Limits::default())
    }

    /// Reads a record from identity JSON. Fields may be missing or null; multilingual fields may
    /// be plain strings. Every value and the record as a whole are bounded by `limits`.
    pub fn from_json_with(id: impl Into<String>, v: &Value, limits: &Limits) -> Result<Record, RecordError> {
        let id = id.into();
        if id.is_empty() || id.chars().count() > ID_CHARS_MAX {
            return Err(RecordError::BadId { max: ID_CHARS_MAX });
        }
        if !v.is_object() {
            return Err(RecordError::NotAnObject);
        }
        let mut r = Reader { limits, chars: 0 };
        let full_name = r.texts(v, "fullName")?;
        let date_of_birth = r.text(v, "dateOfBirth")?.and_then(|s| Date::parse(s.trim()));
        let gender = r.text(v, "gender")?.and_then(|s| Gender::parse(&s));
        let mut address: Vec<Text> = Vec::new();
        for field in ["addressLine1", "addressLine2", "addressLine3"] {
            for t in r.texts(v, field)? {
                match address.iter_mut().find(|a| a.language == t.language) {
                    Some(a) => {
                        a.value.push_str(", ");
                        a.value.push_str(&t.value);
                    }
                    None => address.push(t),
                }
            }
        }
        let city = r.texts(v, "city")?;
        let region = r.texts(v, "region")?;
        let postal_code = r.text(v, "postalCode")?;
        let phone = r.text(v, "phone")?;
        let email = r.text(v, "email")?;
        Ok(Record { id, full_name, date_of_birth, gender, address, city, region, postal_code, phone, email })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_identity_json() {
        let v = json!({
            "fullName": [{"language": "eng", "value": "Fatima Haddad"}, {"language": "ara", "value": "فاطمة حداد"}],
            "dateOfBirth": "1984-02-29", "gender": "female",
            "addressLine1": [{"language": "eng", "value": "12 Palm Street"}],
            "addressLine2": [{"language": "eng", "value": "Apt 4"}],
            "city": "Rabat", "phone": "+212 600 000 000"
        });
        let r = Record::from_json("a", &v).unwrap();
        assert_eq!(r.full_name.len(), 2);
        assert_eq!(r.date_of_birth, Date::new(1984, 2, 29));
        assert_eq!(r.gender, Some(Gender::Female));
        assert_eq!(r.address[0].value, "12 Palm Street, Apt 4");
        assert_eq!(r.city[0].language, "");
        assert_eq!(r.email, None);
    }

    #[test]
    fn tolerates_missing_and_unreadable_fields() {
        let r = Record::from_json("a", &json!({"dateOfBirth": "1985-13-01", "gender": "?"})).unwrap();
        assert_eq!(r.date_of_birth, None);
        assert_eq!(r.gender, None);
        assert!(r.full_name.is_empty());
    }

    #[test]
    fn refuses_wrong_types_and_oversized_values_naming_the_field_only() {
        let e = Record::from_json("a", &json!({"fullName": 7})).unwrap_err();
        assert_eq!(e.to_string(), "fullName: wrong JSON type (expected a string or an array of {\"language\", \"value\"})");
        let long = "x".repeat(VALUE_CHARS_MAX_TEST);
        let e = Record::from_json("a", &json!({"city": long})).unwrap_err();
        assert!(matches!(e, RecordError::ValueTooLong { field: "city", .. }));
        assert!(!e.to_string().contains("xxx"));
        assert_eq!(Record::from_json("a", &json!([1])).unwrap_err(), RecordError::NotAnObject);
        assert!(matches!(Record::from_json("", &json!({})).unwrap_err(), RecordError::BadId { .. }));
    }

    const VALUE_CHARS_MAX_TEST: usize = crate::config::VALUE_CHARS_MAX + 1;

    #[test]
    fn dates_are_checked() {
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("2024-02-29").is_some());
        assert!(Date::parse("1900-02-29").is_none());
        assert!(Date::parse("2000-02-29").is_some());
        assert!(Date::parse("85-01-01").is_none());
        assert!(Date::parse("1985-1-011").is_none());
        assert_eq!(Date::parse("1985-07-04").unwrap().to_string(), "1985-07-04");
    }
}
