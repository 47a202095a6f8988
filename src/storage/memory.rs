//! A [`super::Store`] in memory, for the tests of everything above the
//! storage (retention, selection): backups with or without their dump and
//! meta.json, and Object Lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{BackupName, Listed, Listing, Store};
use crate::meta::{Meta, Verification};

#[derive(Default)]
pub struct MemoryStore {
    /// stem -> the backup.
    pub backups: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Clone)]
pub struct Entry {
    pub name: BackupName,
    pub dump: bool,
    pub meta: Option<Meta>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl MemoryStore {
    /// An empty one, and the [`Store`] that reads and writes it.
    pub fn store() -> (Arc<MemoryStore>, Store) {
        let memory = Arc::new(MemoryStore::default());
        (memory.clone(), Store::Memory(memory))
    }

    pub fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.backups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, name: BackupName, dump: bool, meta: Option<Meta>) {
        self.entries().insert(
            name.stem(),
            Entry {
                name,
                dump,
                meta,
                locked_until: None,
            },
        );
    }

    pub fn stems(&self) -> Vec<String> {
        self.entries().keys().cloned().collect()
    }

    pub(super) fn listing(&self) -> Listing {
        Listing {
            backups: self
                .entries()
                .values()
                .map(|e| Listed {
                    name: e.name.clone(),
                    has_dump: e.dump,
                    has_meta: e.meta.is_some(),
                    size: 1,
                    has_verdict: false,
                    storage_class: None,
                })
                .collect(),
            runs: Vec::new(),
        }
    }

    pub(super) fn meta(&self, name: &BackupName) -> Option<Meta> {
        self.entries()
            .get(&name.stem())
            .and_then(|e| e.meta.clone())
    }

    pub(super) fn set_meta(&self, name: &BackupName, meta: &Meta) {
        if let Some(e) = self.entries().get_mut(&name.stem()) {
            e.meta = Some(meta.clone());
        }
    }

    pub(super) fn set_verification(&self, name: &BackupName, verification: &Verification) {
        if let Some(meta) = self
            .entries()
            .get_mut(&name.stem())
            .and_then(|e| e.meta.as_mut())
        {
            meta.verification = Some(verification.clone());
        }
    }

    pub(super) fn locked_until(&self, name: &BackupName) -> Option<DateTime<Utc>> {
        self.entries()
            .get(&name.stem())
            .and_then(|e| e.locked_until)
    }

    pub(super) fn remove(&self, name: &BackupName) -> Result<()> {
        let mut all = self.entries();
        if all
            .get(&name.stem())
            .is_some_and(|e| e.locked_until.is_some_and(|u| u > Utc::now()))
        {
            anyhow::bail!("AccessDenied: object is locked");
        }
        all.remove(&name.stem());
        Ok(())
    }
}
