//! The registration client's side of MOSIP's SBI: finds biometric device services on
//! 127.0.0.1 (`MOSIPDISC` over a port range, 4501–4600 by default), reads each device's signed
//! information (`MOSIPDINFO`), captures with `RCAPTURE`, and turns the answer into the packet's
//! CBEFF file and capture metadata. Every answer is checked before use: each JWS signature
//! against the key in its header (which proves integrity only: device trust would need the
//! device provider's certificate chain, which is not checked here), the hash chain, the
//! transaction id, sizes and counts.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::time::Duration;
use tessera_biometrics::cbeff::{BdbInfo, BioType, Bir, ProcessedLevel, Purpose, Quality, QualityScore, RegistryId};
use tessera_biometrics::templates::{FINGER_SUBTYPES, FORMAT_FACE_EMBEDDING, FORMAT_IRIS_CODE, MOSIP_ORGANIZATION, TESSERA_ORGANIZATION};
use tessera_crypto::digest::sha256;
use tessera_registration::packet::{BioException, CaptureInfo};

/// Most ports one discovery scans.
pub const PORTS_MAX: u16 = 100;
/// Connecting to a port that may have no service: local, so short.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Discovery and device information answer at once.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the device may take to capture (the request's `timeout`), and the HTTP wait on top.
const CAPTURE_TIMEOUT_MS: u64 = 10_000;
const CAPTURE_HTTP_SLACK: Duration = Duration::from_secs(5);
/// Largest answer read from a device service (13 templates of a few KiB each, signed, base64).
const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest biometric record in one item.
const BDB_BYTES_MAX: usize = 1024 * 1024;
/// Most items one capture answer may carry.
const ITEMS_MAX: usize = 16;
/// The quality asked of a registration capture (NFIQ 2.0 scale).
const REQUESTED_SCORE: u8 = 40;

/// Where to look for devices: one service URL, or a range of ports on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Url(String),
    Ports(u16, u16),
}

impl Target {
    /// `http://127.0.0.1:4501`, `4501`, or `4501-4600`.
    ///
    /// # Errors
    /// Anything else, or a range wider than [`PORTS_MAX`].
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Target::Url(s.trim_end_matches('/').to_owned()));
        }
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b): (u16, u16) = (a.trim().parse().context("--sbi: a port")?, b.trim().parse().context("--sbi: a port")?);
        if a == 0 || b < a || b - a >= PORTS_MAX {
            bail!("--sbi: a port range of 1 to {PORTS_MAX} ports, e.g. 4501-4600");
        }
        Ok(Target::Ports(a, b))
    }

    fn urls(&self) -> Vec<String> {
        match self {
            Target::Url(u) => vec![u.clone()],
            Target::Ports(a, b) => (*a..=*b).map(|p| format!("http://127.0.0.1:{p}")).collect(),
        }
    }
}

/// A device found on a service, with what its signed information says about it.
#[derive(Debug, Clone)]
struct Device {
    base: String,
    device_id: String,
    modality: &'static str,
    device_code: String,
    provider: String,
    serial: String,
}

/// What a capture session gives the packet.
#[derive(Debug)]
pub struct Captured {
    /// The CBEFF XML file.
    pub cbeff: Vec<u8>,
    pub capture: Vec<CaptureInfo>,
}

fn method(name: &[u8]) -> anyhow::Result<reqwest::Method> {
    reqwest::Method::from_bytes(name).context("SBI method name")
}

async fn call(client: &reqwest::Client, verb: &[u8], url: &str, body: &Value, timeout: Duration) -> anyhow::Result<Value> {
    let mut res = client
        .request(method(verb)?, url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(timeout)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("the device service answered HTTP {}", res.status().as_u16());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if bytes.len() + chunk.len() > ANSWER_BYTES_MAX {
            bail!("the device service's answer is larger than {ANSWER_BYTES_MAX} bytes");
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).context("the device service's answer is not JSON")
}

/// A compact JWS: checks its Ed25519 signature against the `jwk` in its header and returns the
/// payload. RS256 devices (certified ones carry `x5c`) are not supported by this client yet.
fn open_jws(token: &str) -> anyhow::Result<Value> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        bail!("a device signature is not a compact JWS");
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).context("JWS header encoding")?).context("JWS header")?;
    if header["alg"] != "EdDSA" || header["jwk"]["crv"] != "Ed25519" {
        bail!("device signatures other than EdDSA with an embedded key are not supported");
    }
    let key = URL_SAFE_NO_PAD.decode(header["jwk"]["x"].as_str().unwrap_or_default()).context("JWS key encoding")?;
    let sig = URL_SAFE_NO_PAD.decode(s).context("JWS signature encoding")?;
    tessera_crypto::verify_machine_signature(&key, format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| anyhow::anyhow!("a device signature does not verify"))?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).context("JWS payload encoding")?).context("JWS payload")
}

fn modality_of(t: &str) -> Option<&'static str> {
    match t {
        "Finger" => Some("Finger"),
        "Iris" => Some("Iris"),
        "Face" => Some("Face"),
        _ => None,
    }
}

fn text(v: &Value, max: usize) -> String {
    v.as_str().unwrap_or_default().chars().take(max).collect()
}

/// Finds the ready registration devices of every service in `target`, with their information.
async fn discover(client: &reqwest::Client, target: &Target) -> anyhow::Result<Vec<Device>> {
    let mut found = Vec::new();
    for base in target.urls() {
        // A port without a device service refuses or answers something else: not an error.
        let Ok(list) = call(client, b"MOSIPDISC", &format!("{base}/device"), &json!({"type": "Biometric Device"}), INFO_TIMEOUT).await
        else {
            continue;
        };
        let Some(list) = list.as_array() else { continue };
        let Ok(info) = call(client, b"MOSIPDINFO", &format!("{base}/info"), &json!({}), INFO_TIMEOUT).await else { continue };
        let infos: Vec<Value> = info
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["deviceInfo"].as_str().and_then(|t| open_jws(t).ok())).collect())
            .unwrap_or_default();
        for d in list.iter().take(ITEMS_MAX) {
            let ready = d["deviceStatus"] == "Ready" && matches!(d["purpose"].as_str(), Some("Registration" | ""));
            let digital: Option<Value> =
                d["digitalId"].as_str().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).and_then(|b| serde_json::from_slice(&b).ok());
            let Some(modality) = digital.as_ref().and_then(|v| v["type"].as_str()).and_then(modality_of) else { continue };
            if !ready {
                continue;
            }
            let device_id = text(&d["deviceId"], 64);
            // The signed information about the same device, when it verifies, wins.
            let signed = infos.iter().find(|i| i["deviceId"].as_str() == Some(device_id.as_str()));
            let signed_digital = signed.and_then(|i| i["digitalId"].as_str()).and_then(|t| open_jws(t).ok());
            let id = signed_digital.or(digital).unwrap_or(Value::Null);
            found.push(Device {
                base: base.clone(),
                device_id,
                modality,
                device_code: text(&d["deviceCode"], 64),
                provider: format!("{} / {} {}", text(&id["deviceProvider"], 48), text(&id["make"], 32), text(&id["model"], 40)),
                serial: text(&id["serialNo"], 64),
            });
        }
    }
    Ok(found)
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// The CBEFF format of a record the device returned, from its type and magic bytes.
fn format_of(modality: &str, bdb: &[u8]) -> anyhow::Result<RegistryId> {
    let (org, ty) = match (modality, bdb.get(..4)) {
        ("Finger", Some(b"FMR\0")) => (MOSIP_ORGANIZATION, "2"),
        ("Finger", Some(b"FIR\0")) => (MOSIP_ORGANIZATION, "7"),
        ("Face", Some(b"FAC\0")) => (MOSIP_ORGANIZATION, "8"),
        ("Face", Some(b"TFE1")) => (TESSERA_ORGANIZATION, FORMAT_FACE_EMBEDDING),
        ("Iris", Some(b"IIR\0")) => (MOSIP_ORGANIZATION, "9"),
        ("Iris", _) => (TESSERA_ORGANIZATION, FORMAT_IRIS_CODE),
        _ => bail!("a {modality} record from the device is in an unknown format"),
    };
    Ok(RegistryId::new(org, ty))
}

/// Captures every modality the devices in `target` offer (a modality once, from the first device
/// found for it), leaving out the exceptions, as one CBEFF file.
///
/// # Errors
/// No device found, a device error, or an answer that fails a check.
pub async fn capture(target: &Target, exceptions: &[BioException], now_ms: i64) -> anyhow::Result<Captured> {
    let client = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().context("cannot set up the HTTP client")?;
    let devices = discover(&client, target).await?;
    if devices.is_empty() {
        bail!("no ready registration device was found (MOSIPDISC on {})", describe(target));
    }
    let mut birs = Vec::new();
    let mut capture = Vec::new();
    let mut seen = Vec::new();
    for d in devices {
        if seen.contains(&d.modality) {
            continue;
        }
        seen.push(d.modality);
        let modality = d.modality.to_ascii_lowercase();
        let skipped: Vec<String> = exceptions.iter().filter(|e| e.modality == modality).map(|e| e.position.clone()).collect();
        let subtypes: Vec<&str> = match d.modality {
            "Finger" => FINGER_SUBTYPES.to_vec(),
            "Iris" => vec!["Left", "Right"],
            _ => vec![],
        };
        let count = if subtypes.is_empty() { 1 } else { subtypes.iter().filter(|s| !skipped.iter().any(|x| x == *s)).count() };
        if count == 0 {
            continue;
        }
        // SBI caps a transaction id at 50 characters: the time and a short digest of the device.
        let device = tessera_crypto::digest::sha256(&[d.device_id.as_bytes()]);
        let transaction = format!("tsr-{now_ms}-{:02x}{:02x}{:02x}{:02x}", device[0], device[1], device[2], device[3]);
        let request = json!({
            "env": "Developer",
            "purpose": "Registration",
            "specVersion": "0.9.5",
            "timeout": CAPTURE_TIMEOUT_MS,
            "captureTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "transactionId": transaction,
            "bio": [{
                "type": d.modality,
                "count": count,
                "bioSubType": subtypes,
                "exception": skipped,
                "requestedScore": REQUESTED_SCORE,
                "deviceId": d.device_id,
                "deviceSubId": "0",
                "previousHash": "",
            }],
            "customOpts": null,
        });
        let wait = Duration::from_millis(CAPTURE_TIMEOUT_MS) + CAPTURE_HTTP_SLACK;
        let answer = call(&client, b"RCAPTURE", &format!("{}/capture", d.base), &request, wait).await?;
        let items = answer["biometrics"].as_array().context("the capture answer has no biometrics list")?;
        if items.len() > ITEMS_MAX {
            bail!("the capture answer has more than {ITEMS_MAX} items");
        }
        let mut previous = hex_upper(&sha256(&[b""]));
        let mut quality_min: Option<u8> = None;
        for item in items {
            let code = item["error"]["errorCode"].as_str().unwrap_or("?");
            if code != "0" {
                bail!("the {} device refused the capture: SBI error {code}", d.modality);
            }
            let data = open_jws(item["data"].as_str().unwrap_or_default())?;
            if data["transactionId"].as_str() != Some(transaction.as_str()) {
                bail!("a capture answer carries another transaction id");
            }
            if data["bioType"].as_str() != Some(d.modality) {
                bail!("a capture answer carries another modality than asked");
            }
            let bdb = URL_SAFE_NO_PAD.decode(data["bioValue"].as_str().unwrap_or_default()).context("bioValue encoding")?;
            if bdb.is_empty() || bdb.len() > BDB_BYTES_MAX {
                bail!("a biometric record from the device is empty or larger than {BDB_BYTES_MAX} bytes");
            }
            let hash = hex_upper(&sha256(&[previous.as_bytes(), hex_upper(&sha256(&[&bdb])).as_bytes()]));
            if item["hash"].as_str() != Some(hash.as_str()) {
                bail!("the capture answer's hash chain is broken");
            }
            previous = hash;
            let subtype = text(&data["bioSubType"], 32);
            if !subtype.is_empty() && !subtypes.contains(&subtype.as_str()) {
                bail!("a capture answer carries a subtype that was not asked for");
            }
            let quality =
                data["qualityScore"].as_f64().filter(|q| (0.0..=100.0).contains(q)).and_then(|q| format!("{q:.0}").parse::<u8>().ok());
            quality_min = match (quality_min, quality) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let info = BdbInfo {
                format: Some(format_of(d.modality, &bdb)?),
                creation_date: Some(text(&data["timestamp"], 40)),
                bio_types: vec![match d.modality {
                    "Finger" => BioType::Finger,
                    "Iris" => BioType::Iris,
                    _ => BioType::Face,
                }],
                subtypes: if subtype.is_empty() { vec![] } else { subtype.split(' ').map(str::to_owned).collect() },
                level: Some(ProcessedLevel::Processed),
                purpose: Some(Purpose::Enroll),
                quality: quality.map(|q| Quality { algorithm: RegistryId::new("HMAC", "SHA-256"), score: QualityScore::Score(q) }),
                ..BdbInfo::default()
            };
            let mut bir = Bir::new(info, bdb);
            bir.others = vec![
                ("SPEC_VERSION".into(), text(&item["specVersion"], 16)),
                ("RETRIES".into(), "1".into()),
                ("FORCE_CAPTURED".into(), "false".into()),
                ("EXCEPTION".into(), "false".into()),
            ];
            birs.push(bir);
        }
        capture.push(CaptureInfo {
            modality,
            device_id: if d.device_code.is_empty() { d.device_id.clone() } else { d.device_code.clone() },
            provider: d.provider.chars().take(tessera_registration::packet::TEXT_CHARS_MAX).collect(),
            serial: d.serial.clone(),
            quality: quality_min,
            captured_at_ms: now_ms,
        });
    }
    if birs.is_empty() {
        bail!("the devices returned no biometrics");
    }
    Ok(Captured { cbeff: tessera_biometrics::cbeff::emit(&birs).into_bytes(), capture })
}

fn describe(target: &Target) -> String {
    match target {
        Target::Url(u) => u.clone(),
        Target::Ports(a, b) => format!("127.0.0.1 ports {a}-{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_are_bounded() {
        assert_eq!(Target::parse("4501-4600").unwrap(), Target::Ports(4501, 4600));
        assert_eq!(Target::parse("4510").unwrap(), Target::Ports(4510, 4510));
        assert_eq!(Target::parse("http://127.0.0.1:4501/").unwrap(), Target::Url("http://127.0.0.1:4501".into()));
        assert!(Target::parse("4501-4601").is_err(), "more than 100 ports");
        assert!(Target::parse("4600-4501").is_err());
        assert!(Target::parse("0").is_err());
        assert!(Target::parse("device").is_err());
    }

    #[test]
    fn formats_are_told_apart_by_magic() {
        assert_eq!(format_of("Finger", b"FMR\0rest").unwrap().type_id, "2");
        assert_eq!(format_of("Face", b"TFE1rest").unwrap().organization, TESSERA_ORGANIZATION);
        assert_eq!(format_of("Iris", &[0u8; 512]).unwrap().type_id, FORMAT_IRIS_CODE);
        assert!(format_of("Finger", b"junk").is_err());
    }
}
