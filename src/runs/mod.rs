//! A `backup --all-databases` run as a unit: the record it leaves in the
//! store when it starts and when it ends (which server, the databases it
//! means to back up, the outcome of each), so a failed or killed run is
//! visible to `list`, `check`, retention and `restore --all-databases`,
//! which would otherwise only see the backups that happened to finish.
//!
//! A record is a small JSON object beside the backups,
//! `pgbak-run_<run id>_<server>.json` ([`RunRecord::file_name`]); backup
//! names never look like it. [`choose`] is the pure choice of the run a
//! rebuild restores.

pub mod choose;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::meta::ServerIdentity;

/// The file name of every run record starts so.
pub const PREFIX: &str = "pgbak-run_";
const SUFFIX: &str = ".json";
const FORMAT_VERSION: u32 = 1;

/// What became of one backup of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The dump's file name, when it was written.
    pub file: Option<String>,
    /// Why it failed; None when it succeeded.
    pub error: Option<String>,
}

/// One run, as recorded at its start (no `finished_at`, no outcomes) and
/// again at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    /// The run's id (its start, `YYYYmmddTHHMMSS` UTC), as in meta.json's `cluster_run`.
    pub run_id: String,
    pub server: ServerIdentity,
    /// The machine pgbak ran on.
    pub host: String,
    pub pgbak_version: String,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The databases the run means to back up.
    pub databases: Vec<String>,
    #[serde(default)]
    pub excluded: Vec<String>,
    /// The globals backup's outcome; None until the run ends.
    #[serde(default)]
    pub globals: Option<Item>,
    /// Each database's outcome, once the run ends.
    #[serde(default)]
    pub outcomes: BTreeMap<String, Item>,
}

/// A run as its record tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Started and never ended: killed, or still running.
    Unfinished,
    Complete,
    /// Ended with failures, each named.
    Incomplete(Vec<String>),
}

impl RunRecord {
    /// The record of a run that starts now.
    pub fn start(
        run_id: &str,
        server: ServerIdentity,
        databases: &[String],
        excluded: &[String],
    ) -> RunRecord {
        RunRecord {
            format_version: FORMAT_VERSION,
            run_id: run_id.to_owned(),
            server,
            host: crate::settings::host_name(),
            pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now_text(),
            finished_at: None,
            databases: databases.to_vec(),
            excluded: excluded.to_vec(),
            globals: None,
            outcomes: BTreeMap::new(),
        }
    }

    /// The record's file name: run id first, so a listing sorts by time.
    pub fn file_name(&self) -> String {
        let id = self
            .server
            .system_identifier
            .as_deref()
            .unwrap_or("unknown");
        format!(
            "{PREFIX}{}_{}-{}{SUFFIX}",
            self.run_id,
            crate::storage::safe_database_name(&self.server.name),
            id
        )
    }

    pub fn status(&self) -> Status {
        if self.finished_at.is_none() {
            return Status::Unfinished;
        }
        let mut problems = Vec::new();
        match &self.globals {
            Some(Item { error: None, .. }) => {}
            Some(Item { error: Some(e), .. }) => problems.push(format!("its globals failed ({e})")),
            None => problems.push("its globals were not taken".to_owned()),
        }
        for db in &self.databases {
            match self.outcomes.get(db) {
                Some(Item { error: None, .. }) => {}
                Some(Item { error: Some(e), .. }) => problems.push(format!("{db} failed ({e})")),
                None => problems.push(format!("{db} was not backed up")),
            }
        }
        if problems.is_empty() {
            Status::Complete
        } else {
            Status::Incomplete(problems)
        }
    }

    /// The dump file names the run wrote (globals and databases).
    pub fn files(&self) -> Vec<&str> {
        self.globals
            .iter()
            .chain(self.outcomes.values())
            .filter(|i| i.error.is_none())
            .filter_map(|i| i.file.as_deref())
            .collect()
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self).context("encoding the run record")?;
        json.push(b'\n');
        Ok(json)
    }

    /// Reads and checks a record: our format, an id that is a run id, and
    /// file names that are plain backup names.
    pub fn parse(text: &str) -> Result<RunRecord> {
        let record: RunRecord = serde_json::from_str(text).context("not a pgbak run record")?;
        if record.format_version != FORMAT_VERSION {
            bail!(
                "run record format_version {} is not supported",
                record.format_version
            );
        }
        if chrono::NaiveDateTime::parse_from_str(&record.run_id, "%Y%m%dT%H%M%S").is_err()
            || record.run_id.len() != 15
        {
            bail!(
                "the run record names the run {:?}, which is no run id",
                record.run_id
            );
        }
        for file in record.globals.iter().chain(record.outcomes.values()) {
            if let Some(f) = &file.file {
                if crate::storage::BackupName::parse(f).is_none()
                    || !crate::storage::is_plain_file_name(f)
                {
                    bail!("the run record names the file {f:?}, which is no backup's");
                }
            }
        }
        Ok(record)
    }
}

/// Whether a file name is a run record's.
pub fn is_record_name(file: &str) -> bool {
    file.starts_with(PREFIX) && file.ends_with(SUFFIX) && crate::storage::is_plain_file_name(file)
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Ends a record: the time and every outcome.
pub fn finish(record: &mut RunRecord, globals: Item, outcomes: BTreeMap<String, Item>) {
    record.finished_at = Some(now_text());
    record.globals = Some(globals);
    record.outcomes = outcomes;
}

/// Every run record in `store`, oldest first; one that cannot be read is
/// warned about and passed over.
pub async fn records(store: &crate::storage::Store) -> Result<Vec<RunRecord>> {
    let mut found = Vec::new();
    for file in store.list_runs().await? {
        match store.load_run(&file).await {
            Ok(Some(record)) => found.push(record),
            Ok(None) => {}
            Err(err) => crate::ui::warn(&crate::error::one_line(&err)),
        }
    }
    found.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    Ok(found)
}

/// The run records of every store of `stores` (the directory, the bucket,
/// then each `--to` destination), store by store. A `--to` destination that
/// cannot be read is warned about and left out; the directory's or the
/// bucket's failure is the caller's, as before there were others.
pub async fn records_everywhere(
    stores: &crate::storage::Stores,
) -> Result<Vec<(&crate::storage::Store, Vec<RunRecord>)>> {
    let mut all = Vec::new();
    for store in stores.local.iter().chain(&stores.bucket) {
        all.push((store, records(store).await?));
    }
    for destination in stores.added() {
        match records(&destination.store).await {
            Ok(found) => all.push((&destination.store, found)),
            Err(err) => crate::ui::warn(&format!(
                "cannot read the run records at destination {}: {}",
                destination.name,
                crate::error::one_line(&err)
            )),
        }
    }
    Ok(all)
}

/// The file stems of the newest complete run of each server whose every
/// backup is still in the store (`present`: the dump files there): what
/// retention never breaks up.
pub fn newest_complete_runs(
    records: &[RunRecord],
    present: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut newest: BTreeMap<&ServerIdentity, &RunRecord> = BTreeMap::new();
    for r in records {
        let whole =
            r.status() == Status::Complete && r.files().iter().all(|f| present.contains(*f));
        if whole && newest.get(&r.server).is_none_or(|n| n.run_id < r.run_id) {
            newest.insert(&r.server, r);
        }
    }
    let mut stems = BTreeMap::new();
    for r in newest.values() {
        for file in r.files() {
            if let Some(name) = crate::storage::BackupName::parse(file) {
                stems.insert(name.stem(), r.run_id.clone());
            }
        }
    }
    stems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn server(name: &str) -> ServerIdentity {
        ServerIdentity {
            name: name.into(),
            system_identifier: Some("7400000000000000001".into()),
        }
    }

    pub(crate) fn ended(id: &str, server_name: &str, dbs: &[(&str, bool)]) -> RunRecord {
        let names: Vec<String> = dbs.iter().map(|(d, _)| (*d).to_owned()).collect();
        let mut r = RunRecord::start(id, server(server_name), &names, &[]);
        let item = |db: &str, ok: bool, mode: &str| Item {
            file: ok.then(|| format!("{db}_{mode}_{id}.dump")),
            error: (!ok).then(|| "boom".to_owned()),
        };
        let outcomes = dbs
            .iter()
            .map(|(d, ok)| ((*d).to_owned(), item(d, *ok, "full")))
            .collect();
        finish(&mut r, item("postgres", true, "globals"), outcomes);
        r
    }

    #[test]
    fn a_record_says_whether_its_run_is_complete() {
        let mut r = RunRecord::start(
            "20261207T020000",
            server("db1"),
            &["a".into(), "b".into()],
            &[],
        );
        assert_eq!(r.status(), Status::Unfinished);
        assert_eq!(
            r.file_name(),
            "pgbak-run_20261207T020000_db1-7400000000000000001.json"
        );
        assert!(is_record_name(&r.file_name()));
        assert!(crate::storage::BackupName::parse(&r.file_name()).is_none());
        let mut outcomes = BTreeMap::new();
        outcomes.insert(
            "a".to_owned(),
            Item {
                file: Some("a_full_20261207T020001.dump".into()),
                error: None,
            },
        );
        finish(
            &mut r,
            Item {
                file: None,
                error: Some("pg_dumpall failed".into()),
            },
            outcomes,
        );
        assert_eq!(
            r.status(),
            Status::Incomplete(vec![
                "its globals failed (pg_dumpall failed)".into(),
                "b was not backed up".into()
            ])
        );
        let text = String::from_utf8(r.to_json().unwrap()).unwrap();
        assert_eq!(RunRecord::parse(&text).unwrap(), r);
        assert_eq!(
            ended("20261207T020000", "db1", &[("a", true)]).status(),
            Status::Complete
        );
    }

    #[test]
    fn hostile_records_are_refused() {
        let mut r = ended("20261207T020000", "db1", &[("a", true)]);
        r.outcomes.get_mut("a").unwrap().file = Some("../../etc/passwd".into());
        assert!(RunRecord::parse(&String::from_utf8(r.to_json().unwrap()).unwrap()).is_err());
        let mut r = ended("20261207T020000", "db1", &[("a", true)]);
        r.run_id = "x/../y".into();
        assert!(RunRecord::parse(&String::from_utf8(r.to_json().unwrap()).unwrap()).is_err());
    }

    #[test]
    fn the_newest_whole_complete_run_of_each_server_is_protected() {
        let old = ended("20261205T020000", "db1", &[("a", true)]);
        let failed = ended("20261206T020000", "db1", &[("a", false)]);
        let other = ended("20261206T030000", "db2", &[("a", true)]);
        let present: std::collections::BTreeSet<String> = [
            "a_full_20261205T020000.dump",
            "postgres_globals_20261205T020000.dump",
            "postgres_globals_20261206T020000.dump",
            "a_full_20261206T030000.dump",
            "postgres_globals_20261206T030000.dump",
        ]
        .map(String::from)
        .into();
        let stems = newest_complete_runs(&[old, failed, other], &present);
        assert_eq!(
            stems.keys().cloned().collect::<Vec<_>>(),
            vec![
                "a_full_20261205T020000",
                "a_full_20261206T030000",
                "postgres_globals_20261205T020000",
                "postgres_globals_20261206T030000"
            ]
        );
    }
}
