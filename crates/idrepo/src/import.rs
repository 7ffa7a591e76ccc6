//! Bulk import of a legacy register: many identities per transaction, idempotent on each
//! line's external reference (a rerun, or a resumed run after an interruption, skips what is
//! already in), every invalid line reported with its number and reasons.

use crate::records::{KIND_EXTERNAL_REF, KIND_UIN, RECORD_FORMAT, Sealed, check_external_ref, check_reason, dek_context, event};
use crate::{Actor, IdRepo, RepoError, Result, audit};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use tessera_crypto::DataKey;
use tessera_store::identities::{self, NewIdentity};
use tessera_store::vault::VaultEntry;
use tessera_store::{UnixMillis, uin_pool};

/// Most lines per `import_batch` call (one transaction).
pub const IMPORT_BATCH_MAX: usize = 5000;

/// One line of an import file, parsed.
#[derive(Debug, Clone)]
pub struct ImportLine {
    /// 1-based line number in the file, for reports.
    pub line: u64,
    pub external_ref: String,
    pub record: Value,
    pub attachments: BTreeMap<String, Vec<u8>>,
    pub reason: String,
}

/// One problem with one line. Paths and codes, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub code: String,
    pub message: String,
}

/// An invalid line and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: u64,
    pub problems: Vec<Problem>,
}

impl LineError {
    #[must_use]
    pub fn one(line: u64, path: &str, code: &str, message: &str) -> Self {
        LineError { line, problems: vec![Problem { path: path.into(), code: code.into(), message: message.into() }] }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: u64,
    /// Lines whose external reference is already in the register (an earlier run).
    pub already_present: u64,
    pub invalid: Vec<LineError>,
}

fn problems_of(e: &RepoError) -> Vec<Problem> {
    match e {
        RepoError::Invalid(errs) => errs
            .iter()
            .map(|f| Problem { path: format!("/record{}", f.path), code: f.code.as_str().into(), message: f.message.clone() })
            .collect(),
        other => vec![Problem { path: String::new(), code: other.code().into(), message: other.to_string() }],
    }
}

struct Ready {
    line: ImportLine,
    record: serde_json::Map<String, Value>,
    refs: BTreeMap<String, String>,
}

impl IdRepo {
    /// Imports one batch of lines in one transaction. Lines that fail validation are reported
    /// and skipped; lines whose external reference exists already are counted and skipped; the
    /// rest are created with UINs from the pool (fill the pool first: an empty pool fails the
    /// batch with `uin_pool_empty` and nothing of it is written).
    ///
    /// # Errors
    /// Storage and crypto errors (the whole batch is then not written).
    pub async fn import_batch(&self, actor: &Actor, lines: Vec<ImportLine>, now: UnixMillis) -> Result<ImportReport> {
        if lines.len() > IMPORT_BATCH_MAX {
            return Err(RepoError::BadRequest("import batch too large"));
        }
        let mut report = ImportReport::default();
        let mut ready = Vec::with_capacity(lines.len());
        let mut seen: HashMap<String, u64> = HashMap::new();
        let empty = BTreeMap::new();
        for line in lines {
            let checked = check_external_ref(&line.external_ref)
                .and_then(|()| check_reason(&line.reason))
                .and_then(|()| self.check_record(&line.record, &line.attachments, &empty, now));
            match checked {
                Err(e) => report.invalid.push(LineError { line: line.line, problems: problems_of(&e) }),
                Ok((record, refs)) => {
                    if let Some(first) = seen.get(&line.external_ref) {
                        report.invalid.push(LineError::one(
                            line.line,
                            "/external_ref",
                            "external_ref_repeated",
                            &format!("the same external reference is on line {first}"),
                        ));
                        continue;
                    }
                    seen.insert(line.external_ref.clone(), line.line);
                    ready.push(Ready { line, record, refs });
                }
            }
        }
        // Idempotency: skip references already imported (by any lookup key version).
        let mut digest_owner = HashMap::new();
        let keys = self.lookup_keys();
        for (i, r) in ready.iter().enumerate() {
            for d in self.digests_under(&keys, KIND_EXTERNAL_REF, &r.line.external_ref)? {
                digest_owner.insert(d, i);
            }
        }
        let digests: Vec<Vec<u8>> = digest_owner.keys().cloned().collect();
        let present: HashSet<usize> =
            identities::find_digests(self.db(), &digests).await?.into_iter().filter_map(|l| digest_owner.get(&l.digest).copied()).collect();
        report.already_present = present.len() as u64;
        let ready: Vec<Ready> = ready.into_iter().enumerate().filter(|(i, _)| !present.contains(i)).map(|(_, r)| r).collect();
        if ready.is_empty() {
            return Ok(report);
        }

        let ks = &**self.keystore();
        let mut keyed = Vec::with_capacity(ready.len());
        let mut vault_entries = Vec::with_capacity(ready.len());
        for r in ready {
            // Time-ordered (v7): new records append to the B-trees instead of splitting random pages;
            // the creation time it reveals is stored beside it anyway.
            let id = uuid::Uuid::now_v7().to_string();
            let dek = DataKey::generate()?;
            let wrapped = ks.wrap(&dek, &dek_context(&id))?;
            vault_entries.push(VaultEntry { identity_id: id.clone(), kek: wrapped.kek.to_string(), wrapped: wrapped.bytes });
            keyed.push((id, dek, r));
        }
        self.vault().put_many(&vault_entries, now).await?;
        let mut attachments = Vec::with_capacity(keyed.len());
        for (id, dek, r) in &keyed {
            attachments.push(if r.refs.is_empty() {
                BTreeMap::new()
            } else {
                self.store_attachments(dek, id, &r.refs, &r.line.attachments, &BTreeMap::new()).await?
            });
        }

        let mut tx = self.db().begin().await?;
        let uins = uin_pool::issue_many(&mut tx, &self.inner.rules, keyed.len(), now).await?;
        let mut items = Vec::with_capacity(keyed.len());
        let mut events = Vec::with_capacity(keyed.len());
        for (((id, dek, r), uin), attachments) in keyed.into_iter().zip(uins).zip(attachments) {
            let sealed = Sealed {
                format: RECORD_FORMAT.into(),
                uin: uin.expose().into(),
                external_ref: Some(r.line.external_ref.clone()),
                record: r.record,
                attachments,
            };
            let first = Self::seal_version(&dek, &sealed, &id, 1, &r.line.reason, actor, now)?;
            let lookups =
                vec![self.lookup_row(KIND_UIN, uin.expose(), &id)?, self.lookup_row(KIND_EXTERNAL_REF, &r.line.external_ref, &id)?];
            events.push(event(actor, "identity.import", &id, "ok"));
            items.push(NewIdentity { first, lookups });
        }
        identities::insert_new(&mut tx, &items).await?;
        audit::append(&mut tx, ks, &events, now).await?;
        tx.commit().await?;
        report.imported = items.len() as u64;
        Ok(report)
    }
}
