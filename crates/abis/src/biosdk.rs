//! Template extraction from biometric images through a MOSIP BioSDK service (the plugin
//! interface for feature extractors this build does not contain).
//!
//! Why a plugin: MOSIP registration packets carry images (ISO/IEC 19794-4 finger, -5 face, -6
//! iris: CBEFF formats 7, 8, 9), and turning a fingerprint image into minutiae needs an
//! extractor. NIST NBIS (`mindtct`) is the open one, but neither Debian nor crates.io ships it
//! (checked 2026-12: no `nbis` package, no maintained binding crate), and vendoring its C sources
//! would put copied code in the tree. MOSIP solves the same problem with the BioSDK service, a
//! small HTTP server around a vendor's SDK; Tessera speaks its `extract-template` call, so the
//! SDK a country already licensed for MOSIP (or an NBIS wrapper) plugs in unchanged.
//!
//! Wire format (BioSDK service spec 1.0, `POST {url}/extract-template`): body
//! `{"version": "1.0", "request": base64(JSON)}` where the JSON is
//! `{"sample": BiometricRecord, "modalitiesToExtract": ["FINGER", …], "flags": {}}`; the answer
//! is `{"version", "responsetime", "response": …, "errors": […]}` where `response` is the
//! SDK's `Response` (`{"statusCode": 200, "statusMessage", "response": BiometricRecord}`) or,
//! from some services, the `BiometricRecord` itself; both are accepted. A `BiometricRecord` is
//! `{"segments": [BIR…]}` with each BIR as MOSIP's Java classes serialise it: `bdbInfo.type`
//! (`["FINGER"]`), `bdbInfo.subtype` (`["Left", "IndexFinger"]`), `bdbInfo.format`
//! (`{"organization", "type"}`), `bdbInfo.level`, `bdb`. Tessera sends `request` and `bdb` as
//! standard padded base64 (what the reference service's Java decoders read) and leaves out
//! `creationDate` (the service expects Java's `LocalDateTime` object shape); it accepts `bdb`
//! back as base64 / base64url text or as Gson's array of signed bytes. Only finger images are
//! sent: Tessera's iris and face matchers need their own templates, which a vendor SDK does not
//! produce, so sending those images would expose them for nothing. Checked against our own test
//! double and MOSIP's published spec, not against a running biosdk-service.
//!
//! What comes back goes through the same parsers and limits as a CBEFF document's own
//! templates (`TemplateSet::from_birs`): an SDK's malformed answer is refused, not trusted.

use base64::Engine as _;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tessera_biometrics::cbeff::{BdbInfo, BioType, Bir, ProcessedLevel, Purpose, RegistryId};

/// Time limit for one extraction call.
pub const EXTRACT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read from the service.
pub const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most segments accepted back (10 fingers, 2 irises, a face, with room for an SDK that splits).
pub const SEGMENTS_MAX: usize = 32;

/// Why extraction failed. Codes and counts only: never biometric data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractorError {
    #[error("the BioSDK service could not be reached or answered HTTP {0}")]
    Unreachable(String),
    #[error("the BioSDK service refused the sample: {0}")]
    Refused(String),
    #[error("the BioSDK service's answer is not a biometric record: {0}")]
    BadAnswer(&'static str),
}

impl ExtractorError {
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ExtractorError::Unreachable(_) => "extractor_unreachable",
            ExtractorError::Refused(_) => "extractor_refused",
            ExtractorError::BadAnswer(_) => "extractor_bad_answer",
        }
    }
}

/// Turns image records into template records (whatever formats `TemplateSet::from_birs` reads:
/// ISO/IEC 19794-2 minutiae for fingers, Tessera's iris code and face embedding).
pub trait Extract: Send + Sync + std::fmt::Debug {
    fn extract<'a>(&'a self, images: &'a [Bir]) -> Pin<Box<dyn Future<Output = Result<Vec<Bir>, ExtractorError>> + Send + 'a>>;
}

/// A MOSIP BioSDK service.
#[derive(Debug, Clone)]
pub struct BioSdk {
    client: reqwest::Client,
    /// Base URL, e.g. `http://biosdk-service/biosdk-service`.
    url: String,
}

impl BioSdk {
    /// A service at an `https` URL, or also `http` when `allow_http` (inside a private network:
    /// the images travel in clear).
    ///
    /// # Errors
    /// `Unreachable` when the URL is not allowed or the client cannot be built.
    pub fn new(url: &str, allow_http: bool) -> Result<Self, ExtractorError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ExtractorError::Unreachable("bad URL".into()))?;
        if !(parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http")) {
            return Err(ExtractorError::Unreachable("bad URL".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(EXTRACT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ExtractorError::Unreachable("client".into()))?;
        Ok(BioSdk { client, url: url.trim_end_matches('/').to_owned() })
    }

    async fn call(&self, images: &[Bir]) -> Result<Vec<Bir>, ExtractorError> {
        let body = request_body(images);
        let resp = self
            .client
            .post(format!("{}/extract-template", self.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|_| ExtractorError::Unreachable("no answer".into()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ExtractorError::Unreachable(status.as_u16().to_string()));
        }
        let bytes =
            crate::datashare::read_limited(resp, ANSWER_BYTES_MAX).await.map_err(|_| ExtractorError::BadAnswer("too large or cut off"))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| ExtractorError::BadAnswer("not JSON"))?;
        parse_answer(&v)
    }
}

impl Extract for BioSdk {
    fn extract<'a>(&'a self, images: &'a [Bir]) -> Pin<Box<dyn Future<Output = Result<Vec<Bir>, ExtractorError>> + Send + 'a>> {
        Box::pin(self.call(images))
    }
}

/// MOSIP's `BiometricType` name of a CBEFF type.
fn type_name(t: &BioType) -> &'static str {
    match t {
        BioType::Finger => "FINGER",
        BioType::Iris => "IRIS",
        BioType::Face => "FACE",
        BioType::ExceptionPhoto => "EXCEPTION_PHOTO",
        BioType::Other(_) => "UNKNOWN",
    }
}

fn type_of(name: &str) -> Option<BioType> {
    match name.to_ascii_uppercase().as_str() {
        "FINGER" => Some(BioType::Finger),
        "IRIS" => Some(BioType::Iris),
        "FACE" => Some(BioType::Face),
        _ => None,
    }
}

/// MOSIP's biosdk-service decodes `request` with Java's standard decoder and `bdb` with
/// Jackson's `byte[]` reader: both the standard alphabet, padded.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `extract-template` request for these image records.
#[must_use]
pub fn request_body(images: &[Bir]) -> Value {
    let segments: Vec<Value> = images.iter().map(segment).collect();
    let mut modalities: Vec<&str> = images.iter().filter_map(|b| b.bdb_info.bio_types.first()).map(type_name).collect();
    modalities.sort_unstable();
    modalities.dedup();
    let inner = json!({
        "sample": {"version": {"major": 1, "minor": 1}, "cbeffversion": {"major": 1, "minor": 1}, "birInfo": {"integrity": false}, "segments": segments},
        "modalitiesToExtract": modalities,
        "flags": {},
    });
    json!({ "version": "1.0", "request": b64(inner.to_string().as_bytes()) })
}

fn segment(b: &Bir) -> Value {
    let i = &b.bdb_info;
    let registry = |r: &Option<RegistryId>| r.as_ref().map(|r| json!({"organization": r.organization, "type": r.type_id}));
    json!({
        "version": {"major": 1, "minor": 1},
        "cbeffversion": {"major": 1, "minor": 1},
        "birInfo": {"integrity": false},
        "bdbInfo": {
            "format": registry(&i.format),
            "type": i.bio_types.iter().map(type_name).collect::<Vec<_>>(),
            "subtype": i.subtypes,
            "level": "RAW",
            "purpose": "ENROLL",
        },
        "bdb": b64(&b.bdb),
    })
}

/// The template records in a service's answer.
///
/// # Errors
/// `Refused` for an answer with errors or a non-200 status, `BadAnswer` for anything that is
/// not a biometric record within the limits.
pub fn parse_answer(v: &Value) -> Result<Vec<Bir>, ExtractorError> {
    if let Some(e) = v["errors"].as_array().and_then(|e| e.first()) {
        let code = e["errorCode"].as_str().or_else(|| e["code"].as_str()).unwrap_or("error");
        return Err(ExtractorError::Refused(code.chars().take(64).collect()));
    }
    let outer = &v["response"];
    let record = if outer.get("segments").is_some() {
        outer
    } else {
        match outer["statusCode"].as_i64() {
            Some(200) => {}
            Some(code) => return Err(ExtractorError::Refused(format!("status {code}"))),
            None => return Err(ExtractorError::BadAnswer("no response")),
        }
        &outer["response"]
    };
    let segments = record["segments"].as_array().ok_or(ExtractorError::BadAnswer("no segments"))?;
    if segments.len() > SEGMENTS_MAX {
        return Err(ExtractorError::BadAnswer("too many segments"));
    }
    segments.iter().map(bir_of).collect()
}

fn bir_of(s: &Value) -> Result<Bir, ExtractorError> {
    let info = &s["bdbInfo"];
    let bio_type = info["type"].as_array().and_then(|t| t.first()).and_then(Value::as_str).and_then(type_of);
    let bio_type = bio_type.ok_or(ExtractorError::BadAnswer("a segment of no known type"))?;
    let subtypes = match &info["subtype"] {
        Value::Null => Vec::new(),
        Value::Array(a) => {
            a.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().ok_or(ExtractorError::BadAnswer("subtype"))?
        }
        _ => return Err(ExtractorError::BadAnswer("subtype")),
    };
    let format = match &info["format"] {
        Value::Null => None,
        f => Some(RegistryId::new(
            f["organization"].as_str().ok_or(ExtractorError::BadAnswer("format"))?,
            &match &f["type"] {
                Value::String(t) => t.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(ExtractorError::BadAnswer("format")),
            },
        )),
    };
    let bdb = bytes_of(&s["bdb"])?;
    if bdb.len() > tessera_biometrics::cbeff::BDB_BYTES_MAX {
        return Err(ExtractorError::BadAnswer("a segment is too large"));
    }
    Ok(Bir {
        version: None,
        cbeff_version: None,
        bir_info: tessera_biometrics::cbeff::BirInfo::default(),
        bdb_info: BdbInfo {
            format,
            bio_types: vec![bio_type],
            subtypes,
            level: Some(ProcessedLevel::Processed),
            purpose: Some(Purpose::Enroll),
            ..BdbInfo::default()
        },
        sb_info: None,
        bdb,
        sb: None,
        others: Vec::new(),
    })
}

/// `bdb` as base64 or base64url text (padded or not), or Gson's array of signed bytes.
fn bytes_of(v: &Value) -> Result<Vec<u8>, ExtractorError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match v {
        Value::String(s) => [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|e| e.decode(s).ok())
            .ok_or(ExtractorError::BadAnswer("bdb is not base64")),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_i64().and_then(|n| i8::try_from(n).ok()).map(|b| b.to_ne_bytes()[0]))
            .collect::<Option<Vec<u8>>>()
            .ok_or(ExtractorError::BadAnswer("bdb is not a byte array")),
        _ => Err(ExtractorError::BadAnswer("no bdb")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finger_image() -> Bir {
        Bir {
            version: None,
            cbeff_version: None,
            bir_info: tessera_biometrics::cbeff::BirInfo::default(),
            bdb_info: BdbInfo {
                format: Some(RegistryId::new("Mosip", "7")),
                bio_types: vec![BioType::Finger],
                subtypes: vec!["Left".into(), "IndexFinger".into()],
                ..BdbInfo::default()
            },
            sb_info: None,
            bdb: vec![1, 2, 250],
            sb: None,
            others: Vec::new(),
        }
    }

    #[test]
    fn request_is_the_biosdk_envelope() {
        let body = request_body(&[finger_image()]);
        assert_eq!(body["version"], "1.0");
        let inner: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body["request"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(inner["modalitiesToExtract"], json!(["FINGER"]));
        let seg = &inner["sample"]["segments"][0];
        assert_eq!(seg["bdbInfo"]["type"], json!(["FINGER"]));
        assert_eq!(seg["bdbInfo"]["subtype"], json!(["Left", "IndexFinger"]));
        assert_eq!(seg["bdbInfo"]["format"], json!({"organization": "Mosip", "type": "7"}));
        assert_eq!(bytes_of(&seg["bdb"]).unwrap(), vec![1, 2, 250]);
    }

    #[test]
    fn answers_in_every_shape_parse_and_errors_are_refusals() {
        let seg = json!({"bdbInfo": {"type": ["FINGER"], "subtype": ["Left", "IndexFinger"], "format": {"organization": "Mosip", "type": 2}}, "bdb": [1, 2, -6]});
        let wrapped = json!({"version": "1.0", "response": {"statusCode": 200, "response": {"segments": [seg.clone()]}}, "errors": []});
        let direct = json!({"version": "1.0", "response": {"segments": [seg]}, "errors": null});
        for v in [wrapped, direct] {
            let birs = parse_answer(&v).unwrap();
            assert_eq!(birs.len(), 1);
            assert_eq!(birs[0].bdb, vec![1, 2, 250]);
            assert_eq!(birs[0].bdb_info.format, Some(RegistryId::new("Mosip", "2")));
            assert_eq!(birs[0].bdb_info.subtypes, vec!["Left".to_owned(), "IndexFinger".to_owned()]);
        }
        let refused = json!({"response": null, "errors": [{"errorCode": "BIOSDK_LIB_EXCEPTION", "message": "…"}]});
        assert_eq!(parse_answer(&refused), Err(ExtractorError::Refused("BIOSDK_LIB_EXCEPTION".into())));
        assert_eq!(parse_answer(&json!({"response": {"statusCode": 401}})), Err(ExtractorError::Refused("status 401".into())));
        assert!(matches!(
            parse_answer(&json!({"response": {"segments": [{"bdbInfo": {"type": ["VOICE"]}, "bdb": "AA"}]}})),
            Err(ExtractorError::BadAnswer(_))
        ));
        assert!(matches!(
            parse_answer(&json!({"response": {"segments": [{"bdbInfo": {"type": ["FINGER"]}, "bdb": "%%"}]}})),
            Err(ExtractorError::BadAnswer(_))
        ));
        let many: Vec<Value> = (0..=SEGMENTS_MAX).map(|_| json!({"bdbInfo": {"type": ["FACE"]}, "bdb": "AA"})).collect();
        assert!(matches!(parse_answer(&json!({"response": {"segments": many}})), Err(ExtractorError::BadAnswer(_))));
    }
}
