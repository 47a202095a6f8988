//! Reading one backup when it may be at several destinations (issue 27):
//! `restore`, `verify` and each backup of `restore --all-databases` try the
//! destinations in order (local, the `S3_*` bucket, then each `--to`) and
//! fall back to the next when one is unreachable, does not hold the
//! backup, or holds bytes that do not match its meta.json; one info line
//! says which destination was read and why the others were skipped.
//!
//! "The newest backup" is chosen over the union of the destinations, with
//! the authoritative store as the truth for history
//! ([`crate::storage::Stores::authoritative`]: the `S3_*` bucket, else the
//! first bucket, else the first destination): the newest backup *it* holds
//! is preferred, and a newer one held only elsewhere is named, not taken
//! (its absence there may be retention's or a failed upload's doing); only
//! when the authoritative store is unreachable or holds none that fits is
//! the newest of the other destinations taken.
//!
//! A mismatching copy is a warning naming its destination while another
//! holds good bytes; when none does, the bad copy is returned, so the
//! checksum step reports the Finding it always has.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use chrono::NaiveDateTime;

use super::{fetch_dir, locate_checked, Located, Origin, Wanted};
use crate::error::{as_finding, exit_code, is_interruption, one_line, usage, FAILED};
use crate::storage::s3::MetaCheck;
use crate::storage::select::{self, Selector};
use crate::storage::{BackupName, Destination, Listed, Store};
use crate::ui;

/// Finds the backup `wanted` names at the first of `from` (in order) that
/// holds good bytes of it. One destination: exactly [`locate_checked`].
/// `check` is asked about a downloaded backup's meta.json before its dump
/// is fetched (an error of exit 2 from it stops the search).
pub async fn locate_across(
    wanted: &Wanted,
    from: &[Destination],
    check: MetaCheck<'_>,
) -> Result<Located> {
    let [first, ..] = from else {
        return Err(anyhow!("no destination to read the backup from"));
    };
    if from.len() == 1 {
        return locate_checked(wanted, &first.store, check).await;
    }
    let (file, holders, skipped) = match wanted {
        Wanted::Newest { select, .. } => newest_across(select, from).await?,
        Wanted::File(path) => {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            holding(
                file.ok_or_else(|| usage(format!("{} is not a file", path.display())))?,
                from,
            )
            .await?
        }
        Wanted::S3Object { key, .. } => {
            holding(key.rsplit('/').next().unwrap_or(key).to_owned(), from).await?
        }
        Wanted::Stored(file) => holding(file.clone(), from).await?,
    };
    let found = first_good(&file, &holders, skipped, check).await?;
    found.ok_or_else(|| {
        let text = format!("no destination holds {file}");
        match wanted {
            // A file named on the command line that is nowhere: exit 2, as without --to.
            Wanted::File(_) => usage(text),
            _ => anyhow!(text),
        }
    })
}

/// Where `file` is at the first of `from`, for messages.
pub fn first_address(from: &[Destination], file: &str) -> String {
    from.first()
        .map_or_else(|| file.to_owned(), |d| d.store.address(file).to_string())
}

/// Why a destination was passed over, for the one line that says so.
pub fn skip(d: &Destination, why: &str) -> String {
    format!("{} ({}): {why}", d.name, d.store.describe())
}

/// The destinations that hold `file` (a file name, no folder), asked in
/// order; those that could not be asked or do not hold it are named.
async fn holding(
    file: String,
    from: &[Destination],
) -> Result<(String, Vec<&Destination>, Vec<String>)> {
    let Some(name) = BackupName::parse(&file) else {
        // Not named as pgbak names backups: only the place it was named in.
        return Ok((file, from.iter().take(1).collect(), Vec::new()));
    };
    let mut holders = Vec::new();
    let mut skipped = Vec::new();
    for d in from {
        match d.store.files_with(&name.stem()).await {
            Ok(files) if files.contains(&file) => holders.push(d),
            Ok(_) => skipped.push(skip(d, "does not hold it")),
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => skipped.push(skip(d, &format!("unreachable: {}", one_line(&err)))),
        }
    }
    Ok((file, holders, skipped))
}

/// "The newest backup" over the destinations (the rule in the module
/// doc), and the destinations that hold it completely, in order.
async fn newest_across<'a>(
    select: &Selector,
    from: &'a [Destination],
) -> Result<(String, Vec<&'a Destination>, Vec<String>)> {
    let mut listed: Vec<(&Destination, Vec<Listed>)> = Vec::new();
    let mut skipped = Vec::new();
    for d in from {
        match d.store.list_backups().await {
            Ok(backups) => listed.push((d, backups)),
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => skipped.push(skip(d, &format!("unreachable: {}", one_line(&err)))),
        }
    }
    if listed.is_empty() {
        return Err(anyhow!(
            "no destination could be read: {}",
            skipped.join("; ")
        ));
    }
    let truth = listed
        .iter()
        .position(|(d, _)| d.store.is_bucket())
        .unwrap_or(0);
    let place = listed
        .iter()
        .map(|(d, _)| d.store.describe())
        .collect::<Vec<_>>()
        .join(", ");
    // The authoritative store's newest first; the union when it has none.
    let (truth_dest, truth_backups) = &listed[truth];
    let own: Vec<(Listed, &Store)> = complete(truth_backups)
        .map(|b| (b.clone(), &truth_dest.store))
        .collect();
    let picked = match select::newest_of(&own, select, &truth_dest.store.describe(), "").await {
        Ok(name) => {
            name_newer_elsewhere(select, &listed, &name, &truth_dest.name);
            name
        }
        Err(err) if exit_code(&err) == FAILED => return Err(err),
        Err(_) => {
            let all = union(&listed, truth);
            select::newest_of(&all, select, &place, "").await?
        }
    };
    let file = picked.dump_file();
    let mut holders = Vec::new();
    for (d, backups) in &listed {
        if complete(backups).any(|b| b.name == picked) {
            holders.push(*d);
        } else {
            skipped.push(skip(d, "does not hold it"));
        }
    }
    Ok((file, holders, skipped))
}

fn complete(backups: &[Listed]) -> impl Iterator<Item = &Listed> {
    backups.iter().filter(|b| b.has_dump && b.has_meta)
}

/// Every complete backup of the destinations, oldest first, each read from
/// the authoritative store (`truth`) when it holds it, else from the first
/// destination that does.
fn union<'a>(
    listed: &'a [(&'a Destination, Vec<Listed>)],
    truth: usize,
) -> Vec<(Listed, &'a Store)> {
    let order = std::iter::once(truth).chain((0..listed.len()).filter(|i| *i != truth));
    let mut all: BTreeMap<(NaiveDateTime, String), (Listed, &Store)> = BTreeMap::new();
    for i in order {
        let (d, backups) = &listed[i];
        for b in complete(backups) {
            all.entry((b.name.timestamp, b.name.dump_file()))
                .or_insert_with(|| (b.clone(), &d.store));
        }
    }
    all.into_values().collect()
}

/// An info line when another destination holds a newer backup of the
/// target than the authoritative store's newest (which is used).
fn name_newer_elsewhere(
    select: &Selector,
    listed: &[(&Destination, Vec<Listed>)],
    picked: &BackupName,
    truth: &str,
) {
    let newer = listed.iter().flat_map(|(d, backups)| {
        complete(backups)
            .filter(|b| select.may_pick(&b.name) && b.name.timestamp > picked.timestamp)
            .map(move |b| (b.name.dump_file(), &d.name))
    });
    if let Some((file, at)) = newer.max() {
        ui::info(&format!(
            "{file} at destination {at} is newer, but {truth} (the authoritative store) does not \
             hold it: using {} (name the file, or an s3:// URI, to take the newer one)",
            picked.dump_file()
        ));
    }
}

/// The first of `holders` whose copy of `file` is good, with the others as
/// `also` (for verdicts); None when none holds it. A copy that does not
/// match its meta.json is a warning while another may be good; the last
/// bad one is returned when none is (its checksum step is the Finding).
async fn first_good(
    file: &str,
    holders: &[&Destination],
    mut skipped: Vec<String>,
    check: MetaCheck<'_>,
) -> Result<Option<Located>> {
    let mut bad: Option<Result<Located>> = None;
    for (i, d) in holders.iter().enumerate() {
        let last = i + 1 == holders.len();
        match fetch_one(d, file, check, last).await {
            Ok(Ok(mut located)) => {
                say_used(d, file, &skipped);
                located.also = holders[i + 1..]
                    .iter()
                    .map(|h| Origin {
                        store: h.store.clone(),
                        file: file.to_owned(),
                    })
                    .collect();
                return Ok(Some(located));
            }
            Ok(Err((why, located))) => {
                ui::warn(&format!(
                    "destination {} holds a bad copy of {file}: {why}; trying the next one",
                    d.name
                ));
                skipped.push(skip(d, "its copy does not match meta.json"));
                bad = Some(Ok(located));
            }
            Err(err) if as_finding(&err).is_some() => {
                ui::warn(&format!(
                    "destination {} holds a bad copy of {file}: {}; trying the next one",
                    d.name,
                    one_line(&err)
                ));
                skipped.push(skip(d, "its copy does not match meta.json"));
                bad = Some(Err(err));
            }
            Err(err) if exit_code(&err) != FAILED => return Err(err),
            Err(err) => skipped.push(skip(d, &format!("unreachable: {}", one_line(&err)))),
        }
    }
    if bad.is_some() {
        ui::warn(&format!(
            "no destination holds good bytes of {file}: {}",
            skipped.join("; ")
        ));
    } else if !skipped.is_empty() {
        ui::info(&format!("{file} could not be read: {}", skipped.join("; ")));
    }
    bad.transpose()
}

/// One line: which destination `what` is read from, and why the ones
/// before it were not (`skip` lines).
pub fn say_used(d: &Destination, what: &str, skipped: &[String]) {
    let why = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped {}", skipped.join("; "))
    };
    ui::info(&format!(
        "reading {what} from destination {} ({}){why}",
        d.name,
        d.store.describe()
    ));
}

/// `file` from `d`: Ok(Ok) a good copy; Ok(Err) a local copy that does not
/// match its meta.json (checked here unless `last`: then the checksum step
/// of the command checks it, once); Err what stopped the download (a
/// bucket's mismatch is a Finding).
async fn fetch_one(
    d: &Destination,
    file: &str,
    check: MetaCheck<'_>,
    last: bool,
) -> Result<std::result::Result<Located, (String, Located)>> {
    let fetched = d.store.fetch(file, fetch_dir::create, check).await?;
    let located = Located::fetched(&d.store, file, fetched);
    if located.temporary || last {
        return Ok(Ok(located));
    }
    let meta = match &located.meta_path {
        Some(path) if path.is_file() => crate::meta::Meta::read(path).ok(),
        _ => None,
    };
    let Some(meta) = meta else {
        return Ok(Ok(located));
    };
    match super::check_checksum(&located.dump, &meta).await {
        Ok(_) => Ok(Ok(located)),
        Err(err) if as_finding(&err).is_some() => Ok(Err((one_line(&err), located))),
        Err(err) => Err(err),
    }
}
