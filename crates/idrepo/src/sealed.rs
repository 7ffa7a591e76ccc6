//! Sealed items other than identity records, such as the ABIS's biometric template sets: each is
//! sealed (AES-256-GCM) under a data key of its own, wrapped by the identity key and kept in the
//! key vault like a person's, so deleting the item's key erases it everywhere, backups included.
//!
//! The caller stores the sealed bytes where it likes (the ABIS: its reference table) and keeps
//! the id. AAD = `tessera-sealed-1/<kind>/<id>`, so an item cannot be passed off as another, or as
//! another kind. The vault entry uses the same wrapping context as a person's data key, so key
//! rotation re-wraps these keys with the rest.

use crate::records::dek_context;
use crate::{IdRepo, RepoError, Result};
use std::collections::HashMap;
use tessera_crypto::{DataKey, KeyId, WrappedKey};
use tessera_store::UnixMillis;
use tessera_store::vault::VaultEntry;

/// Longest kind name.
const KIND_CHARS_MAX: usize = 32;

fn aad(kind: &str, id: &str) -> Vec<u8> {
    format!("tessera-sealed-1/{kind}/{id}").into_bytes()
}

fn person_aad(identity_id: &str, kind: &str, item_id: &str) -> Vec<u8> {
    format!("tessera-person-sealed-1/{identity_id}/{kind}/{item_id}").into_bytes()
}

fn check_kind(kind: &str) -> Result<()> {
    if kind.is_empty() || kind.len() > KIND_CHARS_MAX || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        return Err(RepoError::BadRequest("a sealed item kind is 1..=32 lowercase letters or dashes"));
    }
    Ok(())
}

impl IdRepo {
    /// Seals `plaintext` under a new data key (stored in the vault under a new random id).
    /// Returns `(id, sealed)`.
    ///
    /// # Errors
    /// A bad kind; keystore, vault errors.
    pub async fn seal_new(&self, kind: &str, plaintext: &[u8], now: UnixMillis) -> Result<(String, Vec<u8>)> {
        check_kind(kind)?;
        let id = uuid::Uuid::now_v7().to_string();
        let dek = DataKey::generate()?;
        let wrapped = self.keystore().wrap(&dek, &dek_context(&id))?;
        let sealed = dek.seal(&aad(kind, &id), plaintext)?;
        self.vault().put_many(&[VaultEntry { identity_id: id.clone(), kek: wrapped.kek.to_string(), wrapped: wrapped.bytes }], now).await?;
        Ok((id, sealed))
    }

    /// Opens sealed items `(id, sealed)` of one kind, fetching their keys from the vault together.
    /// An item whose key is gone (deleted meanwhile) is `None`.
    ///
    /// # Errors
    /// A bad kind; `Corrupt` when an item does not open under its key (tampered or swapped);
    /// keystore, vault errors.
    pub async fn open_many(&self, kind: &str, items: &[(&str, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        check_kind(kind)?;
        let ids: Vec<String> = items.iter().map(|(id, _)| (*id).to_owned()).collect();
        let keys: HashMap<String, VaultEntry> =
            self.vault().get_many(&ids).await?.into_iter().map(|e| (e.identity_id.clone(), e)).collect();
        let ks = self.keystore();
        items
            .iter()
            .map(|(id, sealed)| {
                let Some(entry) = keys.get(*id) else { return Ok(None) };
                let dek = ks.unwrap(&WrappedKey { kek: KeyId::parse(&entry.kek)?, bytes: entry.wrapped.clone() }, &dek_context(id))?;
                dek.open(&aad(kind, id), sealed).map(Some).map_err(|_| RepoError::Corrupt("a sealed item does not open under its key"))
            })
            .collect()
    }

    /// Seals `plaintext` (item `item_id` of `kind`) under a person's own data key, so that
    /// erasing the person (destroying that key) erases the item too, wherever it is stored: the
    /// credentials issued to them. AAD binds the person, the kind and the item.
    ///
    /// # Errors
    /// A bad kind; `Gone` when the person's key is destroyed; keystore, vault errors.
    pub async fn seal_for_person(&self, identity_id: &str, kind: &str, item_id: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        check_kind(kind)?;
        let (dek, _) = self.data_key(identity_id).await?;
        Ok(dek.seal(&person_aad(identity_id, kind, item_id), plaintext)?)
    }

    /// Opens items sealed by `seal_for_person` for one person. `None` when the person's key is
    /// destroyed (erased).
    ///
    /// # Errors
    /// A bad kind; `Corrupt` when an item does not open (tampered, or another person's);
    /// keystore, vault errors.
    pub async fn open_for_person(&self, identity_id: &str, kind: &str, items: &[(&str, &[u8])]) -> Result<Option<Vec<Vec<u8>>>> {
        check_kind(kind)?;
        let dek = match self.data_key(identity_id).await {
            Ok((dek, _)) => dek,
            Err(RepoError::Gone) => return Ok(None),
            Err(e) => return Err(e),
        };
        items
            .iter()
            .map(|(item, sealed)| {
                dek.open(&person_aad(identity_id, kind, item), sealed)
                    .map_err(|_| RepoError::Corrupt("a sealed item does not open under its person's key"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Destroys an item's key, erasing it. Returns whether a key was there.
    ///
    /// # Errors
    /// Vault errors.
    pub async fn destroy_sealed(&self, id: &str) -> Result<bool> {
        Ok(self.vault().destroy(id).await?)
    }
}
