//! "The newest backup" when restore or verify is given no file: the newest
//! complete backup *of the target database* in the mode asked (never another
//! database's whose file name happens to look alike, never a data-only dump
//! for a full restore), skipping backups whose recorded verification failed
//! unless the operator asks for them. One pure function ([`Selector::pick`],
//! table-tested) and one way to feed it from any [`Store`] ([`newest`]),
//! for local disk and S3 alike.

use std::collections::BTreeSet;

use anyhow::Result;

use super::{is_backup_of, may_be_backup_of, BackupName, Listed, Store};
use crate::error::{one_line, usage};
use crate::meta::Meta;
use crate::mode::Mode;
use crate::ui;

/// The newest backup in `store` that `select` accepts. meta.json (with the
/// verdict beside it, when there is one) is read
/// only for complete backups whose name could be the target's (one that
/// cannot be read is named in a warning and counts as unread); newer
/// backups skipped because their verification failed are named. Nothing
/// eligible is a usage error (exit 2) saying what was passed over, then
/// `advice`.
pub async fn newest(store: &Store, select: &Selector, advice: &str) -> Result<BackupName> {
    let backups: Vec<(Listed, &Store)> = store
        .list_backups()
        .await?
        .into_iter()
        .map(|b| (b, store))
        .collect();
    newest_of(&backups, select, &store.describe(), advice).await
}

/// [`newest`] among `backups` (oldest first), each listed by the store
/// paired with it, which its meta.json and verdict are read from: the
/// union of several destinations (`archive::holders`). `place` names where
/// they were looked for, in the error.
pub async fn newest_of(
    backups: &[(Listed, &Store)],
    select: &Selector,
    place: &str,
    advice: &str,
) -> Result<BackupName> {
    let mut metas = Vec::with_capacity(backups.len());
    for (backup, store) in backups {
        let complete = backup.has_dump && backup.has_meta;
        let meta = if complete && select.may_pick(&backup.name) {
            store.load_judged(backup).await.unwrap_or_else(|err| {
                ui::warn(&one_line(&err));
                None
            })
        } else {
            None
        };
        metas.push(meta);
    }
    let choices: Vec<Choice> = backups
        .iter()
        .zip(&metas)
        .map(|((b, _), meta)| Choice {
            name: &b.name,
            complete: b.has_dump && b.has_meta,
            meta: meta.as_ref(),
        })
        .collect();
    let picked = select.pick(&choices);
    let Some(index) = picked.index else {
        return Err(usage(format!(
            "{}{advice}",
            select.nothing_message(&picked, place)
        )));
    };
    for stem in &picked.skipped_failed {
        ui::warn(&format!(
            "skipping {stem}: its last verification FAILED (pass --include-failed to use it)"
        ));
    }
    if let Some(line) = other_servers(select, &metas, metas[index].as_ref()) {
        ui::warn(&line);
    }
    Ok(backups[index].0.name.clone())
}

/// When the target database has backups of more than one server here, says
/// which server's the picked one is (name a file or an `s3://` URI to take
/// another): many servers may share a prefix, each with its own `postgres`.
fn other_servers(
    select: &Selector,
    metas: &[Option<Meta>],
    picked: Option<&Meta>,
) -> Option<String> {
    let name = |m: &Meta| {
        m.server
            .as_ref()
            .map_or("an unknown server", |s| s.name.as_str())
            .to_owned()
    };
    let servers: BTreeSet<String> = metas
        .iter()
        .flatten()
        .filter(|m| m.database == select.database && m.mode == select.mode)
        .map(name)
        .collect();
    let picked = picked.map(name)?;
    (servers.len() > 1).then(|| {
        format!(
            "backups of database {:?} from {} servers are here ({}); using the newest, from {picked} \
             (name a backup file or an s3:// URI to take another server's)",
            select.database,
            servers.len(),
            servers.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// What to pick.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The real database name (meta.json's `database`).
    pub database: String,
    pub mode: Mode,
    /// Also pick backups whose last verification failed.
    pub include_failed: bool,
}

/// One backup offered to [`Selector::pick`].
#[derive(Debug, Clone)]
pub struct Choice<'a> {
    pub name: &'a BackupName,
    /// Dump and meta.json both present.
    pub complete: bool,
    /// meta.json, when it was read.
    pub meta: Option<&'a Meta>,
}

/// The outcome: the index picked, and what was passed over and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picked {
    pub index: Option<usize>,
    /// Newer backups of the target skipped because their verification failed.
    pub skipped_failed: Vec<String>,
    /// Databases of other complete backups in the mode asked (for the error).
    pub other_databases: BTreeSet<String>,
}

impl Selector {
    /// Worth reading the meta.json of: the mode asked and a file name that
    /// could be the target database's.
    pub fn may_pick(&self, name: &BackupName) -> bool {
        name.mode == self.mode && may_be_backup_of(&self.database, name)
    }

    /// Picks the newest eligible backup of `choices` (ordered oldest first).
    pub fn pick(&self, choices: &[Choice<'_>]) -> Picked {
        let mut picked = Picked::default();
        for (index, choice) in choices.iter().enumerate().rev() {
            if !choice.complete || choice.name.mode != self.mode {
                continue;
            }
            let recorded = choice.meta.map(|m| m.database.as_str());
            if !is_backup_of(&self.database, choice.name, recorded) {
                picked
                    .other_databases
                    .insert(recorded.map_or_else(|| choice.name.database.clone(), str::to_owned));
                continue;
            }
            let failed = choice
                .meta
                .and_then(|m| m.verification.as_ref())
                .is_some_and(|v| !v.passed);
            if failed && !self.include_failed {
                picked.skipped_failed.push(choice.name.stem());
                continue;
            }
            if picked.index.is_none() {
                picked.index = Some(index);
            }
        }
        picked
    }

    /// The error when nothing was picked, naming what was passed over.
    pub fn nothing_message(&self, picked: &Picked, place: &str) -> String {
        let mut text = format!(
            "no complete {} backup of database {:?} (.dump with its .meta.json) in {place}",
            self.mode.as_str(),
            self.database
        );
        if !picked.skipped_failed.is_empty() {
            text.push_str(&format!(
                "; skipped because their verification FAILED: {} (pass --include-failed to use them)",
                picked.skipped_failed.join(", ")
            ));
        }
        if !picked.other_databases.is_empty() {
            let others: Vec<&str> = picked.other_databases.iter().map(String::as_str).collect();
            text.push_str(&format!(
                "; it holds backups of other databases ({}): name a file to use one",
                others.join(", ")
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Verification;
    use chrono::{TimeZone, Utc};

    fn name(db: &str, mode: Mode, hour: u32) -> BackupName {
        BackupName::new(
            db,
            mode,
            None,
            Utc.with_ymd_and_hms(2026, 11, 25, hour, 0, 0).unwrap(),
        )
    }

    fn meta(db: &str, verified: Option<bool>) -> Meta {
        let mut meta = crate::meta::tests::sample();
        meta.database = db.into();
        meta.verification = verified.map(|passed| Verification {
            verified_at: "2026-11-25T03:00:00Z".into(),
            passed,
            pgbak_version: "0.1.0".into(),
            failed_checks: Vec::new(),
            timing: None,
        });
        meta
    }

    fn selector(db: &str, include_failed: bool) -> Selector {
        Selector {
            database: db.into(),
            mode: Mode::Full,
            include_failed,
        }
    }

    #[test]
    fn backups_of_several_servers_are_named() {
        let on = |server: Option<&str>| {
            let mut m = meta("app", None);
            m.server = server.map(|name| crate::meta::ServerIdentity {
                name: name.into(),
                system_identifier: Some("1".into()),
            });
            m
        };
        let one = [Some(on(Some("db-1"))), Some(on(Some("db-1"))), None];
        assert_eq!(
            other_servers(&selector("app", false), &one, one[0].as_ref()),
            None
        );
        let two = [
            Some(on(Some("db-1"))),
            Some(on(None)),
            Some(meta("other", None)),
        ];
        let line = other_servers(&selector("app", false), &two, two[0].as_ref()).unwrap();
        assert!(line.contains("from 2 servers"), "{line}");
        assert!(line.contains("an unknown server, db-1"), "{line}");
        assert!(line.contains("from db-1"), "{line}");
    }

    #[test]
    fn picks_the_newest_of_the_target_only() {
        // `a b`'s backup written by an older pgbak is named like `a-b`'s.
        let old_a_b = BackupName {
            database: "a-b".into(),
            ..name("a b", Mode::Full, 1)
        };
        let names = [
            old_a_b,
            name("a-b", Mode::Full, 2),
            name("a b", Mode::Data, 3),
            name("other", Mode::Full, 4),
        ];
        let metas = [
            meta("a b", None),
            meta("a-b", None),
            meta("a b", None),
            meta("other", None),
        ];
        let choices: Vec<Choice> = names
            .iter()
            .zip(&metas)
            .map(|(name, meta)| Choice {
                name,
                complete: true,
                meta: Some(meta),
            })
            .collect();
        let picked = selector("a b", false).pick(&choices);
        assert_eq!(picked.index, Some(0), "not a-b's, not the data-only one");
        assert_eq!(
            picked.other_databases,
            BTreeSet::from(["a-b".to_owned(), "other".to_owned()])
        );
        assert_eq!(selector("a-b", false).pick(&choices).index, Some(1));
        assert_eq!(selector("nobody", false).pick(&choices).index, None);
    }

    #[test]
    fn failed_verifications_are_skipped_and_named() {
        let names = [
            name("db", Mode::Full, 1),
            name("db", Mode::Full, 2),
            name("db", Mode::Full, 3),
            name("db", Mode::Full, 4),
        ];
        let metas = [
            meta("db", Some(true)),
            meta("db", None),
            meta("db", Some(false)),
            meta("db", Some(false)),
        ];
        let mut choices: Vec<Choice> = names
            .iter()
            .zip(&metas)
            .map(|(name, meta)| Choice {
                name,
                complete: true,
                meta: Some(meta),
            })
            .collect();
        let picked = selector("db", false).pick(&choices);
        assert_eq!(picked.index, Some(1), "never verified is not failed");
        assert_eq!(picked.skipped_failed.len(), 2);
        assert_eq!(selector("db", true).pick(&choices).index, Some(3));
        choices.truncate(1);
        choices[0].complete = false;
        let picked = selector("db", false).pick(&choices);
        assert_eq!(picked.index, None, "incomplete backups are never picked");
    }

    #[test]
    fn newest_reads_any_store_and_says_what_it_passed_over() {
        use crate::storage::memory::MemoryStore;
        let (memory, store) = MemoryStore::store();
        memory.add(
            name("db", Mode::Full, 1),
            true,
            Some(meta("db", Some(true))),
        );
        memory.add(
            name("db", Mode::Full, 2),
            true,
            Some(meta("db", Some(false))),
        );
        memory.add(name("db", Mode::Full, 3), true, None);
        memory.add(
            name("other", Mode::Full, 4),
            true,
            Some(meta("other", None)),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let picked = rt
            .block_on(newest(&store, &selector("db", false), ""))
            .unwrap();
        assert_eq!(
            picked,
            name("db", Mode::Full, 1),
            "not the failed, not the incomplete"
        );
        let picked = rt
            .block_on(newest(&store, &selector("db", true), ""))
            .unwrap();
        assert_eq!(picked, name("db", Mode::Full, 2));
        let err = rt
            .block_on(newest(&store, &selector("nobody", false), "; name a file"))
            .unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::USAGE);
        let text = err.to_string();
        assert!(
            text.contains("other databases (db, other)") && text.ends_with("; name a file"),
            "{text}"
        );
    }
}
