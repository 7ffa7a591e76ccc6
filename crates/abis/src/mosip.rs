//! MOSIP's ABIS API messages (ABIS API spec v0.9, `docs/biometrics/abis-api.md` of
//! mosip/documentation 1.2.0): the requests MOSIP's registration processor sends an ABIS and the
//! responses it expects, with MOSIP's failure reasons. Every value on the wire is a string, as in
//! MOSIP's examples (`"returnValue": "1"`, `"maxResults": "30"`).
//!
//! Parsing here is strict about what MOSIP defines (id, version, requestId, requesttime and the
//! fields of each operation) and names the failure reason MOSIP defines for each fault, so the
//! registration processor can act on it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request `version` MOSIP sends.
pub const VERSION: &str = "1.1";
/// Longest request id or reference id accepted (MOSIP sends UUIDs: 36 characters).
pub const ID_CHARS_MAX: usize = 64;
/// Longest referenceURL accepted.
pub const URL_CHARS_MAX: usize = 2048;
/// Most reference ids in an Identify `gallery`.
pub const GALLERY_MAX: usize = 1000;
/// Largest request message accepted, in bytes (a request carries ids and a URL, never biometrics).
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024;

/// The operations, by their MOSIP `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Identify,
    Delete,
    Ping,
    PendingJobs,
    ReferenceCount,
}

impl Operation {
    pub const ALL: [Operation; 6] =
        [Operation::Insert, Operation::Identify, Operation::Delete, Operation::Ping, Operation::PendingJobs, Operation::ReferenceCount];

    #[must_use]
    pub fn id(self) -> &'static str {
        match self {
            Operation::Insert => "mosip.abis.insert",
            Operation::Identify => "mosip.abis.identify",
            Operation::Delete => "mosip.abis.delete",
            Operation::Ping => "mosip.abis.ping",
            Operation::PendingJobs => "mosip.abis.pendingJobs",
            Operation::ReferenceCount => "mosip.abis.referenceCount",
        }
    }

    #[must_use]
    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.id() == id)
    }
}

/// MOSIP's failure reasons (`failureReason`), with their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    InternalError = 1,
    Aborted = 2,
    UnexpectedError = 3,
    InvalidRequest = 4,
    MissingReferenceId = 5,
    MissingRequestId = 6,
    UnableToFetch = 7,
    MissingReferenceUrl = 8,
    MissingRequestTime = 9,
    ReferenceIdExists = 10,
    CbeffHasNoData = 11,
    ReferenceIdNotFound = 12,
    InvalidVersion = 13,
    InvalidId = 14,
    InvalidRequestTime = 15,
    InvalidCbeff = 16,
    DatashareExpired = 17,
    QualityCheckFailed = 18,
}

impl FailureReason {
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Tessera's stable name for the reason (logs, metrics, HTTP error codes).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FailureReason::InternalError => "internal_error",
            FailureReason::Aborted => "aborted",
            FailureReason::UnexpectedError => "unexpected_error",
            FailureReason::InvalidRequest => "invalid_request",
            FailureReason::MissingReferenceId => "missing_reference_id",
            FailureReason::MissingRequestId => "missing_request_id",
            FailureReason::UnableToFetch => "unable_to_fetch_biometrics",
            FailureReason::MissingReferenceUrl => "missing_reference_url",
            FailureReason::MissingRequestTime => "missing_request_time",
            FailureReason::ReferenceIdExists => "reference_id_exists",
            FailureReason::CbeffHasNoData => "cbeff_has_no_data",
            FailureReason::ReferenceIdNotFound => "reference_id_not_found",
            FailureReason::InvalidVersion => "invalid_version",
            FailureReason::InvalidId => "invalid_id",
            FailureReason::InvalidRequestTime => "invalid_request_time",
            FailureReason::InvalidCbeff => "invalid_cbeff",
            FailureReason::DatashareExpired => "datashare_expired",
            FailureReason::QualityCheckFailed => "quality_check_failed",
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    pub request_id: String,
    /// `requesttime` as sent (validated as an ISO-8601 UTC timestamp).
    pub request_time: String,
    pub body: Body,
}

/// What each operation carries beyond the common fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Insert { reference_id: String, reference_url: String },
    Identify(Identify),
    Delete { reference_id: String },
    Ping,
    PendingJobs,
    ReferenceCount,
}

/// An Identify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    /// The probe: an inserted reference (MOSIP sends the one it just inserted), or none when the
    /// probe comes from `reference_url`.
    pub reference_id: Option<String>,
    pub reference_url: Option<String>,
    /// `flags.maxResults`, when given.
    pub max_results: Option<usize>,
    /// `flags.targetFPIR`: `round(-10·log10(FPIR))`, e.g. 30 for 1 in 1,000.
    pub target_fpir: Option<u32>,
    /// `gallery.referenceIds`: search only these (MOSIP sends them when demographic
    /// de-duplication found candidates); `None` searches the whole gallery.
    pub gallery: Option<Vec<String>>,
}

/// A request that cannot be served, with what MOSIP needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The operation id as sent, when it was a string (echoed in the response).
    pub id: String,
    /// The request id as sent, when there was one.
    pub request_id: String,
    pub reason: FailureReason,
}

fn str_field<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `2020-03-29T07:01:24.692Z`: an RFC 3339 time (MOSIP sends UTC with milliseconds).
#[must_use]
pub fn valid_time(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn valid_id(s: &str) -> bool {
    s.len() <= ID_CHARS_MAX && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A count that MOSIP sends as a string (`"30"`), or as a number.
fn count_flag(v: Option<&Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// Parses one request message (UTF-8 JSON text, as a string or as bytes).
///
/// # Errors
/// The failure reason MOSIP defines for what is wrong, with the ids to echo.
pub fn parse(message: &[u8]) -> Result<Request, Rejected> {
    let reject = |id: &str, request_id: &str, reason| Rejected { id: id.to_owned(), request_id: request_id.to_owned(), reason };
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(reject("", "", FailureReason::InvalidRequest));
    }
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(message) else {
        return Err(reject("", "", FailureReason::InvalidRequest));
    };
    let id = str_field(&o, "id").unwrap_or("");
    let echo_id = if id.len() <= ID_CHARS_MAX { id } else { "" };
    let request_id = str_field(&o, "requestId").unwrap_or("");
    let echo_request = if valid_id(request_id) { request_id } else { "" };
    let fail = |reason| Err(reject(echo_id, echo_request, reason));
    let Some(operation) = Operation::parse(id) else { return fail(FailureReason::InvalidId) };
    if str_field(&o, "version") != Some(VERSION) {
        return fail(FailureReason::InvalidVersion);
    }
    if request_id.is_empty() {
        return fail(FailureReason::MissingRequestId);
    }
    if !valid_id(request_id) {
        return fail(FailureReason::InvalidRequest);
    }
    let Some(request_time) = str_field(&o, "requesttime") else { return fail(FailureReason::MissingRequestTime) };
    if !valid_time(request_time) {
        return fail(FailureReason::InvalidRequestTime);
    }
    let reference_id = str_field(&o, "referenceId");
    if reference_id.is_some_and(|r| !valid_id(r)) {
        return fail(FailureReason::InvalidRequest);
    }
    let reference_url = str_field(&o, "referenceURL");
    if reference_url.is_some_and(|u| u.len() > URL_CHARS_MAX) {
        return fail(FailureReason::InvalidRequest);
    }
    let body = match operation {
        Operation::Insert => {
            let Some(reference_id) = reference_id else { return fail(FailureReason::MissingReferenceId) };
            let Some(reference_url) = reference_url else { return fail(FailureReason::MissingReferenceUrl) };
            Body::Insert { reference_id: reference_id.into(), reference_url: reference_url.into() }
        }
        Operation::Delete => {
            let Some(reference_id) = reference_id else { return fail(FailureReason::MissingReferenceId) };
            Body::Delete { reference_id: reference_id.into() }
        }
        Operation::Identify => {
            if reference_id.is_none() && reference_url.is_none() {
                return fail(FailureReason::MissingReferenceId);
            }
            let flags = o.get("flags").and_then(Value::as_object);
            let Ok(max_results) = count_flag(flags.and_then(|f| f.get("maxResults"))) else { return fail(FailureReason::InvalidRequest) };
            let Ok(target_fpir) = count_flag(flags.and_then(|f| f.get("targetFPIR"))) else { return fail(FailureReason::InvalidRequest) };
            let gallery = match o.get("gallery") {
                None | Some(Value::Null) => None,
                Some(g) => {
                    let Some(ids) = g.get("referenceIds").and_then(Value::as_array) else { return fail(FailureReason::InvalidRequest) };
                    if ids.len() > GALLERY_MAX {
                        return fail(FailureReason::InvalidRequest);
                    }
                    let mut out = Vec::with_capacity(ids.len());
                    for r in ids {
                        match r.get("referenceId").and_then(Value::as_str) {
                            Some(r) if !r.is_empty() && valid_id(r) => out.push(r.to_owned()),
                            _ => return fail(FailureReason::InvalidRequest),
                        }
                    }
                    Some(out)
                }
            };
            Body::Identify(Identify {
                reference_id: reference_id.map(str::to_owned),
                reference_url: reference_url.map(str::to_owned),
                max_results: max_results.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
                target_fpir: target_fpir.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
                gallery,
            })
        }
        Operation::Ping => Body::Ping,
        Operation::PendingJobs => Body::PendingJobs,
        Operation::ReferenceCount => Body::ReferenceCount,
    };
    Ok(Request { operation, request_id: request_id.into(), request_time: request_time.into(), body })
}

/// A response, as MOSIP expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub id: String,
    pub request_id: String,
    #[serde(rename = "responsetime")]
    pub response_time: String,
    /// `"1"` success, `"2"` failure.
    pub return_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_list: Option<CandidateList>,
    #[serde(rename = "jobscount", default, skip_serializing_if = "Option::is_none")]
    pub jobs_count: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
}

/// Identify's answer: every candidate at or above the ABIS's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateList {
    pub count: String,
    pub candidates: Vec<Candidate>,
    /// Search-level analytics (Tessera: the decision and the thresholds used).
    pub analytics: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub reference_id: String,
    pub analytics: Map<String, Value>,
    pub modalities: Vec<ModalityScore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModalityScore {
    /// `FIR` (finger), `IIR` (iris), `FID` (face).
    pub biometric_type: String,
    pub analytics: Map<String, Value>,
}

/// `2020-03-29T07:01:24.692Z` for `now` (Unix milliseconds).
#[must_use]
pub fn timestamp(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl Response {
    #[must_use]
    pub fn success(operation: Operation, request_id: &str, now_ms: i64) -> Self {
        Response {
            id: operation.id().into(),
            request_id: request_id.into(),
            response_time: timestamp(now_ms),
            return_value: "1".into(),
            failure_reason: None,
            candidate_list: None,
            jobs_count: None,
            count: None,
        }
    }

    /// A failure answer; `id` and `request_id` echo what could be read of the request.
    #[must_use]
    pub fn failure(id: &str, request_id: &str, reason: FailureReason, now_ms: i64) -> Self {
        Response {
            id: id.into(),
            request_id: request_id.into(),
            response_time: timestamp(now_ms),
            return_value: "2".into(),
            failure_reason: Some(reason.code().to_string()),
            candidate_list: None,
            jobs_count: None,
            count: None,
        }
    }

    #[must_use]
    pub fn is_success(&self) -> bool {
        self.return_value == "1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<Request, Rejected> {
        parse(v.to_string().as_bytes())
    }

    const T: &str = "2020-03-29T07:01:24.692Z";

    #[test]
    fn mosip_examples_parse() {
        let insert = req(serde_json::json!({"id":"mosip.abis.insert","version":"1.1","requestId":"01234567-89AB-CDEF-0123-456789ABCDEF",
            "requesttime":T,"referenceId":"987654321-89AB-CDEF-0123-456789ABCDEF","referenceURL":"https://mosip.io/biometric/45678"}))
        .unwrap();
        assert_eq!(insert.operation, Operation::Insert);
        assert!(matches!(insert.body, Body::Insert { ref reference_url, .. } if reference_url == "https://mosip.io/biometric/45678"));
        let identify = req(serde_json::json!({"id":"mosip.abis.identify","version":"1.1","requestId":"r2","requesttime":T,
            "referenceId":"ref1","referenceURL":"","flags":{"maxResults":"10","targetFPIR":"30","flag1":"value1"},
            "gallery":{"referenceIds":[{"referenceId":"a"},{"referenceId":"b"}]}}))
        .unwrap();
        let Body::Identify(i) = identify.body else { panic!("not identify") };
        assert_eq!(i.reference_id.as_deref(), Some("ref1"));
        assert_eq!(i.reference_url, None, "an empty referenceURL is no URL");
        assert_eq!((i.max_results, i.target_fpir), (Some(10), Some(30)));
        assert_eq!(i.gallery, Some(vec!["a".into(), "b".into()]));
        for id in ["mosip.abis.ping", "mosip.abis.pendingJobs", "mosip.abis.referenceCount"] {
            assert!(req(serde_json::json!({"id":id,"version":"1.1","requestId":"r","requesttime":T})).is_ok(), "{id}");
        }
    }

    #[test]
    fn each_fault_has_its_mosip_reason() {
        let base = serde_json::json!({"id":"mosip.abis.insert","version":"1.1","requestId":"r1","requesttime":T,"referenceId":"x","referenceURL":"https://u"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            req(b).unwrap_err().reason
        };
        let without = |k: &str| {
            let mut b = base.clone();
            b.as_object_mut().unwrap().remove(k);
            req(b).unwrap_err().reason
        };
        assert_eq!(with("id", "mosip.abis.nope".into()), FailureReason::InvalidId);
        assert_eq!(with("version", "1.0".into()), FailureReason::InvalidVersion);
        assert_eq!(without("requestId"), FailureReason::MissingRequestId);
        assert_eq!(without("requesttime"), FailureReason::MissingRequestTime);
        assert_eq!(with("requesttime", "yesterday".into()), FailureReason::InvalidRequestTime);
        assert_eq!(without("referenceId"), FailureReason::MissingReferenceId);
        assert_eq!(without("referenceURL"), FailureReason::MissingReferenceUrl);
        assert_eq!(with("referenceId", "x".repeat(65).into()), FailureReason::InvalidRequest);
        assert_eq!(parse(b"{not json").unwrap_err().reason, FailureReason::InvalidRequest);
        assert_eq!(parse(b"[1]").unwrap_err().reason, FailureReason::InvalidRequest);
        // The ids that could be read are echoed for the answer.
        let r = req(serde_json::json!({"id":"mosip.abis.insert","version":"2","requestId":"r9","requesttime":T})).unwrap_err();
        assert_eq!((r.id.as_str(), r.request_id.as_str()), ("mosip.abis.insert", "r9"));
        let bad_flags = serde_json::json!({"id":"mosip.abis.identify","version":"1.1","requestId":"r","requesttime":T,"referenceId":"a","flags":{"maxResults":"ten"}});
        assert_eq!(req(bad_flags).unwrap_err().reason, FailureReason::InvalidRequest);
    }

    #[test]
    fn responses_serialise_as_mosip_expects() {
        let mut r = Response::success(Operation::ReferenceCount, "r1", 1_585_465_284_692);
        r.count = Some("10".into());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"id":"mosip.abis.referenceCount","requestId":"r1","responsetime":"2020-03-29T07:01:24.692Z","returnValue":"1","count":"10"})
        );
        let f = Response::failure("mosip.abis.insert", "r2", FailureReason::ReferenceIdExists, 0);
        assert_eq!(serde_json::to_value(&f).unwrap()["failureReason"], "10");
        assert!(valid_time(&timestamp(1_700_000_000_123)));
    }
}
