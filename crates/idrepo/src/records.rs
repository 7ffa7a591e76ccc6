//! Create, read, update, list versions of, and erase identities.
//!
//! Sealed record format `tessera-record-1` (hard to change): the plaintext sealed in
//! `identity_versions.record` is the JSON object
//! `{"format": "tessera-record-1", "uin": "...", "external_ref": "..."|null, "record": {...},
//!   "attachments": {"<ref>": {"field": "<schema field>", "blob": "<blob key>", "bytes": N}}}`
//! sealed with the person's data key under AAD `tessera-identity-1/<id>/v<version>/record`; the
//! reason under `…/reason`; each attachment blob under `tessera-identity-1/<id>/attachment/<field>/<ref>`.
//! The data key is wrapped under AAD `tessera-dek-1/<id>`.

use crate::audit::{self, Event};
use crate::{ATTACHMENT_BYTES_MAX, ATTACHMENTS_MAX, Actor, EXTERNAL_REF_CHARS_MAX, IdRepo, REASON_CHARS_MAX, RepoError, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tessera_core::Uin;
use tessera_core::schema::FieldType;
use tessera_crypto::{DataKey, KeyId, Purpose, WrappedKey, tokens::lookup_digest};
use tessera_store::identities::{self, IdentityRow, LookupRow, NewIdentity, VersionRow};
use tessera_store::jobs::{self, JobKind};
use tessera_store::vault::VaultEntry;
use tessera_store::{BlobKey, StoreError, Tx, UnixMillis, uin_pool};

pub(crate) const RECORD_FORMAT: &str = "tessera-record-1";
pub(crate) const KIND_UIN: &str = "uin";
pub(crate) const KIND_EXTERNAL_REF: &str = "external_ref";

/// The plaintext inside a sealed version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub format: String,
    pub uin: String,
    pub external_ref: Option<String>,
    pub record: Map<String, Value>,
    #[serde(default)]
    pub attachments: BTreeMap<String, Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attachment {
    pub field: String,
    pub blob: String,
    pub bytes: usize,
}

/// What a caller submits to create an identity.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub record: Value,
    /// Document and biometric contents by the `ref` the record gives them.
    pub attachments: BTreeMap<String, Vec<u8>>,
    /// The id of this person in a legacy register (import, migration); unique.
    pub external_ref: Option<String>,
    pub reason: String,
}

/// A created identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub uin: Uin,
    pub id: String,
    pub version: i64,
}

/// A change to an identity: a JSON merge patch (RFC 7396) of the record, new attachment
/// contents for refs the patched record introduces, and the version it was based on.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub patch: Value,
    pub attachments: BTreeMap<String, Vec<u8>>,
    /// When given, the update is refused unless this is still the current version.
    pub expected_version: Option<i64>,
    pub reason: String,
}

/// An identity as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub uin: Uin,
    pub id: String,
    pub version: i64,
    pub record: Map<String, Value>,
    pub external_ref: Option<String>,
    /// Refs of the documents and biometrics held, with their sizes.
    pub attachments: BTreeMap<String, usize>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    /// The key-encryption key the person's data key is wrapped under (`identity.v2`).
    pub sealed_with: String,
}

/// One version: who, when, why, and (for callers allowed to read) the record.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: i64,
    pub at_ms: UnixMillis,
    pub actor: String,
    pub reason: String,
    pub record: Option<Map<String, Value>>,
}

pub(crate) fn dek_context(id: &str) -> Vec<u8> {
    format!("tessera-dek-1/{id}").into_bytes()
}

fn record_aad(id: &str, version: i64, field: &str) -> Vec<u8> {
    format!("tessera-identity-1/{id}/v{version}/{field}").into_bytes()
}

fn attachment_aad(id: &str, field: &str, r#ref: &str) -> Vec<u8> {
    format!("tessera-identity-1/{id}/attachment/{field}/{ref}").into_bytes()
}

/// The UTC date of a moment (the "today" that dates of birth are checked against).
#[must_use]
pub fn today(now: UnixMillis) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(now.div_euclid(1000)).map_or(time::Date::MIN, time::OffsetDateTime::date)
}

pub(crate) fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > REASON_CHARS_MAX {
        return Err(RepoError::BadRequest("reason is longer than 500 characters"));
    }
    Ok(())
}

pub(crate) fn check_external_ref(r: &str) -> Result<()> {
    if r.is_empty() || r.chars().count() > EXTERNAL_REF_CHARS_MAX || r.chars().any(char::is_control) {
        return Err(RepoError::BadRequest("external_ref must be 1 to 128 printable characters"));
    }
    Ok(())
}

impl IdRepo {
    /// Every lookup key version still in the keystore.
    pub(crate) fn lookup_keys(&self) -> Vec<KeyId> {
        self.inner.ks.list().into_iter().filter(|k| k.id.purpose == Purpose::Lookup).map(|k| k.id).collect()
    }

    /// Digests of one identifier under every lookup key version (reads must find entries
    /// written before a rotation; the re-index job moves them to the current version).
    pub(crate) fn digests_all_versions(&self, kind: &str, value: &str) -> Result<Vec<Vec<u8>>> {
        self.digests_under(&self.lookup_keys(), kind, value)
    }

    /// Digests of one identifier under the given lookup keys (callers digesting many values
    /// list the keys once).
    pub(crate) fn digests_under(&self, keys: &[KeyId], kind: &str, value: &str) -> Result<Vec<Vec<u8>>> {
        keys.iter().map(|k| Ok(lookup_digest(&*self.inner.ks, *k, kind, value)?.to_vec())).collect()
    }

    pub(crate) fn lookup_row(&self, kind: &str, value: &str, id: &str) -> Result<LookupRow> {
        let key = self.inner.ks.current(Purpose::Lookup);
        Ok(LookupRow {
            digest: lookup_digest(&*self.inner.ks, key, kind, value)?.to_vec(),
            key_version: i64::from(key.version),
            identity_id: id.to_owned(),
        })
    }

    /// The identity a UIN names: `NotFound` if it was never issued to anyone here, `Gone` if
    /// it was and the person has been erased (the pool says ISSUED; the lookup entry is gone).
    async fn resolve(&self, uin: &Uin) -> Result<IdentityRow> {
        let digests = self.digests_all_versions(KIND_UIN, uin.expose())?;
        if let Some(hit) = identities::find_digests(&self.inner.db, &digests).await?.into_iter().next() {
            let row =
                identities::get(&self.inner.db, &hit.identity_id).await?.ok_or(RepoError::Corrupt("lookup entry without identity"))?;
            return if row.erased { Err(RepoError::Gone) } else { Ok(row) };
        }
        match uin_pool::state_of(&self.inner.db, uin).await?.as_deref() {
            Some("ISSUED") => Err(RepoError::Gone),
            _ => Err(RepoError::NotFound),
        }
    }

    /// The person's data key, unwrapped, and the key-encryption key it is wrapped under.
    pub(crate) async fn data_key(&self, id: &str) -> Result<(DataKey, KeyId)> {
        let entry = self.inner.vault.get(id).await?.ok_or(RepoError::Gone)?;
        let kek = KeyId::parse(&entry.kek)?;
        Ok((self.inner.ks.unwrap(&WrappedKey { kek, bytes: entry.wrapped }, &dek_context(id))?, kek))
    }

    /// The current version of `row`, opened: its data key, that key's wrapping key, and the record.
    pub(crate) async fn open_current(&self, row: &IdentityRow) -> Result<(DataKey, KeyId, Sealed)> {
        let (dek, kek) = self.data_key(&row.id).await?;
        let v = identities::version(&self.inner.db, &row.id, row.version).await?.ok_or(RepoError::Corrupt("current version missing"))?;
        let sealed = Self::open_version(&dek, &v)?;
        Ok((dek, kek, sealed))
    }

    pub(crate) fn open_version(dek: &DataKey, row: &VersionRow) -> Result<Sealed> {
        let plain = dek.open(&record_aad(&row.identity_id, row.version, "record"), &row.record)?;
        let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| RepoError::Corrupt("sealed record is not a record"))?;
        if sealed.format != RECORD_FORMAT {
            return Err(RepoError::Corrupt("unknown sealed record format"));
        }
        Ok(sealed)
    }

    pub(crate) fn seal_version(
        dek: &DataKey,
        sealed: &Sealed,
        id: &str,
        version: i64,
        reason: &str,
        actor: &Actor,
        now: UnixMillis,
    ) -> Result<VersionRow> {
        let plain = serde_json::to_vec(sealed).map_err(|_| RepoError::Corrupt("record does not serialize"))?;
        Ok(VersionRow {
            identity_id: id.to_owned(),
            version,
            record: dek.seal(&record_aad(id, version, "record"), &plain)?,
            reason: dek.seal(&record_aad(id, version, "reason"), reason.as_bytes())?,
            actor: actor.id.clone(),
            created_at_ms: now,
        })
    }

    /// Validates a record against the schema, and matches its document and biometric refs to
    /// `attachments` (new contents) or `kept` (contents already stored by an earlier version).
    /// Returns the record and, per ref, the schema field it belongs to.
    pub(crate) fn check_record(
        &self,
        record: &Value,
        attachments: &BTreeMap<String, Vec<u8>>,
        kept: &BTreeMap<String, Attachment>,
        now: UnixMillis,
    ) -> Result<(Map<String, Value>, BTreeMap<String, String>)> {
        let valid = self.inner.schema.validate(record, today(now)).map_err(RepoError::Invalid)?.into_inner();
        if attachments.len() > ATTACHMENTS_MAX {
            return Err(RepoError::BadRequest("too many attachments"));
        }
        if attachments.values().any(|b| b.len() > ATTACHMENT_BYTES_MAX || b.is_empty()) {
            return Err(RepoError::BadRequest("an attachment is empty or larger than 8 MiB"));
        }
        let mut refs = BTreeMap::new();
        for spec in self.inner.schema.fields().filter(|f| matches!(f.kind, FieldType::Document | FieldType::Biometric)) {
            if let Some(r) = valid.get(&spec.id).and_then(|v| v.get("ref")).and_then(Value::as_str) {
                if !attachments.contains_key(r) && kept.get(r).is_none_or(|a| a.field != spec.id) {
                    return Err(RepoError::BadRequest("a document or biometric ref has no attachment"));
                }
                if refs.insert(r.to_owned(), spec.id.clone()).is_some() {
                    return Err(RepoError::BadRequest("two fields use the same attachment ref"));
                }
            }
        }
        if attachments.keys().any(|r| !refs.contains_key(r)) {
            return Err(RepoError::BadRequest("an attachment is not referenced by any field"));
        }
        Ok((valid, refs))
    }

    /// Seals and stores new attachment contents; returns the attachment index of the version.
    pub(crate) async fn store_attachments(
        &self,
        dek: &DataKey,
        id: &str,
        refs: &BTreeMap<String, String>,
        new: &BTreeMap<String, Vec<u8>>,
        kept: &BTreeMap<String, Attachment>,
    ) -> Result<BTreeMap<String, Attachment>> {
        let mut out = BTreeMap::new();
        for (r, field) in refs {
            if let Some(content) = new.get(r) {
                let key = format!("identities/{id}/{}", uuid::Uuid::new_v4().simple());
                let sealed = dek.seal(&attachment_aad(id, field, r), content)?;
                self.inner.blobs.put(&BlobKey::parse(&key)?, Bytes::from(sealed)).await?;
                out.insert(r.clone(), Attachment { field: field.clone(), blob: key, bytes: content.len() });
            } else if let Some(a) = kept.get(r) {
                out.insert(r.clone(), a.clone());
            }
        }
        Ok(out)
    }

    /// Creates an identity: validates it, gives the person a fresh data key (wrapped into the
    /// vault), allocates a UIN from the pool, and writes version 1 with its lookup digests and
    /// audit entry in one transaction.
    ///
    /// # Errors
    /// `Invalid` (schema), `BadRequest`, `DuplicateExternalRef`, `uin_pool_empty`, storage and
    /// crypto errors.
    pub async fn create(&self, actor: &Actor, new: NewRecord, now: UnixMillis) -> Result<Created> {
        self.create_with(actor, new, now, async |_, _| Ok(())).await
    }

    /// `create`, with `also` writing more rows in the same transaction as the identity (the
    /// registration pipeline marks its packet issued there, so the two commit together or not
    /// at all). An error from `also` rolls the creation back; the UIN stays unissued.
    ///
    /// # Errors
    /// As `create`, and whatever `also` returns.
    pub async fn create_with(
        &self,
        actor: &Actor,
        new: NewRecord,
        now: UnixMillis,
        also: impl AsyncFnOnce(&mut Tx, &Created) -> Result<()>,
    ) -> Result<Created> {
        let result = self.create_inner(actor, new, now, also).await;
        // Successful creates are audited in their own transaction; refused ones here.
        if result.is_err() {
            self.audit_outcome(actor, "identity.create", "", &result, now).await?;
        }
        result
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        new: NewRecord,
        now: UnixMillis,
        also: impl AsyncFnOnce(&mut Tx, &Created) -> Result<()>,
    ) -> Result<Created> {
        check_reason(&new.reason)?;
        if let Some(r) = &new.external_ref {
            check_external_ref(r)?;
            let digests = self.digests_all_versions(KIND_EXTERNAL_REF, r)?;
            if !identities::find_digests(&self.inner.db, &digests).await?.is_empty() {
                return Err(RepoError::DuplicateExternalRef);
            }
        }
        let (record, refs) = self.check_record(&new.record, &new.attachments, &BTreeMap::new(), now)?;
        // Time-ordered (v7): new records append to the B-trees instead of splitting random pages;
        // the creation time it reveals is stored beside it anyway.
        let id = uuid::Uuid::now_v7().to_string();
        let dek = DataKey::generate()?;
        let wrapped = self.inner.ks.wrap(&dek, &dek_context(&id))?;
        self.inner
            .vault
            .put_many(&[VaultEntry { identity_id: id.clone(), kek: wrapped.kek.to_string(), wrapped: wrapped.bytes }], now)
            .await?;
        let attachments = self.store_attachments(&dek, &id, &refs, &new.attachments, &BTreeMap::new()).await?;

        let mut tx = self.inner.db.begin().await?;
        let uin = uin_pool::allocate(&mut tx, &self.inner.rules, now).await?;
        let sealed =
            Sealed { format: RECORD_FORMAT.into(), uin: uin.expose().into(), external_ref: new.external_ref.clone(), record, attachments };
        let first = Self::seal_version(&dek, &sealed, &id, 1, &new.reason, actor, now)?;
        let mut lookups = vec![self.lookup_row(KIND_UIN, uin.expose(), &id)?];
        if let Some(r) = &new.external_ref {
            lookups.push(self.lookup_row(KIND_EXTERNAL_REF, r, &id)?);
        }
        identities::insert_new(&mut tx, &[NewIdentity { first, lookups }]).await.map_err(|e| match e {
            // Another request created the same external reference meanwhile.
            StoreError::Conflict => RepoError::DuplicateExternalRef,
            e => e.into(),
        })?;
        uin_pool::mark_issued(&mut tx, &uin, now).await?;
        audit::append(&mut tx, &*self.inner.ks, &[event(actor, "identity.create", &id, "ok")], now).await?;
        let created = Created { uin, id, version: 1 };
        also(&mut tx, &created).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// The UIN of the identity with record id `id` (the registration pipeline keeps record ids,
    /// never UINs, and shows the number to the operator once it is issued). Not audited: the
    /// caller audits the read it serves.
    ///
    /// # Errors
    /// `NotFound`, `Gone` (erased), storage and crypto errors.
    pub async fn uin_of(&self, id: &str) -> Result<Uin> {
        let row = identities::get(&self.inner.db, id).await?.ok_or(RepoError::NotFound)?;
        if row.erased {
            return Err(RepoError::Gone);
        }
        let (_, _, sealed) = self.open_current(&row).await?;
        Uin::parse(&sealed.uin).map_err(|_| RepoError::Corrupt("sealed record holds an invalid UIN"))
    }

    /// The record id of the identity a UIN names. Not audited: for callers that audit the use
    /// they make of it (reading the person's credentials).
    ///
    /// # Errors
    /// `NotFound`, `Gone` (erased), storage and crypto errors.
    pub async fn identity_id_of(&self, uin: &Uin) -> Result<String> {
        Ok(self.resolve(uin).await?.id)
    }

    /// The current record (fields only) of the identity with record id `id`. Not audited: for
    /// callers that audit the use they make of it (de-duplication, adjudication).
    ///
    /// # Errors
    /// `NotFound`, `Gone`, storage and crypto errors.
    pub async fn record_of(&self, id: &str) -> Result<Map<String, Value>> {
        let row = identities::get(&self.inner.db, id).await?.ok_or(RepoError::NotFound)?;
        if row.erased {
            return Err(RepoError::Gone);
        }
        Ok(self.open_current(&row).await?.2.record)
    }

    /// Reads the current version. Audited, whatever the outcome.
    ///
    /// # Errors
    /// `NotFound`, `Gone`, storage and crypto errors.
    pub async fn get(&self, actor: &Actor, uin: &Uin, now: UnixMillis) -> Result<Identity> {
        let result = self.read_current(uin).await;
        let target = result.as_ref().map(|i| i.id.clone()).unwrap_or_default();
        self.audit_outcome(actor, "identity.read", &target, &result, now).await?;
        result
    }

    async fn read_current(&self, uin: &Uin) -> Result<Identity> {
        let row = self.resolve(uin).await?;
        let (_, kek, sealed) = self.open_current(&row).await?;
        if sealed.uin != uin.expose() {
            return Err(RepoError::Corrupt("lookup entry points at another person's record"));
        }
        Ok(Identity {
            uin: uin.clone(),
            id: row.id,
            version: row.version,
            record: sealed.record,
            external_ref: sealed.external_ref,
            attachments: sealed.attachments.iter().map(|(r, a)| (r.clone(), a.bytes)).collect(),
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
            sealed_with: kek.to_string(),
        })
    }

    /// The decrypted contents of one attachment of the current version. Audited.
    ///
    /// # Errors
    /// `NotFound` (also for an unknown ref), `Gone`, storage and crypto errors.
    pub async fn attachment(&self, actor: &Actor, uin: &Uin, r#ref: &str, now: UnixMillis) -> Result<Vec<u8>> {
        let result = async {
            let row = self.resolve(uin).await?;
            let (dek, _, sealed) = self.open_current(&row).await?;
            let a = sealed.attachments.get(r#ref).ok_or(RepoError::NotFound)?;
            let bytes = self.inner.blobs.get(&BlobKey::parse(&a.blob)?).await?;
            Ok::<_, RepoError>((row.id.clone(), dek.open(&attachment_aad(&row.id, &a.field, r#ref), &bytes)?))
        }
        .await;
        let target = result.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        self.audit_outcome(actor, "identity.read_attachment", &target, &result, now).await?;
        result.map(|(_, b)| b)
    }

    /// Applies a JSON merge patch (RFC 7396: `null` removes a field) to the current record and
    /// stores the result as a new version. `expected_version`, when given, must be current.
    ///
    /// # Errors
    /// `Invalid`, `VersionConflict`, `NotFound`, `Gone`, storage and crypto errors.
    pub async fn update(&self, actor: &Actor, uin: &Uin, change: Change, now: UnixMillis) -> Result<i64> {
        self.update_with(actor, uin, change, now, async |_, _, _| Ok(())).await
    }

    /// `update`, with `also(tx, identity id, new version)` writing more rows in the same
    /// transaction as the new version (the registration pipeline marks its update packet done
    /// there). An error from `also` rolls the update back.
    ///
    /// # Errors
    /// As `update`, and whatever `also` returns.
    pub async fn update_with(
        &self,
        actor: &Actor,
        uin: &Uin,
        change: Change,
        now: UnixMillis,
        also: impl AsyncFnOnce(&mut Tx, &str, i64) -> Result<()>,
    ) -> Result<i64> {
        let row = match self.resolve(uin).await {
            Ok(row) => row,
            Err(e) => {
                let result: Result<()> = Err(e);
                self.audit_outcome(actor, "identity.update", "", &result, now).await?;
                return result.map(|()| 0);
            }
        };
        let result = self.update_row(actor, &row, change, now, also).await;
        // Successful updates are audited in their own transaction; refused ones here.
        if result.is_err() {
            self.audit_outcome(actor, "identity.update", &row.id, &result, now).await?;
        }
        result
    }

    async fn update_row(
        &self,
        actor: &Actor,
        row: &IdentityRow,
        change: Change,
        now: UnixMillis,
        also: impl AsyncFnOnce(&mut Tx, &str, i64) -> Result<()>,
    ) -> Result<i64> {
        let Change { patch, attachments, expected_version, reason } = change;
        let reason = reason.as_str();
        check_reason(reason)?;
        let Some(patch) = patch.as_object() else {
            return Err(RepoError::BadRequest("a patch must be a JSON object"));
        };
        if let Some(expected) = expected_version.filter(|e| *e != row.version) {
            return Err(RepoError::VersionConflict { expected, current: row.version });
        }
        let (dek, _, mut sealed) = self.open_current(row).await?;
        let mut merged = Value::Object(sealed.record.clone());
        merge_patch(&mut merged, patch);
        let (record, refs) = self.check_record(&merged, &attachments, &sealed.attachments, now)?;
        sealed.attachments = self.store_attachments(&dek, &row.id, &refs, &attachments, &sealed.attachments).await?;
        sealed.record = record;
        let next = Self::seal_version(&dek, &sealed, &row.id, row.version + 1, reason, actor, now)?;
        let mut tx = self.inner.db.begin().await?;
        identities::append_version(&mut tx, &next).await.map_err(|e| match e {
            StoreError::Conflict => RepoError::VersionConflict { expected: row.version, current: row.version + 1 },
            e => e.into(),
        })?;
        audit::append(&mut tx, &*self.inner.ks, &[event(actor, "identity.update", &row.id, "ok")], now).await?;
        also(&mut tx, &row.id, next.version).await?;
        tx.commit().await?;
        Ok(next.version)
    }

    /// Every version, oldest first, with who/when/why; the records too when `with_records`.
    /// Audited.
    ///
    /// # Errors
    /// `NotFound`, `Gone`, storage and crypto errors.
    pub async fn versions(&self, actor: &Actor, uin: &Uin, with_records: bool, now: UnixMillis) -> Result<Vec<VersionInfo>> {
        let result = async {
            let row = self.resolve(uin).await?;
            let (dek, _) = self.data_key(&row.id).await?;
            let mut out = Vec::new();
            for v in identities::versions(&self.inner.db, &row.id).await? {
                let reason = dek.open(&record_aad(&row.id, v.version, "reason"), &v.reason)?;
                out.push(VersionInfo {
                    version: v.version,
                    at_ms: v.created_at_ms,
                    actor: v.actor.clone(),
                    reason: String::from_utf8(reason).map_err(|_| RepoError::Corrupt("reason is not UTF-8"))?,
                    record: if with_records { Some(Self::open_version(&dek, &v)?.record) } else { None },
                });
            }
            Ok::<_, RepoError>((row.id, out))
        }
        .await;
        let target = result.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        self.audit_outcome(actor, "identity.versions", &target, &result, now).await?;
        result.map(|(_, v)| v)
    }

    /// Erases a person by crypto-shredding: the identity is marked erased, its lookup digests
    /// and sealed versions removed, and its data key destroyed in the vault, so nothing sealed
    /// under it (including copies in backups of the main database) can be opened again. The
    /// key's destruction is also queued as a job in the same transaction, so a crash between
    /// the two databases cannot leave the key behind.
    ///
    /// # Errors
    /// `NotFound`, `Gone` (already erased), storage errors.
    pub async fn erase(&self, actor: &Actor, uin: &Uin, now: UnixMillis) -> Result<()> {
        let result = self.erase_inner(actor, uin, now).await;
        if result.is_err() {
            self.audit_outcome(actor, "identity.erase", "", &result, now).await?;
        }
        result
    }

    async fn erase_inner(&self, actor: &Actor, uin: &Uin, now: UnixMillis) -> Result<()> {
        let row = self.resolve(uin).await?;
        let mut tx = self.inner.db.begin().await?;
        if !identities::erase(&mut tx, &row.id, now).await? {
            return Err(RepoError::Gone);
        }
        let payload = serde_json::json!({ "identity_id": row.id });
        jobs::enqueue(&mut tx, JobKind::DestroyDataKey, &payload, &format!("destroy-data-key:{}", row.id), now).await?;
        audit::append(&mut tx, &*self.inner.ks, &[event(actor, "identity.erase", &row.id, "ok")], now).await?;
        tx.commit().await?;
        if let Err(e) = self.inner.vault.destroy(&row.id).await {
            // The queued job retries it.
            tracing::warn!(code = e.code(), error = %e, "destroying a data key failed; the queued job will retry");
        }
        Ok(())
    }

    async fn audit_outcome<T>(&self, actor: &Actor, action: &'static str, target: &str, result: &Result<T>, now: UnixMillis) -> Result<()> {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        let mut tx = self.inner.db.begin().await?;
        audit::append(&mut tx, &*self.inner.ks, &[event(actor, action, target, outcome)], now).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(crate) fn event(actor: &Actor, action: &'static str, target: &str, outcome: &str) -> Event {
    actor.event(action, target, outcome)
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            match v {
                Value::Null => {
                    t.remove(k);
                }
                Value::Object(p) => merge_patch(t.entry(k.clone()).or_insert(Value::Null), p),
                other => {
                    t.insert(k.clone(), other.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": [1]});
        let p = json!({"a": "z", "c": {"f": null}, "new": [2]});
        merge_patch(&mut t, p.as_object().unwrap());
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "keep": [1], "new": [2]}));
    }
}
