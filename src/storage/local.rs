//! Backups in a local directory: listing, picking the newest, removing, and
//! finding `.partial` files that no running pgbak is writing any more.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BackupName, Group};

/// One backup in a directory: its `.dump`, its `.meta.json`, or both.
#[derive(Debug, Clone)]
pub struct LocalBackup {
    pub name: BackupName,
    pub dump: PathBuf,
    pub meta: PathBuf,
    pub has_dump: bool,
    pub has_meta: bool,
    pub size: u64,
    /// A `<stem>.verify.json` verdict sits beside it.
    pub has_verdict: bool,
}

impl LocalBackup {
    /// Both files are there (a crash between the two renames leaves only the dump).
    pub fn is_complete(&self) -> bool {
        self.has_dump && self.has_meta
    }
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    pub dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Every backup in the directory, oldest first; a missing directory is empty.
    pub fn list(&self) -> Result<Vec<LocalBackup>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("listing {}", self.dir.display()));
            }
        };
        let mut found: std::collections::BTreeMap<String, LocalBackup> = Default::default();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.dir.display()))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let verdict = BackupName::parse_verdict(&file_name);
            let Some(name) = BackupName::parse(&file_name).or_else(|| verdict.clone()) else {
                continue;
            };
            // Only regular files count: a symlink named like a backup is not one.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let stem = name.stem();
            let backup = found.entry(stem).or_insert_with(|| LocalBackup {
                dump: self.dir.join(name.dump_file()),
                meta: self.dir.join(name.meta_file()),
                name: name.clone(),
                has_dump: false,
                has_meta: false,
                size: 0,
                has_verdict: false,
            });
            if verdict.is_some() {
                backup.has_verdict = true;
            } else if super::split_dump_file(&file_name).is_some() {
                // The dump's own name says whether it is encrypted (the meta.json's cannot).
                backup.name.encrypted = name.encrypted;
                backup.dump = self.dir.join(&file_name);
                backup.has_dump = true;
                backup.size = meta.len();
            } else {
                backup.has_meta = true;
            }
        }
        // A verdict alone is not a backup.
        let mut list: Vec<LocalBackup> = found
            .into_values()
            .filter(|b| b.has_dump || b.has_meta)
            .collect();
        list.sort_by_key(|b| b.name.timestamp);
        Ok(list)
    }

    /// Everything in the directory: its backups (oldest first) and run records.
    pub fn listing(&self) -> Result<super::Listing> {
        let backups = self
            .list()?
            .into_iter()
            .map(|b| super::Listed {
                name: b.name,
                has_dump: b.has_dump,
                has_meta: b.has_meta,
                size: b.size,
                has_verdict: b.has_verdict,
                storage_class: None,
            })
            .collect();
        let mut runs: Vec<String> = self
            .files_with("")?
            .into_iter()
            .filter(|f| crate::runs::is_record_name(f) && self.dir.join(f).is_file())
            .collect();
        runs.sort();
        Ok(super::Listing { backups, runs })
    }

    /// The names of the files in the directory that start with `prefix`
    /// (a missing directory holds none).
    pub fn files_with(&self, prefix: &str) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.dir.display())),
        };
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix))
            .collect())
    }

    /// Removes a backup: the dump first, so a crash in between leaves a meta.json
    /// without a dump (which list shows as incomplete) rather than the reverse;
    /// its verdict goes with its meta.json.
    pub fn remove(&self, name: &BackupName) -> Result<()> {
        for path in [
            self.dir.join(name.dump_file()),
            self.dir.join(name.meta_file()),
            self.dir.join(name.verdict_file()),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        super::fsio::sync_dir(&self.dir)
    }

    /// `.partial` files of `group` that no live pgbak holds a lock on and that
    /// were last written before `older_than` (the cleaning run's start):
    /// leftovers of a run that died. Writers lock their partial file right
    /// after creating it and hold the lock until it is renamed, so a live one
    /// is never listed.
    pub fn stale_partials(
        &self,
        group: &Group,
        older_than: std::time::SystemTime,
    ) -> Result<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(base) = file_name.strip_suffix(".partial") else {
                continue;
            };
            if BackupName::parse(base).is_none_or(|n| n.group() != *group) {
                continue;
            }
            let path = entry.path();
            let recent = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(true, |modified| modified >= older_than);
            if recent {
                continue;
            }
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                stale.push(path);
            }
        }
        Ok(stale)
    }
}
