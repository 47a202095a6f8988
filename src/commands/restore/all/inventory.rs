//! What a directory or S3 prefix holds for `restore --all-databases`: every
//! `--all-databases` run (from its record, and from the backups' meta.json
//! for runs made before records existed), the complete backups of each, and
//! every database backed up there (to name those a run does not contain).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::archive::Wanted;
use crate::error::one_line;
use crate::meta::{Meta, ServerIdentity};
use crate::mode::Mode;
use crate::runs::choose::RunView;
use crate::runs::{self, RunRecord};
use crate::storage::{BackupName, Destination, Store};
use crate::ui;

/// One backup: where it is (a path or an `s3://` URI, for messages), the
/// store it is read from, its name there and its meta.json.
#[derive(Debug, Clone)]
pub struct Member {
    pub source: String,
    pub store: Store,
    pub name: BackupName,
    pub meta: Meta,
}

impl Member {
    /// How restore asks for it.
    pub fn wanted(&self) -> Wanted {
        Wanted::Stored(self.name.dump_file())
    }
}

/// The runs and backups of one place.
pub struct Inventory {
    /// The place, for messages: a directory or `s3://bucket/prefix`.
    pub place: String,
    pub views: Vec<RunView>,
    /// run id -> its globals backup.
    pub globals: BTreeMap<String, Member>,
    /// run id -> database -> its backup in the run (the newest, should there be two).
    pub databases: BTreeMap<String, BTreeMap<String, Member>>,
    /// Every database with a complete full backup here, by server, with its newest backup's time.
    pub backed_up: BTreeMap<Option<ServerIdentity>, BTreeMap<String, String>>,
}

impl Inventory {
    /// What the first of `from` (in order) that can be read and holds a run
    /// holds, and the destinations its backups are read from: that one
    /// first, then the others in order. One line says which was read and
    /// why the ones before it were not.
    pub async fn read_across(from: &[Destination]) -> Result<(Inventory, Vec<Destination>)> {
        let mut skipped = Vec::new();
        for (i, d) in from.iter().enumerate() {
            let last = i + 1 == from.len();
            let why = match Inventory::read(&d.store).await {
                Ok(found) if found.views.is_empty() && !last => {
                    "holds no --all-databases run".into()
                }
                Ok(found) => {
                    if from.len() > 1 {
                        crate::archive::say_used(d, "the runs", &skipped);
                    }
                    let rest = from.iter().enumerate().filter(|(j, _)| *j != i);
                    let sources = std::iter::once(d.clone())
                        .chain(rest.map(|(_, d)| d.clone()))
                        .collect();
                    return Ok((found, sources));
                }
                Err(err) if last || crate::error::is_interruption(&err) => return Err(err),
                Err(err) => format!("unreachable: {}", one_line(&err)),
            };
            skipped.push(crate::archive::skip(d, &why));
        }
        Err(anyhow::anyhow!("no destination to read the runs from"))
    }

    /// What `store` holds.
    pub async fn read(store: &Store) -> Result<Inventory> {
        let mut inventory = Inventory {
            place: store.describe(),
            views: Vec::new(),
            globals: BTreeMap::new(),
            databases: BTreeMap::new(),
            backed_up: BTreeMap::new(),
        };
        for b in store.list_backups().await? {
            if !(b.has_dump && b.has_meta && matches!(b.name.mode, Mode::Full | Mode::Globals)) {
                continue;
            }
            let meta = match store.load_meta(&b.name).await {
                Ok(Some(meta)) => meta,
                Ok(None) => continue,
                Err(err) => {
                    ui::warn(&one_line(&err));
                    continue;
                }
            };
            if b.name.mode == Mode::Full && b.name.label.is_none() {
                let seen = inventory.backed_up.entry(meta.server.clone()).or_default();
                let at = b.name.time().to_rfc3339();
                if seen.get(&meta.database).is_none_or(|t| *t < at) {
                    seen.insert(meta.database.clone(), at);
                }
            }
            let Some(run) = meta.cluster_run.clone() else {
                continue;
            };
            let member = Member {
                source: store.dump_location(&b.name),
                store: store.clone(),
                name: b.name.clone(),
                meta,
            };
            // Listed oldest first: a later backup of the same run replaces an earlier one.
            if b.name.mode == Mode::Globals {
                inventory.globals.insert(run, member);
            } else {
                inventory
                    .databases
                    .entry(run)
                    .or_default()
                    .insert(member.meta.database.clone(), member);
            }
        }
        let records = runs::records(store).await?;
        inventory.views = views(&inventory, &records);
        Ok(inventory)
    }
}

/// Every run: those with a record, and those only their backups name.
fn views(inventory: &Inventory, records: &[RunRecord]) -> Vec<RunView> {
    let mut ids: BTreeSet<&String> = inventory.globals.keys().collect();
    ids.extend(inventory.databases.keys());
    let by_id: BTreeMap<&String, &RunRecord> = records.iter().map(|r| (&r.run_id, r)).collect();
    ids.extend(by_id.keys());
    ids.into_iter()
        .map(|id| {
            let record = by_id.get(id).copied();
            let globals = inventory.globals.get(id);
            let present: BTreeSet<String> = inventory
                .databases
                .get(id)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let meant = match (record, globals) {
                (Some(r), _) => r.databases.clone(),
                (None, Some(g)) => g
                    .meta
                    .globals
                    .as_ref()
                    .map(|g| g.databases.clone())
                    .unwrap_or_default(),
                (None, None) => present.iter().cloned().collect(),
            };
            let server = record.map(|r| r.server.clone()).or_else(|| {
                globals
                    .map(|g| &g.meta)
                    .or_else(|| {
                        inventory
                            .databases
                            .get(id)
                            .and_then(|m| m.values().next())
                            .map(|m| &m.meta)
                    })
                    .and_then(|m| m.server.clone())
            });
            RunView {
                id: id.clone(),
                server,
                record: record.cloned(),
                has_globals: globals.is_some(),
                meant,
                present,
            }
        })
        .collect()
}
