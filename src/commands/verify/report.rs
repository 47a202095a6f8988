//! What one verify found: every check as PASS/FAIL/SKIP with a one-line
//! detail, printed as it is decided and kept for `--json` and meta.json.

use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::archive::Located;
use crate::pg::catalog::Kind;
use crate::ui;

/// The checks of verify, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckId {
    Meta,
    Checksum,
    Archive,
    TempDb,
    Restore,
    Tables,
    Rows,
    Extensions,
    Alembic,
    Indexes,
    Constraints,
    Triggers,
    RowSecurity,
    Sequences,
}

impl CheckId {
    pub const ALL: [CheckId; 14] = [
        CheckId::Meta,
        CheckId::Checksum,
        CheckId::Archive,
        CheckId::TempDb,
        CheckId::Restore,
        CheckId::Tables,
        CheckId::Rows,
        CheckId::Extensions,
        CheckId::Alembic,
        CheckId::Indexes,
        CheckId::Constraints,
        CheckId::Triggers,
        CheckId::RowSecurity,
        CheckId::Sequences,
    ];

    /// The checks run on the restored copy.
    pub const ON_COPY: [CheckId; 9] = [
        CheckId::Tables,
        CheckId::Rows,
        CheckId::Extensions,
        CheckId::Alembic,
        CheckId::Indexes,
        CheckId::Constraints,
        CheckId::Triggers,
        CheckId::RowSecurity,
        CheckId::Sequences,
    ];

    /// The name printed, in `--json` and in meta.json's `failed_checks`:
    /// operators script against it, so it never changes.
    pub fn name(self) -> &'static str {
        match self {
            CheckId::Meta => "meta.json",
            CheckId::Checksum => "checksum",
            CheckId::Archive => "archive readable",
            CheckId::TempDb => "temp database created",
            CheckId::Restore => "restore succeeded",
            CheckId::Tables => "expected tables present",
            CheckId::Rows => "row counts match",
            CheckId::Extensions => "extensions present",
            CheckId::Alembic => "alembic revision matches",
            CheckId::Indexes => "indexes match",
            CheckId::Constraints => "constraints match",
            CheckId::Triggers => "triggers match",
            CheckId::RowSecurity => "row-level security matches",
            CheckId::Sequences => "sequences match",
        }
    }

    /// The check that compares one kind of schema object.
    pub fn for_kind(kind: Kind) -> CheckId {
        match kind {
            Kind::Index => CheckId::Indexes,
            Kind::Constraint => CheckId::Constraints,
            Kind::Trigger => CheckId::Triggers,
            Kind::Policy => CheckId::RowSecurity,
            Kind::Sequence => CheckId::Sequences,
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CheckId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: CheckId,
    pub status: Status,
    pub detail: String,
}

/// The outcome of one verify; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backup: PathBuf,
    pub meta: Option<PathBuf>,
    /// True only when no check failed.
    pub passed: bool,
    /// Set when verify could not run at all (its target server was unreachable,
    /// the throwaway cluster did not start): no verdict on the backup, so
    /// nothing is recorded in its meta.json.
    pub could_not_run: Option<String>,
    pub checks: Vec<Check>,
    /// Where the copy went (`host:port`, or the throwaway cluster's directory).
    pub target: Option<String>,
    pub temp_database: Option<String>,
    /// With --no-cleanup: what was left, and the command that removes it.
    pub left_in_place: Option<String>,
    pub pg_restore_warnings: Vec<String>,
    pub duration_seconds: f64,
    /// The restore's and the checks' durations, once pg_restore ran (recorded in the verdict).
    pub timing: Option<crate::meta::VerifyTiming>,
}

impl Report {
    pub fn new(located: &Located) -> Report {
        Report {
            backup: located.dump.clone(),
            meta: located.meta_path.clone(),
            passed: false,
            could_not_run: None,
            checks: Vec::new(),
            target: None,
            temp_database: None,
            left_in_place: None,
            pg_restore_warnings: Vec::new(),
            duration_seconds: 0.0,
            timing: None,
        }
    }

    fn add(&mut self, name: CheckId, status: Status, detail: impl Into<String>) {
        let detail = detail.into();
        match status {
            Status::Pass => ui::info(&format!("PASS  {name}: {detail}")),
            Status::Fail => ui::error(&format!("FAIL  {name}: {detail}")),
            Status::Skip => ui::warn(&format!("SKIP  {name}: {detail}")),
        }
        self.checks.push(Check {
            name,
            status,
            detail,
        });
    }

    pub fn pass(&mut self, name: CheckId, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail);
    }

    pub fn fail(&mut self, name: CheckId, detail: impl Into<String>) {
        self.add(name, Status::Fail, detail);
    }

    pub fn skip(&mut self, name: CheckId, detail: impl Into<String>) {
        self.add(name, Status::Skip, detail);
    }

    pub fn has(&self, name: CheckId) -> bool {
        self.checks.iter().any(|c| c.name == name)
    }

    /// A step's result as check `name`: its value; or, when the step found
    /// the backup (or the server) bad ([`crate::error::Finding`]), the check
    /// failed, the rest skipped for `then`, and None. Any other error
    /// (pgbak could not look, or a stop) goes up.
    pub fn settle<T>(
        &mut self,
        name: CheckId,
        result: anyhow::Result<T>,
        then: &str,
    ) -> anyhow::Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(err) => match crate::error::as_finding(&err) {
                Some(detail) => {
                    self.fail(name, detail);
                    self.skip_rest(then);
                    Ok(None)
                }
                None => Err(err),
            },
        }
    }

    /// Marks every check that has not run as skipped, with the reason.
    pub fn skip_rest(&mut self, reason: &str) {
        for name in CheckId::ALL {
            if !self.has(name) {
                self.skip(name, reason);
            }
        }
    }

    /// Marks the copy's checks that have not run as failed (the copy could not be read).
    pub fn fail_rest_on_copy(&mut self, detail: &str) {
        for name in CheckId::ON_COPY {
            if !self.has(name) {
                self.fail(name, detail);
            }
        }
    }

    /// The checksum check of a dump streamed into pg_restore, known once the
    /// stream ended (in the place of a skip the restore's failure left). Err
    /// when the download failed midway: no verdict on the backup (nothing recorded).
    pub fn settle_streamed(&mut self, located: &Located) -> anyhow::Result<()> {
        use crate::storage::s3::stream::Verdict;
        let Some(streamed) = &located.stream else {
            return Ok(());
        };
        let proof = streamed.proof.lock().ok().and_then(|p| p.clone());
        let (status, detail) = match proof {
            Some(Verdict::Matches(detail)) => (Status::Pass, detail),
            Some(Verdict::Differs(why)) => (Status::Fail, why),
            Some(Verdict::Unread(why)) => return Err(anyhow::anyhow!(why)),
            None if self.has(CheckId::Checksum) => return Ok(()),
            None => (Status::Skip, "not read: the restore did not run".to_owned()),
        };
        self.checks.retain(|c| c.name != CheckId::Checksum);
        self.add(CheckId::Checksum, status, detail);
        Ok(())
    }

    /// The checks that failed, in order.
    pub fn failed(&self) -> Vec<CheckId> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect()
    }
}

/// The last line: passed, failed (naming the checks), or could not run.
pub fn summarize(report: &Report, located: &Located) {
    let failed: Vec<&str> = report.failed().into_iter().map(CheckId::name).collect();
    if report.passed {
        ui::info(&format!(
            "verify passed: {} checks in {:.1}s ({})",
            report.checks.len(),
            report.duration_seconds,
            located.dump.display()
        ));
    } else if report.could_not_run.is_some() {
        ui::error(&format!(
            "verify could not run (no server to restore into), so {} is neither passed nor \
             failed; nothing recorded in its meta.json",
            located.dump.display()
        ));
    } else {
        ui::error(&format!(
            "verify FAILED: {} of {} checks failed ({}): {}",
            failed.len(),
            report.checks.len(),
            failed.join(", "),
            located.dump.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_and_serialise_as_their_names() {
        let names: std::collections::BTreeSet<&str> =
            CheckId::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), CheckId::ALL.len());
        assert!(CheckId::ON_COPY.iter().all(|c| CheckId::ALL.contains(c)));
        for kind in Kind::ALL {
            assert!(CheckId::ON_COPY.contains(&CheckId::for_kind(kind)));
        }
        let json = serde_json::to_value(Check {
            name: CheckId::RowSecurity,
            status: Status::Fail,
            detail: "policy p on public.t missing".into(),
        })
        .unwrap();
        assert_eq!(json["name"], "row-level security matches");
        assert_eq!(json["status"], "fail");
    }
}
