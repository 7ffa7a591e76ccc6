//! A simulated biometric device service speaking MOSIP's SBI (Secure Biometric Interface, spec
//! 0.9.5 / 1.0) over HTTP: `MOSIPDISC /device`, `MOSIPDINFO /info`, `RCAPTURE /capture`
//! (registration capture) and `CAPTURE /capture` (authentication capture, refused: see below).
//! It lets a registration client be developed and tested without hardware.
//!
//! What it is not: a certified device. Its signatures (the `digitalId`, `deviceInfo` and each
//! capture's `data`, compact JWS with `alg: EdDSA`) are made with a throwaway key generated when
//! the simulator starts, carried in each JWS header as a `jwk`: they prove only that the bytes were
//! not changed on the way, never that a real L0/L1 device made them. Nothing should trust them.
//!
//! The biometrics are synthetic (`tessera_biometrics::synth`): one synthetic person per person
//! seed, a fresh noisy capture of them at every request, so two captures from simulators started
//! with the same person seed match each other, and captures of different seeds do not. Real
//! devices return images; the simulator returns what Tessera's matchers read directly (finger
//! minutiae as ISO/IEC 19794-2, MOSIP format 2; Tessera's iris code and face embedding), since no
//! image-to-template extractor ships with Tessera. `bioValue` is base64url of those bytes,
//! unencrypted, as RCAPTURE specifies.
//!
//! `CAPTURE` (authentication) must encrypt `bioValue` to the authentication server's key, which a
//! simulator has none of: it answers each requested item with error 108 (domain key missing).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tessera_biometrics::cbeff::BioType;
use tessera_biometrics::synth::SynthPerson;
use tessera_biometrics::templates::{FINGER_SUBTYPES, TemplateSet};
use tessera_crypto::MachineKey;
use tessera_crypto::digest::sha256;

/// The SBI version the simulator speaks.
pub const SPEC_VERSION: &str = "0.9.5";
/// Largest request body read (a capture request is well under 4 KiB; MOSIP allows 50 `customOpts`).
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Most items one capture request may ask for (10 fingers + 2 irises + 1 face, with room).
pub const BIO_ITEMS_MAX: usize = 16;
/// `transactionId`: 4–50 characters of `[A-Za-z0-9-]` (SBI spec).
const TRANSACTION_ID_CHARS: std::ops::RangeInclusive<usize> = 4..=50;
/// The quality the simulator reports lies in this range (NFIQ 2.0-like scale, 0–100).
const QUALITY_RANGE: std::ops::RangeInclusive<u8> = 60..=95;

/// A modality the simulator offers as a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Finger,
    Iris,
    Face,
}

impl Modality {
    /// Parses `finger`, `iris` or `face` (any case).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "finger" => Some(Modality::Finger),
            "iris" => Some(Modality::Iris),
            "face" => Some(Modality::Face),
            _ => None,
        }
    }

    /// The SBI `type` / `bioType` word.
    #[must_use]
    pub fn sbi_type(self) -> &'static str {
        match self {
            Modality::Finger => "Finger",
            Modality::Iris => "Iris",
            Modality::Face => "Face",
        }
    }

    fn device_id(self) -> &'static str {
        match self {
            Modality::Finger => "1",
            Modality::Iris => "2",
            Modality::Face => "3",
        }
    }

    fn sub_type(self) -> &'static str {
        match self {
            Modality::Finger => "Slap",
            Modality::Iris => "Double",
            Modality::Face => "Full face",
        }
    }

    /// Every `bioSubType` this device can capture.
    fn all_sub_types(self) -> Vec<&'static str> {
        match self {
            Modality::Finger => FINGER_SUBTYPES.to_vec(),
            Modality::Iris => vec!["Left", "Right"],
            Modality::Face => vec![""],
        }
    }
}

/// The simulator: its devices, its synthetic person, its throwaway key.
pub struct SbiSim {
    modalities: Vec<Modality>,
    person: SynthPerson,
    rng: Mutex<StdRng>,
    key: MachineKey,
    port: u16,
    serial: String,
}

impl std::fmt::Debug for SbiSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SbiSim").field("modalities", &self.modalities).field("port", &self.port).finish_non_exhaustive()
    }
}

impl SbiSim {
    /// A simulator offering `modalities` on `port` (reported in `callbackId`), capturing the
    /// synthetic person of `person_seed`; `capture_seed` makes the capture noise reproducible
    /// (random otherwise).
    ///
    /// # Errors
    /// When no modality is given, or the throwaway key cannot be generated.
    pub fn new(modalities: &[Modality], person_seed: u64, capture_seed: Option<u64>, port: u16) -> Result<Self, String> {
        if modalities.is_empty() {
            return Err("at least one modality is needed".into());
        }
        let mut modalities = modalities.to_vec();
        modalities.dedup();
        let person = SynthPerson::random(&mut StdRng::seed_from_u64(person_seed));
        let rng = capture_seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        let key = MachineKey::ephemeral().map_err(|e| format!("cannot generate the simulator key: {e}"))?;
        Ok(SbiSim { modalities, person, rng: Mutex::new(rng), key, port, serial: format!("SIM{person_seed:09}") })
    }

    /// Compact JWS (EdDSA) over `payload`, the throwaway public key in the header.
    fn jws(&self, payload: &Value) -> String {
        let header = json!({
            "alg": "EdDSA",
            "typ": "JWT",
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(self.key.public_key())},
        });
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn digital_id(&self, m: Modality) -> String {
        self.jws(&json!({
            "serialNo": format!("{}-{}", self.serial, m.device_id()),
            "make": "Tessera",
            "model": format!("SBI simulator ({})", m.sbi_type()),
            "type": m.sbi_type(),
            "deviceSubType": m.sub_type(),
            "deviceProvider": "Tessera simulator (not certified)",
            "deviceProviderId": "tessera.sbi-sim",
            "dateTime": now_iso(),
        }))
    }

    fn device(&self, m: Modality) -> Value {
        json!({
            "deviceId": m.device_id(),
            "deviceStatus": "Ready",
            "certification": "L0",
            "serviceVersion": env!("CARGO_PKG_VERSION"),
            "deviceSubId": match m { Modality::Finger => json!(["1", "2", "3"]), Modality::Iris => json!(["1", "2", "3"]), Modality::Face => json!(["0"]) },
            "callbackId": format!("http://127.0.0.1:{}/", self.port),
            // Discovery's digitalId is unsigned: base64url of the JSON (SBI spec).
            "digitalId": URL_SAFE_NO_PAD.encode(json!({
                "serialNo": format!("{}-{}", self.serial, m.device_id()),
                "make": "Tessera", "model": format!("SBI simulator ({})", m.sbi_type()),
                "type": m.sbi_type(), "deviceSubType": m.sub_type(),
                "deviceProvider": "Tessera simulator (not certified)", "deviceProviderId": "tessera.sbi-sim",
                "dateTime": now_iso(),
            }).to_string()),
            "deviceCode": format!("tessera-sim-{}", m.device_id()),
            "specVersion": [SPEC_VERSION],
            "purpose": "Registration",
            "error": {"errorCode": "0", "errorInfo": "Success"},
        })
    }

    fn discover(&self, body: &[u8]) -> Value {
        let wanted = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["type"].as_str().map(str::to_owned));
        let devices: Vec<Value> = self
            .modalities
            .iter()
            .filter(|m| match wanted.as_deref() {
                None | Some("Biometric Device") => true,
                Some(t) => t.eq_ignore_ascii_case(m.sbi_type()),
            })
            .map(|m| self.device(*m))
            .collect();
        Value::Array(devices)
    }

    fn info(&self) -> Value {
        let items: Vec<Value> = self
            .modalities
            .iter()
            .map(|m| {
                let mut d = self.device(*m);
                if let Some(obj) = d.as_object_mut() {
                    obj.remove("error");
                    obj.insert("digitalId".into(), self.digital_id(*m).into());
                    obj.insert("env".into(), "Developer".into());
                    obj.insert("firmware".into(), "sim-1".into());
                }
                json!({"deviceInfo": self.jws(&d), "error": {"errorCode": "0", "errorInfo": "Success"}})
            })
            .collect();
        Value::Array(items)
    }

    /// `RCAPTURE`: every requested item of every requested device, skipping exceptions.
    fn capture(&self, body: &[u8], registration: bool) -> Result<Value, (StatusCode, Value)> {
        let req: Value = serde_json::from_slice(body).map_err(|_| bad("the capture request is not JSON"))?;
        let tx = req["transactionId"].as_str().unwrap_or_default();
        if !TRANSACTION_ID_CHARS.contains(&tx.chars().count()) || !tx.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(json!({"biometrics": [item_error("112", "invalid transaction id")]}));
        }
        let bio = req["bio"].as_array().ok_or_else(|| bad("the capture request has no bio list"))?;
        if bio.len() > BIO_ITEMS_MAX {
            return Err(bad("too many bio entries"));
        }
        let env = req["env"].as_str().unwrap_or("Developer").to_owned();
        let purpose = req["purpose"].as_str().unwrap_or("Registration").to_owned();
        let mut out = Vec::new();
        let mut previous = hex_upper(&sha256(&[b""]));
        let captured = {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let set = self.person.capture(&mut *rng);
            let qualities: Vec<u8> = (0..BIO_ITEMS_MAX).map(|_| rand::Rng::random_range(&mut *rng, QUALITY_RANGE)).collect();
            (set, qualities)
        };
        let (set, qualities) = captured;
        let birs = set_birs(&set);
        for entry in bio {
            let kind = entry["type"].as_str().and_then(Modality::parse);
            let Some(m) = kind.filter(|m| self.modalities.contains(m)) else {
                out.push(item_error("106", "device not found"));
                continue;
            };
            if !registration {
                out.push(item_error("108", "domain key missing: the simulator cannot encrypt authentication captures; use RCAPTURE"));
                continue;
            }
            let exceptions: Vec<String> =
                entry["exception"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default();
            let requested: Vec<String> = entry["bioSubType"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .filter(|v: &Vec<String>| !v.is_empty())
                .unwrap_or_else(|| m.all_sub_types().into_iter().map(str::to_owned).collect());
            let count = entry["count"].as_u64().and_then(|c| usize::try_from(c).ok()).unwrap_or(requested.len());
            let requested_score = entry["requestedScore"].as_f64().unwrap_or(0.0);
            let wanted = requested.iter().filter(|s| !exceptions.contains(s)).take(count);
            for sub in wanted {
                let Some(bdb) = birs.iter().find(|(mm, s, _)| *mm == m && s == sub).map(|(_, _, b)| b.clone()) else {
                    out.push(item_error("109", "count or subtype not supported"));
                    continue;
                };
                let quality = qualities.get(out.len()).copied().unwrap_or(*QUALITY_RANGE.start());
                let hash = hex_upper(&sha256(&[previous.as_bytes(), hex_upper(&sha256(&[&bdb])).as_bytes()]));
                previous.clone_from(&hash);
                let data = json!({
                    "digitalId": self.digital_id(m),
                    "deviceCode": format!("tessera-sim-{}", m.device_id()),
                    "deviceServiceVersion": env!("CARGO_PKG_VERSION"),
                    "bioType": m.sbi_type(),
                    "bioSubType": sub,
                    "purpose": purpose,
                    "env": env,
                    "bioValue": URL_SAFE_NO_PAD.encode(&bdb),
                    "transactionId": tx,
                    "timestamp": now_iso(),
                    "requestedScore": requested_score,
                    "qualityScore": f64::from(quality),
                });
                out.push(json!({
                    "specVersion": SPEC_VERSION,
                    "data": self.jws(&data),
                    "hash": hash,
                    "error": {"errorCode": "0", "errorInfo": "Success"},
                }));
            }
        }
        Ok(json!({"biometrics": out}))
    }
}

/// `(modality, bioSubType, BDB)` of every record of a capture session.
fn set_birs(set: &TemplateSet) -> Vec<(Modality, String, Vec<u8>)> {
    set.to_birs("")
        .into_iter()
        .filter_map(|b| {
            let m = match b.bdb_info.bio_types.first()? {
                BioType::Finger => Modality::Finger,
                BioType::Iris => Modality::Iris,
                BioType::Face => Modality::Face,
                _ => return None,
            };
            Some((m, b.bdb_info.subtypes.join(" "), b.bdb))
        })
        .collect()
}

fn bad(message: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({"error": {"errorCode": "500", "errorInfo": message}}))
}

fn item_error(code: &str, info: &str) -> Value {
    json!({"specVersion": SPEC_VERSION, "data": "", "hash": "", "error": {"errorCode": code, "errorInfo": info}})
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

fn now_iso() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

async fn handle(State(sim): State<Arc<SbiSim>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let json_response = |status: StatusCode, v: Value| (status, [("content-type", "application/json")], v.to_string()).into_response();
    match (method.as_str(), uri.path()) {
        ("MOSIPDISC", "/device") => json_response(StatusCode::OK, sim.discover(&body)),
        ("MOSIPDINFO", "/info") => json_response(StatusCode::OK, sim.info()),
        ("RCAPTURE" | "CAPTURE", "/capture") => {
            let registration = method.as_str() == "RCAPTURE";
            match sim.capture(&body, registration) {
                Ok(v) => json_response(StatusCode::OK, v),
                Err((s, v)) => json_response(s, v),
            }
        }
        (_, "/device" | "/info" | "/capture") => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The simulator's router: every method on every path goes to one handler, because SBI's verbs
/// are not HTTP's standard ones (axum's method routing knows only those).
pub fn router(sim: Arc<SbiSim>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(REQUEST_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, std::time::Duration::from_secs(30)))
        .with_state(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_names_each_requested_subtype_chains_hashes_and_skips_exceptions() {
        let sim = SbiSim::new(&[Modality::Finger, Modality::Iris], 7, Some(1), 4501).unwrap();
        let req = json!({"env": "Developer", "purpose": "Registration", "specVersion": SPEC_VERSION, "transactionId": "tx-0001",
            "bio": [{"type": "Finger", "count": 10, "bioSubType": FINGER_SUBTYPES, "exception": ["Left Thumb"], "requestedScore": 40},
                    {"type": "Iris", "count": 2, "bioSubType": ["Left", "Right"]},
                    {"type": "Face", "count": 1}]});
        let v = sim.capture(req.to_string().as_bytes(), true).unwrap();
        let items = v["biometrics"].as_array().unwrap();
        assert_eq!(items.len(), 9 + 2 + 1);
        assert_eq!(items[11]["error"]["errorCode"], "106", "no face device was started");
        let mut previous = hex_upper(&sha256(&[b""]));
        for item in &items[..11] {
            assert_eq!(item["error"]["errorCode"], "0");
            let parts: Vec<&str> = item["data"].as_str().unwrap().split('.').collect();
            let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            assert_ne!(payload["bioSubType"], "Left Thumb");
            let bdb = URL_SAFE_NO_PAD.decode(payload["bioValue"].as_str().unwrap()).unwrap();
            let hash = hex_upper(&sha256(&[previous.as_bytes(), hex_upper(&sha256(&[&bdb])).as_bytes()]));
            assert_eq!(item["hash"].as_str().unwrap(), hash);
            previous = hash;
            let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            tessera_crypto::verify_machine_signature(&sim.key.public_key(), format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
        }
        // Authentication captures are refused, malformed transaction ids too.
        let v = sim.capture(req.to_string().as_bytes(), false).unwrap();
        assert_eq!(v["biometrics"][0]["error"]["errorCode"], "108");
        let mut short = req.clone();
        short["transactionId"] = json!("x");
        assert_eq!(sim.capture(short.to_string().as_bytes(), true).unwrap()["biometrics"][0]["error"]["errorCode"], "112");
    }

    #[test]
    fn discovery_filters_by_type_and_dates_are_iso() {
        let sim = SbiSim::new(&[Modality::Finger, Modality::Face], 1, None, 4502).unwrap();
        assert_eq!(sim.discover(br#"{"type":"Biometric Device"}"#).as_array().unwrap().len(), 2);
        let faces = sim.discover(br#"{"type":"Face"}"#);
        assert_eq!(faces.as_array().unwrap().len(), 1);
        assert_eq!(faces[0]["deviceStatus"], "Ready");
        assert_eq!(faces[0]["callbackId"], "http://127.0.0.1:4502/");
        let t = now_iso();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
