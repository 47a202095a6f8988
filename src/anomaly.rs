//! The anomaly pin: when a new backup's total row count or dump size falls
//! below a threshold of the previous good backup of its group (a `DELETE
//! FROM messages` by mistake, ransomware), the new backup is kept but the
//! previous one is pinned in its meta.json, so no retention rule can rotate
//! the last good copy out until an operator runs `pgbak unpin`.
//!
//! [`compare`] is the pure part; [`check_and_pin`] finds the previous backup
//! in the authoritative store (the `S3_*` bucket when one is configured, else
//! the first `--to` bucket, else the directory: a pod's directory starts
//! empty, so only a bucket knows the history) and pins it at every
//! destination that holds it, so no destination's retention rotates it out.

use anyhow::Result;
use chrono::{SecondsFormat, Utc};

use crate::meta::{Meta, Pin};
use crate::storage::{BackupName, Store, Stores};
use crate::ui;

pub const DEFAULT_THRESHOLD: u32 = 50;

/// What collapsed between the previous backup and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// The previous backup's file stem (the one pinned).
    pub previous: String,
    /// (previous, new) total rows, when they fell below the threshold.
    pub rows: Option<(u64, u64)>,
    /// (previous, new) dump size, when it fell below the threshold.
    pub size: Option<(u64, u64)>,
    /// `schema.table previous -> new` for every table below the threshold.
    pub tables: Vec<String>,
}

impl Findings {
    /// One line for logs, alerts and the pin's reason.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some((was, now)) = self.rows {
            parts.push(format!("total rows {was} -> {now}"));
        }
        if let Some((was, now)) = self.size {
            parts.push(format!(
                "dump size {} -> {}",
                ui::bytes(was),
                ui::bytes(now)
            ));
        }
        if !self.tables.is_empty() {
            parts.push(format!("tables collapsed: {}", self.tables.join(", ")));
        }
        format!("compared with {}: {}", self.previous, parts.join("; "))
    }
}

fn below(new: u64, previous: u64, percent: u32) -> bool {
    previous > 0 && u128::from(new) * 100 < u128::from(previous) * u128::from(percent)
}

fn total_rows(meta: &Meta) -> Option<u64> {
    let counts: Vec<u64> = meta.tables.iter().filter_map(|t| t.rows).collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

/// Compares a new backup with the previous one of its group; None when
/// nothing fell below `percent` of what it was.
pub fn compare(previous: &Meta, new: &Meta, percent: u32) -> Option<Findings> {
    let rows = match (total_rows(previous), total_rows(new)) {
        (Some(was), Some(now)) if below(now, was, percent) => Some((was, now)),
        _ => None,
    };
    let size = below(new.size_bytes, previous.size_bytes, percent)
        .then_some((previous.size_bytes, new.size_bytes));
    if rows.is_none() && size.is_none() {
        return None;
    }
    let tables = previous
        .tables
        .iter()
        .filter_map(|t| {
            let was = t.rows?;
            let now = new
                .tables
                .iter()
                .find(|n| n.schema == t.schema && n.name == t.name)
                .map_or(Some(0), |n| n.rows)?;
            below(now, was, percent).then(|| format!("{}.{} {was} -> {now}", t.schema, t.name))
        })
        .collect();
    Some(Findings {
        previous: String::new(),
        rows,
        size,
        tables,
    })
}

/// After a backup completed locally (`name`, with its `meta`; uploaded or
/// not): compares it with the previous good backup of its group in the
/// authoritative store ([`Stores::authoritative`]: the `S3_*` bucket, else
/// the first `--to` bucket, else the directory) and, on a collapse, pins
/// that one at every destination that holds it ([`pin_everywhere`]). A
/// bucket that cannot be read is named in a warning, and the directory is
/// the baseline instead.
pub async fn check_and_pin(
    stores: &Stores,
    name: &BackupName,
    new: &Meta,
    percent: Option<u32>,
) -> Result<Option<Findings>> {
    let Some(percent) = percent else {
        return Ok(None);
    };
    let Some((previous, meta)) = baseline(stores, name, new).await? else {
        return Ok(None);
    };
    let Some(mut findings) = compare(&meta, new, percent) else {
        return Ok(None);
    };
    findings.previous = previous.stem();
    let pin = Pin {
        pinned_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        reason: format!(
            "{} fell below {percent}% of this backup ({})",
            name.stem(),
            findings.summary()
        ),
    };
    pin_everywhere(stores, &previous, &pin).await?;
    ui::warn(&format!(
        "anomaly: the new backup {} is much smaller than {}; {} is pinned so retention keeps it \
         (`pgbak unpin {}` once this is understood): {}",
        name.stem(),
        findings.previous,
        findings.previous,
        findings.previous,
        findings.summary()
    ));
    Ok(Some(findings))
}

/// The previous good backup of `name`'s group in the authoritative store;
/// in the directory when that store is a bucket that cannot be read (or
/// there is no bucket at all).
async fn baseline(
    stores: &Stores,
    name: &BackupName,
    new: &Meta,
) -> Result<Option<(BackupName, Meta)>> {
    let local = stores.local.as_ref();
    let in_local = || async {
        match local {
            Some(local) => previous_good(local, name, new).await,
            None => Ok(None),
        }
    };
    match stores.authoritative().filter(|s| s.is_bucket()) {
        Some(store) => match previous_good(store, name, new).await {
            Ok(found) => Ok(found),
            Err(err) => {
                ui::warn(&format!(
                    "anomaly check: cannot read {} ({}); comparing with {} instead",
                    store.describe(),
                    crate::error::one_line(&err),
                    local.map_or_else(|| "nothing".to_owned(), Store::describe)
                ));
                in_local().await
            }
        },
        None => in_local().await,
    }
}

/// Pins `previous` at every destination that holds its meta.json. One that
/// cannot be read or written is named in a warning and the others go on; an
/// error only when no destination could be pinned and at least one failed.
async fn pin_everywhere(stores: &Stores, previous: &BackupName, pin: &Pin) -> Result<()> {
    let mut pinned = false;
    let mut failed = None;
    for destination in stores.destinations() {
        match pin_in(&destination.store, previous, pin).await {
            Ok(held) => pinned |= held,
            Err(err) => {
                crate::signals::check()?;
                let err = err.context(format!(
                    "pinning {} at destination {}",
                    previous.stem(),
                    destination.name
                ));
                ui::warn(&crate::error::one_line(&err));
                failed.get_or_insert(err);
            }
        }
    }
    match failed {
        Some(err) if !pinned => Err(err),
        _ => Ok(()),
    }
}

/// The newest complete backup of `name`'s group (and `new`'s database)
/// older than it whose verification did not fail, with its meta.json. The
/// backups an older pgbak wrote without the server in their names count as
/// the group's history too: the first run after an upgrade still has a
/// baseline (a wrong one can only pin, never delete).
async fn previous_good(
    store: &Store,
    name: &BackupName,
    new: &Meta,
) -> Result<Option<(BackupName, Meta)>> {
    let of_group = |other: &BackupName| {
        other.group() == name.group()
            || (other.server.is_none()
                && other.clone().with_server(name.server.clone()).group() == name.group())
    };
    let mut older: Vec<_> = store
        .list_backups()
        .await?
        .into_iter()
        .filter(|b| {
            b.has_dump && b.has_meta && of_group(&b.name) && b.name.timestamp < name.timestamp
        })
        .collect();
    older.sort_by_key(|b| std::cmp::Reverse(b.name.timestamp));
    for b in older {
        match store.load_judged(&b).await {
            Ok(Some(meta))
                if meta.database == new.database
                    && meta.verification.as_ref().is_none_or(|v| v.passed) =>
            {
                return Ok(Some((b.name, meta)))
            }
            Ok(_) => continue,
            Err(err) => ui::warn(&crate::error::one_line(&err)),
        }
    }
    Ok(None)
}

/// Writes the pin into the backup's meta.json in `store`; whether the store
/// holds that meta.json (pinned now or before).
async fn pin_in(store: &Store, name: &BackupName, pin: &Pin) -> Result<bool> {
    let Some(mut meta) = store.load_meta(name).await? else {
        return Ok(false);
    };
    if meta.pinned.is_none() {
        meta.pinned = Some(pin.clone());
        store.store_meta(name, &meta).await?;
        ui::info(&format!("pinned {} in {}", name.stem(), store.describe()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TableRows;

    fn meta(size: u64, rows: &[(&str, Option<u64>)]) -> Meta {
        let mut m = crate::meta::tests::sample();
        m.size_bytes = size;
        m.tables = rows
            .iter()
            .map(|(name, rows)| TableRows {
                schema: "public".into(),
                name: (*name).into(),
                rows: *rows,
            })
            .collect();
        m
    }

    #[test]
    fn table() {
        let prev = meta(1000, &[("messages", Some(900)), ("users", Some(100))]);
        type Pair = Option<(u64, u64)>;
        struct Case {
            what: &'static str,
            new: Meta,
            percent: u32,
            want: Option<(Pair, Pair, Vec<&'static str>)>,
        }
        let cases = [
            Case {
                what: "similar backup: nothing",
                new: meta(990, &[("messages", Some(910)), ("users", Some(100))]),
                percent: 50,
                want: None,
            },
            Case {
                what: "DELETE FROM messages",
                new: meta(700, &[("messages", Some(0)), ("users", Some(100))]),
                percent: 50,
                want: Some((Some((1000, 100)), None, vec!["public.messages 900 -> 0"])),
            },
            Case {
                what: "dump size collapsed (rows unknown: schema mode)",
                new: meta(100, &[("messages", None), ("users", None)]),
                percent: 50,
                want: Some((None, Some((1000, 100)), vec![])),
            },
            Case {
                what: "a dropped table counts as zero rows",
                new: meta(400, &[("users", Some(100))]),
                percent: 50,
                want: Some((
                    Some((1000, 100)),
                    Some((1000, 400)),
                    vec!["public.messages 900 -> 0"],
                )),
            },
            Case {
                what: "a lower threshold tolerates more",
                new: meta(700, &[("messages", Some(300)), ("users", Some(100))]),
                percent: 30,
                want: None,
            },
        ];
        for case in cases {
            let got = compare(&prev, &case.new, case.percent);
            let got = got.map(|f| (f.rows, f.size, f.tables));
            let want = case
                .want
                .map(|(r, s, t)| (r, s, t.into_iter().map(String::from).collect::<Vec<_>>()));
            assert_eq!(got, want, "{}", case.what);
        }
    }
}
