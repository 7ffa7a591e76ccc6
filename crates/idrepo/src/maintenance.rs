//! Background upkeep after key rotations and erasures: re-wrap data keys under the current
//! identity key, move lookup digests to the current lookup key, destroy erased people's keys.
//! Each is idempotent and safe to run beside live traffic (compare-and-set updates).

use crate::records::{KIND_EXTERNAL_REF, KIND_UIN};
use crate::{IdRepo, RepoError, Result};
use tessera_crypto::{KeyId, Purpose, WrappedKey};
use tessera_store::identities;
use tessera_store::vault::VaultEntry;

/// Rows handled per round of a maintenance job.
pub const MAINTENANCE_BATCH: i64 = 500;

impl IdRepo {
    /// The current version of `purpose`, which must be at least `target` (the version a
    /// rotation queued a job for): a keystore that has not seen the rotation yet is refreshed,
    /// and if it still has not, the job fails and is retried later.
    fn current_at_least(&self, purpose: Purpose, target: Option<KeyId>) -> Result<KeyId> {
        let ks = self.keystore();
        if target.is_some_and(|t| ks.current(purpose).version < t.version) {
            ks.refresh();
        }
        let current = ks.current(purpose);
        if target.is_some_and(|t| current.version < t.version) {
            return Err(RepoError::BadRequest("the keystore does not have the rotated key version yet"));
        }
        Ok(current)
    }

    /// Re-wraps every data key not yet under the current identity key (at least `target`).
    /// Returns how many.
    ///
    /// # Errors
    /// Storage and crypto errors (work done so far stays done).
    pub async fn rewrap_keys(&self, target: Option<KeyId>) -> Result<u64> {
        let ks = self.keystore();
        let mut current = self.current_at_least(Purpose::Identity, target)?;
        let mut done = 0;
        loop {
            let batch = self.vault().not_under(&current.to_string(), MAINTENANCE_BATCH).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            for old in batch {
                let ctx = crate::records::dek_context(&old.identity_id);
                let dek = ks.unwrap(&WrappedKey { kek: KeyId::parse(&old.kek)?, bytes: old.wrapped.clone() }, &ctx)?;
                let new = ks.wrap(&dek, &ctx)?;
                // Another rotation while this runs: chase the newest key from here on, so rows
                // already under it are not selected (and re-wrapped) again and again.
                if new.kek.version > current.version {
                    current = new.kek;
                }
                let new = VaultEntry { identity_id: old.identity_id.clone(), kek: new.kek.to_string(), wrapped: new.bytes };
                if self.vault().rewrap(&old, &new).await? {
                    done += 1;
                }
            }
        }
    }

    /// Recomputes the lookup digests of every identity that still has one under an older lookup
    /// key (the current one being at least `target`), then drops the old ones. Returns how many
    /// identities were moved.
    ///
    /// # Errors
    /// Storage and crypto errors.
    pub async fn reindex_lookups(&self, target: Option<KeyId>) -> Result<u64> {
        let current = i64::from(self.current_at_least(Purpose::Lookup, target)?.version);
        let mut done = 0;
        loop {
            let ids = identities::with_old_lookups(self.db(), current, MAINTENANCE_BATCH).await?;
            if ids.is_empty() {
                return Ok(done);
            }
            for id in ids {
                let row = identities::get(self.db(), &id).await?.ok_or(RepoError::Corrupt("lookup entry without identity"))?;
                let (_, _, sealed) = self.open_current(&row).await?;
                let mut rows = vec![self.lookup_row(KIND_UIN, &sealed.uin, &id)?];
                if let Some(r) = &sealed.external_ref {
                    rows.push(self.lookup_row(KIND_EXTERNAL_REF, r, &id)?);
                }
                let have: Vec<Vec<u8>> = identities::lookups_of(self.db(), &id).await?.into_iter().map(|l| l.digest).collect();
                let missing: Vec<&identities::LookupRow> = rows.iter().filter(|r| !have.contains(&r.digest)).collect();
                let mut tx = self.db().begin().await?;
                identities::insert_lookups(&mut tx, &missing).await?;
                identities::delete_old_lookups(&mut tx, &id, current).await?;
                tx.commit().await?;
                done += 1;
            }
        }
    }

    /// Destroys an erased person's data key (idempotent).
    ///
    /// # Errors
    /// `BadRequest` when the identity is not erased; storage errors.
    pub async fn destroy_data_key(&self, identity_id: &str) -> Result<bool> {
        match identities::get(self.db(), identity_id).await? {
            Some(row) if !row.erased => Err(RepoError::BadRequest("refusing to destroy the key of an identity that is not erased")),
            _ => Ok(self.vault().destroy(identity_id).await?),
        }
    }
}
