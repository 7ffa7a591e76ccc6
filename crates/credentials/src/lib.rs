//! Tessera's verifiable credentials. A person's credential is an SD-JWT VC (`sd_jwt`): every
//! personal claim selectively disclosable, signed by the issuer's Ed25519 signing key (which
//! never leaves the keystore), verifiable offline with the issuer's JWKS. The registration
//! pipeline issues one when it issues or updates an identity; it is stored sealed under the
//! person's own data key, so erasing the person erases it.
//!
//! Claims: `uin` and every identity field of the schema except documents and biometrics, by the
//! schema's field ids, values as stored (multilingual fields keep their language list).

pub mod sd_jwt;

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_core::Uin;
use tessera_core::schema::FieldType;
use tessera_idrepo::{Actor, IdRepo, RepoError};
use tessera_store::UnixMillis;
use tessera_store::credentials::{self as rows, CredentialRow};

/// The sealed-item kind of a credential (`IdRepo::seal_for_person`).
const SEALED_KIND: &str = "credential";
/// The stored format name (the credential's `typ`).
const FORMAT: &str = sd_jwt::TYP;

/// Who issues, what, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialConfig {
    /// `iss`: the issuer's identifier, an HTTPS URL (its JWKS is at
    /// `<issuer>/.well-known/jwks.json` when Tessera serves it).
    pub issuer: String,
    /// `vct`: the credential type.
    pub vct: String,
    /// Validity from issuance.
    pub validity_days: u32,
}

impl Default for CredentialConfig {
    fn default() -> Self {
        CredentialConfig {
            issuer: "http://127.0.0.1:8080".into(),
            vct: "urn:tessera:credential:national-id:1".into(),
            validity_days: 5 * 365,
        }
    }
}

/// Longest validity accepted in configuration.
pub const VALIDITY_DAYS_MAX: u32 = 20 * 366;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] tessera_store::StoreError),
    #[error(transparent)]
    Format(#[from] sd_jwt::SdJwtError),
    #[error(transparent)]
    Crypto(#[from] tessera_crypto::CryptoError),
    #[error("invalid credential configuration: {0}")]
    Config(&'static str),
}

impl CredentialError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::Repo(e) => e.code(),
            CredentialError::Store(e) => e.code(),
            CredentialError::Format(e) => e.code(),
            CredentialError::Crypto(e) => e.code(),
            CredentialError::Config(_) => "credential_config_invalid",
        }
    }
}

pub type Result<T> = std::result::Result<T, CredentialError>;

/// A credential as its holder (or an administrator acting for them) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub id: String,
    pub format: String,
    pub status: String,
    pub kid: String,
    pub issued_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    /// The compact SD-JWT (`<jwt>~<disclosure>~…~`); `None` once the person is erased.
    pub credential: Option<String>,
}

/// A row as shown, with its opened credential (`None`: the person's key is destroyed).
fn view(r: &CredentialRow, opened: Option<&Vec<u8>>) -> Credential {
    Credential {
        id: r.id.clone(),
        format: r.format.clone(),
        status: r.status.clone(),
        kid: r.kid.clone(),
        issued_at_ms: r.issued_at_ms,
        expires_at_ms: r.expires_at_ms,
        credential: opened.map(|b| String::from_utf8_lossy(b).into_owned()),
    }
}

/// The issuing service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Credentials {
    repo: IdRepo,
    cfg: CredentialConfig,
}

impl Credentials {
    /// # Errors
    /// `Config` for an empty issuer or type, or a validity of 0 or over `VALIDITY_DAYS_MAX`.
    pub fn new(repo: IdRepo, cfg: CredentialConfig) -> Result<Self> {
        if cfg.issuer.trim().is_empty() || cfg.vct.trim().is_empty() {
            return Err(CredentialError::Config("issuer and vct must not be empty"));
        }
        if cfg.validity_days == 0 || cfg.validity_days > VALIDITY_DAYS_MAX {
            return Err(CredentialError::Config("validity_days must be 1..=7320"));
        }
        Ok(Credentials { repo, cfg })
    }

    #[must_use]
    pub fn config(&self) -> &CredentialConfig {
        &self.cfg
    }

    /// Issues the person's credential for `source` (`rid:<RID>`: one per registration), from
    /// their current record, unless that source issued one already (then that one is returned:
    /// a retried job issues nothing new). The new credential supersedes the person's older ones.
    /// Audited as `credential.issue`.
    ///
    /// # Errors
    /// `Gone`/`NotFound` for an erased or unknown person; keystore and storage errors.
    pub async fn issue_for(&self, actor: &Actor, identity_id: &str, source: &str, now: UnixMillis) -> Result<CredentialRow> {
        if let Some(existing) = rows::by_source(self.repo.db(), source).await? {
            return Ok(existing);
        }
        let record = self.repo.record_of(identity_id).await?;
        let uin = self.repo.uin_of(identity_id).await?;
        let claims = self.claims(&record, &uin);
        let id = format!("urn:uuid:{}", uuid::Uuid::now_v7());
        let issued_at_s = now.div_euclid(1000);
        let expires_at_s = issued_at_s + i64::from(self.cfg.validity_days) * 86_400;
        let issued = sd_jwt::issue(
            &**self.repo.keystore(),
            &sd_jwt::Claims { issuer: &self.cfg.issuer, vct: &self.cfg.vct, id: &id, issued_at_s, expires_at_s, disclosable: &claims },
        )?;
        let sealed = self.repo.seal_for_person(identity_id, SEALED_KIND, &id, issued.compact.as_bytes()).await?;
        let row = CredentialRow {
            id,
            identity_id: identity_id.to_owned(),
            source: source.to_owned(),
            format: FORMAT.to_owned(),
            kid: issued.kid,
            status: "active".into(),
            issued_at_ms: now,
            expires_at_ms: expires_at_s * 1000,
            changed_at_ms: now,
            sealed,
        };
        let mut tx = self.repo.db().begin().await?;
        let inserted = rows::insert(&mut tx, &row).await?;
        if inserted {
            tessera_idrepo::audit::append(&mut tx, &**self.repo.keystore(), &[actor.event("credential.issue", identity_id, "ok")], now)
                .await?;
        }
        tx.commit().await?;
        if inserted {
            return Ok(row);
        }
        // Issued meanwhile by another delivery of the same job: that one stands.
        rows::by_source(self.repo.db(), source).await?.ok_or(CredentialError::Store(tessera_store::StoreError::Conflict))
    }

    /// The personal claims: `uin` and the record's fields, documents and biometrics left out.
    fn claims(&self, record: &Map<String, Value>, uin: &Uin) -> Map<String, Value> {
        let schema = self.repo.schema();
        let mut out = Map::new();
        out.insert("uin".into(), Value::String(uin.expose().to_owned()));
        for f in schema.fields() {
            if matches!(f.kind, FieldType::Document | FieldType::Biometric) {
                continue;
            }
            if sd_jwt::is_reserved(&f.id) || f.id == "uin" {
                // A schema field named like a JWT claim (`status`, `sub`): left out rather than
                // refusing every credential. The field id is schema, not personal data.
                tracing::warn!(field = %f.id, "identity field left out of credentials: its name is a reserved claim name");
                continue;
            }
            if let Some(v) = record.get(&f.id) {
                out.insert(f.id.clone(), v.clone());
            }
        }
        out
    }

    /// The person's credentials, newest first, opened. Audited as `credential.read` whatever
    /// the outcome.
    ///
    /// # Errors
    /// `NotFound`, `Gone` (erased), storage and crypto errors.
    pub async fn list(&self, actor: &Actor, uin: &Uin, now: UnixMillis) -> Result<Vec<Credential>> {
        let result = self.list_inner(uin).await;
        let (target, outcome) = match &result {
            Ok((id, _)) => (id.as_str(), "ok"),
            Err(e) => ("", e.code()),
        };
        let mut tx = self.repo.db().begin().await?;
        tessera_idrepo::audit::append(&mut tx, &**self.repo.keystore(), &[actor.event("credential.read", target, outcome)], now).await?;
        tx.commit().await?;
        result.map(|(_, list)| list)
    }

    async fn list_inner(&self, uin: &Uin) -> Result<(String, Vec<Credential>)> {
        let identity_id = self.repo.identity_id_of(uin).await?;
        let found = rows::for_identity(self.repo.db(), &identity_id).await?;
        let items: Vec<(&str, &[u8])> = found.iter().map(|r| (r.id.as_str(), r.sealed.as_slice())).collect();
        let opened = self.repo.open_for_person(&identity_id, SEALED_KIND, &items).await?;
        let list = found.iter().enumerate().map(|(i, r)| view(r, opened.as_ref().and_then(|o| o.get(i)))).collect();
        Ok((identity_id, list))
    }

    /// One credential row (as `issue_for` returns it), opened. Not audited: its issue was.
    ///
    /// # Errors
    /// `Corrupt` when it does not open; keystore, vault errors.
    pub async fn open(&self, row: &CredentialRow) -> Result<Credential> {
        let opened = self.repo.open_for_person(&row.identity_id, SEALED_KIND, &[(row.id.as_str(), row.sealed.as_slice())]).await?;
        Ok(view(row, opened.as_ref().and_then(|o| o.first())))
    }

    /// The issuer's JWKS: what a verifier needs, offline, to check any credential issued here.
    ///
    /// # Errors
    /// Keystore failures.
    pub fn jwks(&self) -> Result<Value> {
        Ok(sd_jwt::jwks(&**self.repo.keystore())?)
    }
}
