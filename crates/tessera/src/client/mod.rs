//! `tessera client …`: the offline registration client. It works without the server: `enroll`
//! validates a person against the identity schema, captures or reads biometrics, seals the
//! packet with the machine's key to the server's registration certificate and queues it under a
//! fresh RID; `sync` uploads the queue when the server can be reached; `status` follows it.
//! The directory layout is in `dir.rs`, the retry policy in `upload.rs`, the SBI side in `sbi.rs`.

pub mod dir;
pub mod sbi;
pub mod upload;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dir::{CERTIFICATE_FILE, ClientConfig, ClientDir, KEY_FILE};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tessera_core::Rid;
use tessera_core::id::{CentreId, MachineId};
use tessera_core::schema::{FieldType, Schema};
use tessera_crypto::{MachineKey, Recipient};
use tessera_registration::packet::{self, BioException, CaptureInfo, Draft, FileKind, Flow};
use tessera_store::now_ms;

/// Largest document file read (the packet limit bounds the whole anyway).
const DOCUMENT_BYTES_MAX: u64 = packet::PACKET_BYTES_DEFAULT as u64;
/// Most `--document`s.
const DOCUMENTS_MAX: usize = 16;
/// The schema a client directory may carry (else the built-in default).
const SCHEMA_FILE: &str = "schema.json";

#[derive(Debug, clap::Subcommand)]
pub enum ClientCmd {
    /// Create a client directory: configuration, machine key (its public half is printed, to be
    /// registered with `tessera machine register`), the server's registration certificate, and
    /// the RID sequence. The API token comes from TESSERA_CLIENT_TOKEN or a 0600 file, never argv.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Base URL of the server, e.g. http://10.0.0.5:8080.
        #[arg(long)]
        server: String,
        #[arg(long)]
        centre: String,
        #[arg(long)]
        machine: String,
        #[arg(long)]
        operator: String,
        #[arg(long)]
        supervisor: Option<String>,
        /// The PEM printed by `tessera machine certificate` on the server.
        #[arg(long)]
        certificate: PathBuf,
        /// A 0600 file holding the API token (operator or supervisor role).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Use this existing machine key (from `tessera machine keygen`) instead of creating one.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The server's identity schema, if it is not the built-in default.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// The server's `registration.packet_bytes_max`.
        #[arg(long, default_value_t = packet::PACKET_BYTES_DEFAULT)]
        packet_bytes_max: usize,
    },
    /// Make one registration packet and queue it; prints its RID.
    Enroll(EnrollArgs),
    /// Upload every queued packet (bounded retries with exponential backoff).
    Sync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = upload::ATTEMPTS_DEFAULT)]
        max_attempts: u32,
        #[arg(long)]
        json: bool,
    },
    /// Queued, sent and refused packets; with --refresh, what the server says of each sent one.
    Status {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        refresh: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    #[arg(long)]
    dir: PathBuf,
    /// The identity record (JSON in the identity schema). Document and biometric fields name
    /// packet files in their `ref`.
    #[arg(long)]
    person: PathBuf,
    /// NAME=FILE: a document, stored in the packet as NAME (the `ref` of a document field).
    #[arg(long = "document", value_name = "NAME=FILE")]
    documents: Vec<String>,
    /// A CBEFF XML file with the biometrics.
    #[arg(long, conflicts_with = "sbi")]
    biometrics: Option<PathBuf>,
    /// Capture from SBI devices: a service URL, a port, or a port range on 127.0.0.1
    /// (MOSIP's is 4501-4600).
    #[arg(long, num_args = 0..=1, default_missing_value = "4501-4600")]
    sbi: Option<String>,
    #[arg(long, value_parser = ["new", "update", "lost", "child"], default_value = "new")]
    flow: String,
    /// update: the UIN being updated.
    #[arg(long)]
    uin: Option<String>,
    /// child: the parent's or guardian's UIN.
    #[arg(long)]
    guardian_uin: Option<String>,
    /// MODALITY:POSITION:REASON, e.g. "finger:Left Thumb:amputated" (needs --exception-photo).
    #[arg(long = "exception", value_name = "MODALITY:POSITION:REASON")]
    exceptions: Vec<String>,
    /// A photo of the person, for biometric exceptions.
    #[arg(long)]
    exception_photo: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Runs a client command (its own small runtime: no server configuration is read).
///
/// # Errors
/// Whatever the command reports.
pub fn command(cmd: ClientCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    match cmd {
        ClientCmd::Init { dir, server, centre, machine, operator, supervisor, certificate, token_file, key, schema, packet_bytes_max } => {
            init(InitArgs { dir, server, centre, machine, operator, supervisor, certificate, token_file, key, schema, packet_bytes_max })
        }
        ClientCmd::Enroll(args) => rt.block_on(enroll(args)),
        ClientCmd::Sync { dir, max_attempts, json } => rt.block_on(upload::sync(&ClientDir::open(&dir)?, max_attempts, json)),
        ClientCmd::Status { dir, refresh, json } => rt.block_on(upload::status(&ClientDir::open(&dir)?, refresh, json)),
    }
}

struct InitArgs {
    dir: PathBuf,
    server: String,
    centre: String,
    machine: String,
    operator: String,
    supervisor: Option<String>,
    certificate: PathBuf,
    token_file: Option<PathBuf>,
    key: Option<PathBuf>,
    schema: Option<PathBuf>,
    packet_bytes_max: usize,
}

fn staff_id(what: &str, s: &str) -> anyhow::Result<()> {
    if s.is_empty() || s.chars().count() > packet::TEXT_CHARS_MAX || s.chars().any(char::is_control) {
        bail!("{what} must be 1 to {} printable characters", packet::TEXT_CHARS_MAX);
    }
    Ok(())
}

fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    CentreId::parse(&a.centre).map_err(|e| anyhow::anyhow!("--centre: {e}"))?;
    MachineId::parse(&a.machine).map_err(|e| anyhow::anyhow!("--machine: {e}"))?;
    staff_id("--operator", &a.operator)?;
    if let Some(s) = &a.supervisor {
        staff_id("--supervisor", s)?;
    }
    if !(a.server.starts_with("http://") || a.server.starts_with("https://")) {
        bail!("--server must be an http:// or https:// URL");
    }
    if a.packet_bytes_max == 0 || a.packet_bytes_max > packet::PACKET_BYTES_DEFAULT {
        bail!("--packet-bytes-max must be between 1 and {}", packet::PACKET_BYTES_DEFAULT);
    }
    let pem = dir::read_small(&a.certificate).with_context(|| format!("cannot read {}", a.certificate.display()))?;
    Recipient::parse(&pem).map_err(|e| anyhow::anyhow!("{} is not the registration certificate: {e}", a.certificate.display()))?;
    let token_file = match a.token_file {
        Some(p) => {
            dir::read_token_file(&p)?;
            Some(std::path::absolute(&p).with_context(|| format!("cannot resolve {}", p.display()))?)
        }
        None => None,
    };
    let schema_text = a.schema.as_ref().map(|p| dir::read_small(p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
    if let Some(t) = &schema_text {
        Schema::from_json(std::str::from_utf8(t).context("the schema is not UTF-8")?)
            .map_err(|e| anyhow::anyhow!("invalid schema: {e}"))?;
    }
    let key_file = match &a.key {
        Some(k) => {
            MachineKey::open_file(k).map_err(|e| anyhow::anyhow!("cannot open the machine key {}: {e}", k.display()))?;
            std::path::absolute(k).with_context(|| format!("cannot resolve {}", k.display()))?
        }
        None => PathBuf::from(KEY_FILE),
    };
    let config = ClientConfig {
        format: dir::FORMAT.into(),
        server: a.server.trim_end_matches('/').to_owned(),
        centre: a.centre,
        machine: a.machine,
        operator: a.operator,
        supervisor: a.supervisor,
        key_file,
        certificate_file: CERTIFICATE_FILE.into(),
        token_file,
        packet_bytes_max: a.packet_bytes_max,
    };
    let d = ClientDir::create(&a.dir, config)?;
    dir::write_atomic(&d.root.join(CERTIFICATE_FILE), &pem)?;
    if let Some(t) = schema_text {
        dir::write_atomic(&d.root.join(SCHEMA_FILE), &t)?;
    }
    let key = match &a.key {
        Some(k) => MachineKey::open_file(k).map_err(|e| anyhow::anyhow!("cannot open the machine key {}: {e}", k.display()))?,
        None => MachineKey::create_file(&d.root.join(KEY_FILE)).map_err(|e| anyhow::anyhow!("cannot create the machine key: {e}"))?,
    };
    println!(
        "{}",
        json!({
            "dir": d.root.display().to_string(),
            "centre": d.config.centre,
            "machine": d.config.machine,
            "public_key": STANDARD.encode(key.public_key()),
            "register_with": format!("tessera machine register --id {} --centre {} --public-key <public_key>", d.config.machine, d.config.centre),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn schema_of(d: &ClientDir) -> anyhow::Result<Schema> {
    let p = d.root.join(SCHEMA_FILE);
    if !p.exists() {
        return Ok(Schema::default_schema());
    }
    let text = dir::read_small(&p)?;
    Schema::from_json(std::str::from_utf8(&text).context("schema.json is not UTF-8")?).map_err(|e| anyhow::anyhow!("schema.json: {e}"))
}

fn parse_exception(s: &str) -> anyhow::Result<BioException> {
    let mut parts = s.splitn(3, ':');
    let (Some(m), Some(p), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--exception must be MODALITY:POSITION:REASON");
    };
    let modality = m.trim().to_ascii_lowercase();
    if !matches!(modality.as_str(), "finger" | "iris" | "face") {
        bail!("--exception: the modality must be finger, iris or face");
    }
    Ok(BioException { modality, position: p.trim().to_owned(), reason: r.trim().to_owned() })
}

fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= packet::FILE_NAME_CHARS_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != packet::IDENTITY_FILE
}

/// A UIN as the client can check it without the server's rules: digits, bounded.
fn uin_arg(what: &str, u: Option<&String>) -> anyhow::Result<Option<String>> {
    match u {
        None => Ok(None),
        Some(u) if !u.is_empty() && u.len() <= 32 && u.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(u.clone())),
        Some(_) => bail!("{what} must be digits"),
    }
}

async fn enroll(a: EnrollArgs) -> anyhow::Result<ExitCode> {
    let d = ClientDir::open(&a.dir)?;
    let flow = Flow::parse(&a.flow).map_err(|_| anyhow::anyhow!("--flow: new, update, lost or child"))?;
    let uin = uin_arg("--uin", a.uin.as_ref())?;
    let guardian_uin = uin_arg("--guardian-uin", a.guardian_uin.as_ref())?;
    match flow {
        Flow::Update if uin.is_none() => bail!("--flow update needs --uin"),
        Flow::Child if guardian_uin.is_none() => bail!("--flow child needs --guardian-uin"),
        _ => {}
    }
    // The person: JSON in the schema, validated here so an operator learns of a mistake while the
    // person is still at the desk. Errors name fields and codes, never values.
    let person_bytes = dir::read_limited(&a.person, packet::IDENTITY_BYTES_MAX as u64)
        .with_context(|| format!("cannot read the person file {}", a.person.display()))?;
    let mut record: Value = serde_json::from_slice(&person_bytes).map_err(|_| anyhow::anyhow!("the person file is not JSON"))?;
    if !record.is_object() {
        bail!("the person file must be a JSON object");
    }
    let schema = schema_of(&d)?;
    let exceptions: Vec<BioException> = a.exceptions.iter().map(|e| parse_exception(e)).collect::<anyhow::Result<_>>()?;
    if exceptions.len() > packet::EXCEPTIONS_MAX {
        bail!("at most {} exceptions", packet::EXCEPTIONS_MAX);
    }
    if !exceptions.is_empty() && a.exception_photo.is_none() {
        bail!("biometric exceptions need --exception-photo");
    }
    let now = now_ms();

    // Biometrics: from a file, or captured now.
    let mut capture: Vec<CaptureInfo> = Vec::new();
    let cbeff = if let Some(p) = &a.biometrics {
        let bytes = dir::read_limited(p, DOCUMENT_BYTES_MAX).with_context(|| format!("cannot read {}", p.display()))?;
        let birs = tessera_biometrics::cbeff::parse(&bytes).map_err(|e| anyhow::anyhow!("the biometrics file is not valid CBEFF: {e}"))?;
        tessera_biometrics::templates::TemplateSet::from_birs(&birs)
            .map_err(|e| anyhow::anyhow!("the biometrics file is unusable: {e}"))?;
        for m in ["finger", "iris", "face"] {
            let of: Vec<_> =
                birs.iter().filter(|b| b.bdb_info.bio_types.first().is_some_and(|t| t.as_str().eq_ignore_ascii_case(m))).collect();
            if of.is_empty() {
                continue;
            }
            let quality = of
                .iter()
                .filter_map(|b| match b.bdb_info.quality.as_ref().map(|q| &q.score) {
                    Some(tessera_biometrics::cbeff::QualityScore::Score(s)) => Some(*s),
                    _ => None,
                })
                .min();
            capture.push(CaptureInfo {
                modality: m.into(),
                device_id: "file".into(),
                provider: "imported CBEFF file".into(),
                serial: String::new(),
                quality,
                captured_at_ms: now,
            });
        }
        Some(bytes)
    } else if let Some(t) = &a.sbi {
        let target = sbi::Target::parse(t)?;
        let got = sbi::capture(&target, &exceptions, now).await?;
        capture = got.capture;
        Some(got.cbeff)
    } else {
        None
    };
    if cbeff.is_none() && exceptions.is_empty() && matches!(flow, Flow::New | Flow::Lost) {
        bail!("a {} registration needs biometrics (--biometrics FILE or --sbi) or exceptions", flow.as_str());
    }

    let mut files: Vec<(String, FileKind, Vec<u8>)> = Vec::new();
    if let Some(bytes) = cbeff {
        // The record's biometric field names the file; one is added when the record has none.
        let field = schema.fields().find(|f| f.kind == FieldType::Biometric).map(|f| f.id.clone());
        let named = field.as_ref().and_then(|f| record.get(f)).and_then(|v| v.get("ref")).and_then(Value::as_str).map(str::to_owned);
        let name = match (named, field) {
            (Some(n), _) => n,
            (None, Some(f)) => {
                record[&f] = json!({"format": "cbeff", "ref": "biometrics"});
                "biometrics".to_owned()
            }
            (None, None) => bail!("the identity schema has no biometric field"),
        };
        if !file_name_ok(&name) {
            bail!("the biometric field's ref is not a valid packet file name");
        }
        files.push((name, FileKind::Biometrics, bytes));
    }
    if a.documents.len() > DOCUMENTS_MAX {
        bail!("at most {DOCUMENTS_MAX} documents");
    }
    for doc in &a.documents {
        let (name, path) = doc.split_once('=').context("--document must be NAME=FILE")?;
        if !file_name_ok(name) || files.iter().any(|f| f.0 == name) {
            bail!("--document: {name:?} is not a valid packet file name ([A-Za-z0-9._-], at most 64) or is given twice");
        }
        let bytes = dir::read_limited(Path::new(path), DOCUMENT_BYTES_MAX).with_context(|| format!("cannot read the document {path}"))?;
        files.push((name.to_owned(), FileKind::Document, bytes));
    }
    if let Some(p) = &a.exception_photo {
        let bytes = dir::read_limited(p, DOCUMENT_BYTES_MAX).with_context(|| format!("cannot read {}", p.display()))?;
        files.push(("exceptionPhoto".into(), FileKind::ExceptionPhoto, bytes));
    }
    // Every document field's ref must be a document given here, and every document be named.
    for spec in schema.fields().filter(|f| f.kind == FieldType::Document) {
        if let Some(r) = record.get(&spec.id).and_then(|v| v.get("ref")).and_then(Value::as_str)
            && !files.iter().any(|f| f.0 == r && f.1 == FileKind::Document)
        {
            bail!("the record's {} names a document that no --document gives", spec.id);
        }
    }
    if flow != Flow::Update {
        let today = time::OffsetDateTime::now_utc().date();
        if let Err(errors) = schema.validate(&record, today) {
            for e in &errors {
                eprintln!("invalid person: {}: {} ({})", e.path, e.message, e.code.as_str());
            }
            bail!("the person file does not pass the identity schema ({} errors); nothing was queued", errors.len());
        }
    }
    files.insert(0, (packet::IDENTITY_FILE.into(), FileKind::Identity, serde_json::to_vec(&record)?));

    let key = MachineKey::open_file(&d.resolve(&d.config.key_file)).map_err(|e| anyhow::anyhow!("cannot open the machine key: {e}"))?;
    let pem = dir::read_small(&d.resolve(&d.config.certificate_file))?;
    let recipient = Recipient::parse(&pem).map_err(|e| anyhow::anyhow!("the stored registration certificate is invalid: {e}"))?;
    let centre = CentreId::parse(&d.config.centre).map_err(|e| anyhow::anyhow!("client.toml centre: {e}"))?;
    let machine = MachineId::parse(&d.config.machine).map_err(|e| anyhow::anyhow!("client.toml machine: {e}"))?;

    // The RID's number is spent (persisted) before the packet exists.
    let seq = d.next_sequence()?;
    let at = time::OffsetDateTime::from_unix_timestamp(now / 1000).context("the clock")?;
    let rid = Rid::new(centre, machine, seq, time::PrimitiveDateTime::new(at.date(), at.time().replace_nanosecond(0).unwrap_or(at.time())))
        .map_err(|e| anyhow::anyhow!("cannot make a RID: {e}"))?;
    let draft = Draft {
        rid,
        flow,
        operator: d.config.operator.clone(),
        supervisor: d.config.supervisor.clone(),
        created_at_ms: now,
        gps: None,
        uin,
        guardian_uin,
        exceptions,
        capture,
        files,
    };
    let sealed = draft
        .seal(&key, &recipient, d.config.packet_bytes_max)
        .map_err(|e| anyhow::anyhow!("cannot seal the packet ({}): {e}", e.code()))?;
    let rid = draft.rid.to_string();
    let path = d.enqueue(&rid, &sealed)?;
    if a.json {
        println!("{}", json!({"rid": rid, "bytes": sealed.len(), "queued": path.display().to_string(), "captures": draft.capture.len()}));
    } else {
        println!("{rid}");
    }
    Ok(ExitCode::SUCCESS)
}
