//! [`BackupStore`] for a local directory and for an S3 prefix.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::local::LocalStore;
use super::s3::Store;
use super::verdict::{self, VerdictFile};
use super::{BackupName, BackupStore, Listed};
use crate::meta::{Meta, Verification};
use crate::runs::RunRecord;

impl BackupStore for LocalStore {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn dump_location(&self, name: &BackupName) -> String {
        self.dir.join(name.dump_file()).display().to_string()
    }

    async fn list_backups(&self) -> Result<Vec<Listed>> {
        Ok(self
            .list()?
            .into_iter()
            .map(|b| Listed {
                name: b.name,
                has_dump: b.has_dump,
                has_meta: b.has_meta,
                size: b.size,
                has_verdict: b.has_verdict,
            })
            .collect())
    }

    async fn load_meta(&self, name: &BackupName) -> Result<Option<Meta>> {
        let path = self.dir.join(name.meta_file());
        if !path.is_file() {
            return Ok(None);
        }
        Meta::read(&path).map(Some)
    }

    async fn store_meta(&self, name: &BackupName, meta: &Meta) -> Result<()> {
        meta.write(&self.dir.join(name.meta_file()))
    }

    async fn load_verdict(&self, name: &BackupName) -> Result<Option<Verification>> {
        verdict::read_local(&self.dir, name)
    }

    async fn store_verdict(&self, name: &BackupName, verification: &Verification) -> Result<()> {
        verdict::write_local(&self.dir, name, verification)
    }

    async fn remove_backup(&self, backup: &Listed) -> Result<()> {
        for path in [
            self.dir.join(backup.name.dump_file()),
            self.dir.join(backup.name.meta_file()),
            self.dir.join(backup.name.verdict_file()),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        super::fsio::sync_dir(&self.dir)
    }

    async fn list_runs(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.dir.display())),
        };
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if crate::runs::is_record_name(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(name);
            }
        }
        files.sort();
        Ok(files)
    }

    async fn load_run(&self, file: &str) -> Result<Option<RunRecord>> {
        let path = self.dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        RunRecord::parse(&text)
            .map(Some)
            .with_context(|| format!("reading {}", path.display()))
    }

    async fn store_run(&self, record: &RunRecord) -> Result<()> {
        super::fsio::ensure_dir(&self.dir)?;
        super::fsio::write_atomic(&self.dir.join(record.file_name()), &record.to_json()?)
    }
}

impl BackupStore for Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket(), self.settings.prefix)
    }

    fn dump_location(&self, name: &BackupName) -> String {
        self.uri(&self.key_for(&name.dump_file()))
    }

    async fn list_backups(&self) -> Result<Vec<Listed>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(|b| Listed {
                name: b.name,
                has_dump: b.has_dump,
                has_meta: b.has_meta,
                size: b.size,
                has_verdict: b.has_verdict,
            })
            .collect())
    }

    async fn load_meta(&self, name: &BackupName) -> Result<Option<Meta>> {
        self.read_meta(&self.key_for(&name.meta_file())).await
    }

    async fn store_meta(&self, name: &BackupName, meta: &Meta) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(meta).context("encoding meta.json")?;
        json.push(b'\n');
        self.put_small(&self.key_for(&name.meta_file()), json).await
    }

    async fn load_verdict(&self, name: &BackupName) -> Result<Option<Verification>> {
        let key = self.key_for(&name.verdict_file());
        let Some(body) = self.get_small(&key, "a verdict").await? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&body)
            .with_context(|| format!("reading {}: not UTF-8", self.uri(&key)))?;
        VerdictFile::parse(text, name)
            .map(|v| Some(v.verification))
            .with_context(|| format!("reading {}", self.uri(&key)))
    }

    async fn store_verdict(&self, name: &BackupName, verification: &Verification) -> Result<()> {
        let key = self.key_for(&name.verdict_file());
        let json = VerdictFile::new(name, verification).to_json()?;
        let size = json.len() as u64;
        self.put_small(&key, json).await?;
        self.check_small(&key, size).await
    }

    async fn can_lock(&self) -> Result<bool> {
        self.object_lock_enabled().await
    }

    async fn locked_until(&self, name: &BackupName) -> Result<Option<DateTime<Utc>>> {
        self.retain_until(&self.key_for(&name.dump_file())).await
    }

    async fn remove_backup(&self, backup: &Listed) -> Result<()> {
        if backup.has_dump {
            self.delete_keys(&[self.key_for(&backup.name.dump_file())])
                .await?;
        }
        // The verdict goes with the meta.json (a verdict alone judges nothing).
        let mut rest = vec![self.key_for(&backup.name.verdict_file())];
        if backup.has_meta {
            rest.insert(0, self.key_for(&backup.name.meta_file()));
        }
        self.delete_keys(&rest).await
    }

    async fn list_runs(&self) -> Result<Vec<String>> {
        let prefix = &self.settings.prefix;
        let mut files: Vec<String> = self
            .objects()
            .await?
            .iter()
            .filter_map(|o| o.key()?.strip_prefix(prefix.as_str()))
            .filter(|f| crate::runs::is_record_name(f))
            .map(str::to_owned)
            .collect();
        files.sort();
        Ok(files)
    }

    async fn load_run(&self, file: &str) -> Result<Option<RunRecord>> {
        let key = self.key_for(file);
        let Some(body) = self.get_small(&key, "a run record").await? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&body)
            .with_context(|| format!("reading {}: not UTF-8", self.uri(&key)))?;
        RunRecord::parse(text)
            .map(Some)
            .with_context(|| format!("reading {}", self.uri(&key)))
    }

    async fn store_run(&self, record: &RunRecord) -> Result<()> {
        self.put_small(&self.key_for(&record.file_name()), record.to_json()?)
            .await
    }
}
