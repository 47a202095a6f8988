//! `check`'s verdict on `--all-databases` runs: the newest run of each
//! server must be complete. A run whose globals or a database failed, or
//! that never wrote its end within `--max-run-duration` (killed), fails the
//! check by name; a run younger than that without an end is still running.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::meta::ServerIdentity;
use crate::runs::{self, RunRecord, Status};
use crate::storage::Stores;

/// The run records in the directory, (with `--s3`) the bucket and each
/// `--to` destination, one per run.
pub async fn read(stores: &Stores) -> Result<Vec<RunRecord>> {
    let mut found: BTreeMap<String, RunRecord> = BTreeMap::new();
    for (_, records) in runs::records_everywhere(stores).await? {
        for r in records {
            // The later write (the end) wins.
            let newer = found
                .get(&r.file_name())
                .is_none_or(|have| have.finished_at.is_none());
            if newer {
                found.insert(r.file_name(), r);
            }
        }
    }
    Ok(found.into_values().collect())
}

/// One line per server whose newest run is not complete; empty when all are.
pub fn problems(
    records: &[RunRecord],
    now: DateTime<Utc>,
    max_run_duration: std::time::Duration,
) -> Vec<String> {
    let mut newest: BTreeMap<&ServerIdentity, &RunRecord> = BTreeMap::new();
    for r in records {
        if newest.get(&r.server).is_none_or(|n| n.run_id < r.run_id) {
            newest.insert(&r.server, r);
        }
    }
    let limit = chrono::TimeDelta::from_std(max_run_duration).unwrap_or(chrono::TimeDelta::MAX);
    newest
        .values()
        .filter_map(|r| {
            let server = crate::runs::choose::server_text(Some(&r.server));
            match r.status() {
                Status::Complete => None,
                Status::Incomplete(why) => Some(format!(
                    "server {server}: the newest --all-databases run {} is incomplete: {}",
                    r.run_id,
                    why.join("; ")
                )),
                Status::Unfinished => {
                    let started = DateTime::parse_from_rfc3339(&r.started_at)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(now);
                    (now - started > limit).then(|| {
                        format!(
                            "server {server}: the newest --all-databases run {} started at {} and \
                             never finished (killed?)",
                            r.run_id, r.started_at
                        )
                    })
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::ended;
    use std::time::Duration;

    #[test]
    fn the_newest_run_of_each_server_must_be_complete() {
        let now = Utc::now();
        let twelve = Duration::from_secs(12 * 3600);
        let good = ended("20261205T020000", "db1", &[("a", true)]);
        let bad = ended("20261206T020000", "db1", &[("a", false)]);
        assert!(problems(std::slice::from_ref(&good), now, twelve).is_empty());
        let lines = problems(&[good.clone(), bad.clone()], now, twelve);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("run 20261206T020000 is incomplete: a failed (boom)"),
            "{lines:?}"
        );
        // An older failure is history once a newer run is complete.
        let newer = ended("20261207T020000", "db1", &[("a", true)]);
        assert!(problems(&[bad.clone(), newer], now, twelve).is_empty());
        // A run without its end: running for a while, then killed.
        let mut running = ended("20261208T020000", "db1", &[("a", true)]);
        running.finished_at = None;
        running.started_at = (now - chrono::TimeDelta::hours(1)).to_rfc3339();
        assert!(problems(&[good.clone(), running.clone()], now, twelve).is_empty());
        running.started_at = (now - chrono::TimeDelta::hours(13)).to_rfc3339();
        let lines = problems(&[good, running], now, twelve);
        assert!(lines[0].contains("never finished"), "{lines:?}");
        // Another server's runs are judged on their own.
        let other = ended("20261209T020000", "db2", &[("x", true)]);
        assert_eq!(problems(&[bad, other], now, twelve).len(), 1);
    }
}
