//! Unit tests of schema checking and record validation.

use super::*;
use serde_json::json;
use time::macros::date;

const TODAY: Date = date!(2026 - 11 - 25);

fn good() -> Value {
    json!({
        "fullName": [{"language": "eng", "value": "Amina Diallo"}, {"language": "fra", "value": "Amina Diallo"}],
        "dateOfBirth": "1990-02-28",
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": "12 Baobab Street"}],
        "city": [{"language": "eng", "value": "Kindia"}],
        "region": [{"language": "eng", "value": "Kindia"}],
        "postalCode": "KD-100",
        "phone": "+224620000000",
        "email": "amina@example.org",
        "proofOfIdentity": {"type": "passport", "format": "pdf", "ref": "doc-1"},
        "individualBiometrics": {"format": "cbeff", "ref": "bio/1"}
    })
}

fn codes(errs: &[FieldError]) -> Vec<(&str, &str)> {
    errs.iter().map(|e| (e.path.as_str(), e.code.as_str())).collect()
}

#[test]
fn default_schema_accepts_a_good_record() {
    let s = Schema::default_schema();
    assert_eq!(s.id_version(), ("tessera-default", 1));
    let rec = s.validate(&good(), TODAY).unwrap();
    assert_eq!(rec.fields().len(), 11);
}

#[test]
fn every_error_is_reported_at_once() {
    let mut r = good();
    let o = r.as_object_mut().unwrap();
    o.remove("gender");
    o.insert("dateOfBirth".into(), json!("1990-02-30"));
    o.insert("fullName".into(), json!([{"language": "fra", "value": "A"}, {"language": "xyz", "value": "B"}]));
    o.insert("phone".into(), json!("12ab"));
    o.insert("email".into(), json!("no-at-sign"));
    o.insert("nickname".into(), json!("x"));
    o.insert("postalCode".into(), json!("!"));
    o.insert("proofOfIdentity".into(), json!({"type": "selfie", "format": "pdf", "ref": ""}));
    let errs = Schema::default_schema().validate(&r, TODAY).unwrap_err();
    assert_eq!(
        codes(&errs),
        vec![
            ("/nickname", "unknown_field"),
            ("/fullName/1/language", "unknown_language"),
            ("/fullName", "missing_language"),
            ("/dateOfBirth", "invalid_date"),
            ("/gender", "required"),
            ("/postalCode", "pattern_mismatch"),
            ("/phone", "invalid_phone"),
            ("/email", "invalid_email"),
            ("/proofOfIdentity/ref", "invalid_reference"),
            ("/proofOfIdentity/type", "not_allowed_value"),
        ]
    );
}

#[test]
fn messages_never_repeat_the_value() {
    let mut r = good();
    r["email"] = json!("secret-marker-7781");
    r["postalCode"] = json!("secret-marker-7782!");
    r["fullName"] = json!([{"language": "eng", "value": "x".repeat(101)}]);
    let errs = Schema::default_schema().validate(&r, TODAY).unwrap_err();
    assert_eq!(errs.len(), 3);
    for e in &errs {
        assert!(!e.message.contains("secret-marker") && !e.message.contains("xxx"), "{e}");
    }
}

#[test]
fn dates_and_ranges() {
    let s = Schema::default_schema();
    for (dob, code) in [
        ("2026-11-26", Some("date_out_of_range")), // tomorrow
        ("2026-11-25", None),
        ("1899-12-31", Some("date_out_of_range")),
        ("1990-2-28", Some("invalid_date")),
        ("+1990-02-28", Some("invalid_date")),
        ("2024-02-29", None),
        ("2023-02-29", Some("invalid_date")),
    ] {
        let mut r = good();
        r["dateOfBirth"] = json!(dob);
        let got = s.validate(&r, TODAY).err().map(|e| e[0].code.as_str());
        assert_eq!(got, code, "{dob}");
    }
    let mut r = good();
    r["dateOfBirth"] = json!(19_900_228);
    assert_eq!(codes(&s.validate(&r, TODAY).unwrap_err()), vec![("/dateOfBirth", "wrong_type")]);
}

#[test]
fn multilingual_shapes() {
    let s = Schema::default_schema();
    for (v, want) in [
        (json!("Amina"), vec![("/fullName", "wrong_type")]),
        (json!([{"language": "eng"}]), vec![("/fullName/0", "wrong_type"), ("/fullName", "missing_language")]),
        (
            json!([{"language": "eng", "value": "A"}, {"language": "eng", "value": "B"}]),
            vec![("/fullName/1/language", "duplicate_language")],
        ),
        (json!([{"language": "eng", "value": ""}]), vec![("/fullName/0/value", "too_short")]),
        (json!([{"language": "eng", "value": "A", "extra": 1}]), vec![("/fullName/0", "wrong_type"), ("/fullName", "missing_language")]),
    ] {
        let mut r = good();
        r["fullName"] = v;
        assert_eq!(codes(&s.validate(&r, TODAY).unwrap_err()), want);
    }
}

#[test]
fn optional_null_is_dropped_required_null_is_missing() {
    let s = Schema::default_schema();
    let mut r = good();
    r["email"] = Value::Null;
    let rec = s.validate(&r, TODAY).unwrap();
    assert!(!rec.fields().contains_key("email"));
    r["gender"] = Value::Null;
    assert_eq!(codes(&s.validate(&r, TODAY).unwrap_err()), vec![("/gender", "required")]);
    assert_eq!(codes(&s.validate(&json!([1]), TODAY).unwrap_err()), vec![("", "not_an_object")]);
}

#[test]
fn bad_schemas_are_refused() {
    let base = |fields: Value| json!({"id": "t", "version": 1, "languages": {"mandatory": ["eng"]}, "fields": fields}).to_string();
    for (fields, needle) in [
        (json!([{"id": "a", "type": "text"}, {"id": "a", "type": "text"}]), "declared twice"),
        (json!([{"id": "a", "type": "enum"}]), "values are required"),
        (json!([{"id": "a", "type": "text", "values": ["x"]}]), "values are required"),
        (json!([{"id": "a", "type": "text", "pattern": "("}]), "does not compile"),
        (json!([{"id": "a", "type": "text", "min_length": 5, "max_length": 2}]), "greater than"),
        (json!([{"id": "a", "type": "date", "min_date": "yesterday"}]), "YYYY-MM-DD"),
        (json!([{"id": "a", "type": "text", "colour": "red"}]), "unknown field"),
        (json!([{"id": "1a", "type": "text"}]), "id must be"),
        (json!([{"id": "a", "type": "hologram"}]), "unknown variant"),
        (json!([]), "between 1 and"),
    ] {
        let err = Schema::from_json(&base(fields.clone())).unwrap_err().to_string();
        assert!(err.contains(needle), "{fields}: {err}");
    }
    let bad_lang = json!({"id": "t", "version": 1, "languages": {"mandatory": ["en"]}, "fields": [{"id": "a", "type": "text"}]});
    assert!(Schema::from_json(&bad_lang.to_string()).unwrap_err().to_string().contains("ISO 639-3"));
}

#[test]
fn pointer_escapes() {
    assert_eq!(pointer(&["a/b", "c~d"]), "/a~1b/c~0d");
}

#[test]
fn email_rules() {
    for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
        assert!(is_email(ok), "{ok}");
    }
    for bad in ["", "a@b", "@b.co", "a b@c.co", "a@-b.co", "a@b..co", "a@@b.co"] {
        assert!(!is_email(bad), "{bad}");
    }
}
