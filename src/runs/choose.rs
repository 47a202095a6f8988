//! Which run `restore --all-databases` rebuilds a server from, as a pure
//! function of what the store holds: the run the operator names (`--run`),
//! else the run the target's restore journal is in the middle of, else the
//! newest complete run, of one server (`--server` when the prefix holds
//! several). Every newer run says why it was not chosen, so the plan shows
//! it before anything is touched.

use std::collections::{BTreeMap, BTreeSet};

use super::{RunRecord, Status};
use crate::meta::ServerIdentity;

/// One run as the store shows it: its record (None for runs written before
/// pgbak recorded runs) and which of its backups are there, complete.
#[derive(Debug, Clone)]
pub struct RunView {
    pub id: String,
    /// None: written before pgbak recorded the server.
    pub server: Option<ServerIdentity>,
    pub record: Option<RunRecord>,
    pub has_globals: bool,
    /// The databases the run meant to back up (its record's, else its
    /// globals backup's list).
    pub meant: Vec<String>,
    /// The databases with a complete backup of this run in the store.
    pub present: BTreeSet<String>,
}

impl RunView {
    /// Why the run cannot rebuild its server as it was; empty when it can.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = match self.record.as_ref().map(RunRecord::status) {
            Some(Status::Unfinished) => {
                return vec!["it never finished (killed, or still running)".to_owned()];
            }
            Some(Status::Incomplete(why)) => why,
            Some(Status::Complete) | None => Vec::new(),
        };
        if !self.has_globals && problems.iter().all(|p| !p.contains("globals")) {
            problems.push("its globals backup is not in the store".into());
        }
        for db in &self.meant {
            let reported = problems.iter().any(|p| p.starts_with(&format!("{db} ")));
            if !self.present.contains(db) && !reported {
                problems.push(format!("its backup of {db} is not in the store"));
            }
        }
        problems
    }

    fn server_text(&self) -> String {
        server_text(self.server.as_ref())
    }
}

/// A server as the plan and the errors name it.
pub fn server_text(server: Option<&ServerIdentity>) -> String {
    match server {
        None => "an unknown server (backups made before pgbak recorded servers)".into(),
        Some(s) => format!(
            "{} (system identifier {})",
            s.name,
            s.system_identifier.as_deref().unwrap_or("unknown")
        ),
    }
}

/// What the operator and the target's journal ask for.
#[derive(Debug, Clone, Default)]
pub struct Wish<'a> {
    /// `--run`.
    pub run: Option<&'a str>,
    /// `--server NAME_OR_ID` (`unknown` for backups without a server).
    pub server: Option<&'a str>,
    /// The run (and its server) the target's journal is restoring.
    pub journal: Option<(&'a str, Option<&'a ServerIdentity>)>,
}

/// The choice: which run, why, and why every newer run of the server was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub run: String,
    pub why: String,
    /// (run id, why not) for every newer run of the same server.
    pub newer: Vec<(String, String)>,
    /// The chosen run's own problems (only when named with `--run` or by the journal).
    pub problems: Vec<String>,
}

/// Why no run was chosen: a usage error (exit 2) in the operator's words.
pub type Refusal = String;

/// Picks the run.
pub fn choose(views: &[RunView], wish: &Wish<'_>) -> Result<Choice, Refusal> {
    let of_server = servers_run(views, wish)?;
    let mut runs: Vec<&RunView> = of_server;
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    let named = wish.run.map(|r| (r, "named with --run"));
    let journal = wish.journal.map(|(r, _)| {
        (
            r,
            "the run the target's restore journal is in the middle of (a re-run continues it)",
        )
    });
    let chosen = match named.or(journal) {
        Some((id, why)) => {
            let view = runs.iter().find(|v| v.id == id).ok_or_else(|| {
                format!(
                    "run {id} ({why}) is not under the prefix; runs there: {}",
                    listing(&runs)
                )
            })?;
            (*view, why.to_owned(), view.problems())
        }
        None => {
            let view = runs
                .iter()
                .rev()
                .find(|v| v.problems().is_empty())
                .ok_or_else(|| {
                    format!(
                        "no complete run to rebuild {} from: {}; pass --run RUN_ID to restore an \
                     incomplete one",
                        runs.first().map_or_else(String::new, |v| v.server_text()),
                        listing(&runs)
                    )
                })?;
            (*view, "the newest complete run".to_owned(), Vec::new())
        }
    };
    let (view, why, problems) = chosen;
    let newer = runs
        .iter()
        .filter(|v| v.id > view.id)
        .map(|v| {
            let problems = v.problems();
            let not = if problems.is_empty() {
                format!("complete, but {why} is {}", view.id)
            } else {
                format!("incomplete: {}", problems.join("; "))
            };
            (v.id.clone(), not)
        })
        .collect();
    Ok(Choice {
        run: view.id.clone(),
        why,
        newer,
        problems,
    })
}

/// The runs of the one server asked for (or the only one there is).
fn servers_run<'v>(views: &'v [RunView], wish: &Wish<'_>) -> Result<Vec<&'v RunView>, Refusal> {
    let servers: BTreeSet<Option<&ServerIdentity>> =
        views.iter().map(|v| v.server.as_ref()).collect();
    if views.is_empty() {
        return Err("no `pgbak backup --all-databases` run here".into());
    }
    let pick: BTreeSet<Option<&ServerIdentity>> = match (wish.server, wish.journal) {
        (Some(asked), _) => servers
            .iter()
            .copied()
            .filter(|s| match s {
                None => asked == "unknown",
                Some(s) => s.name == asked || s.system_identifier.as_deref() == Some(asked),
            })
            .collect(),
        (None, Some((_, server))) => servers.iter().copied().filter(|s| *s == server).collect(),
        (None, None) => servers.clone(),
    };
    if pick.len() == 1 {
        let server = pick.into_iter().next().flatten();
        return Ok(views
            .iter()
            .filter(|v| v.server.as_ref() == server)
            .collect());
    }
    let list = servers_listing(views, if pick.is_empty() { &servers } else { &pick });
    Err(match (wish.server, pick.is_empty()) {
        (Some(asked), true) => format!("no run of a server named {asked:?} here; servers: {list}"),
        (Some(asked), false) => format!(
            "--server {asked:?} names more than one server (the same name, other system \
             identifiers: a rebuilt or another cluster); pass its system identifier: {list}"
        ),
        (None, true) => format!("the journal's server has no run here; servers: {list}"),
        (None, false) => format!(
            "this prefix holds the runs of {} servers; pass --server NAME_OR_ID to choose one: {list}",
            pick.len()
        ),
    })
}

fn servers_listing(views: &[RunView], servers: &BTreeSet<Option<&ServerIdentity>>) -> String {
    let mut newest: BTreeMap<Option<&ServerIdentity>, &str> = BTreeMap::new();
    for v in views {
        let server = v.server.as_ref();
        if servers.contains(&server) && newest.get(&server).is_none_or(|n| *n < v.id.as_str()) {
            newest.insert(server, &v.id);
        }
    }
    newest
        .iter()
        .map(|(s, id)| format!("{} newest run {id}", server_text(*s)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn listing(runs: &[&RunView]) -> String {
    if runs.is_empty() {
        return "none".into();
    }
    runs.iter()
        .rev()
        .map(|v| {
            let p = v.problems();
            if p.is_empty() {
                format!("{} (complete)", v.id)
            } else {
                format!("{} ({})", v.id, p.join("; "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::{ended, server};

    fn view(record: RunRecord) -> RunView {
        let present = record
            .outcomes
            .iter()
            .filter(|(_, i)| i.error.is_none())
            .map(|(d, _)| d.clone())
            .collect();
        RunView {
            id: record.run_id.clone(),
            server: Some(record.server.clone()),
            has_globals: record.globals.as_ref().is_some_and(|g| g.error.is_none()),
            meant: record.databases.clone(),
            present,
            record: Some(record),
        }
    }

    fn runs() -> Vec<RunView> {
        let mut killed = RunRecord::start("20261207T020000", server("db1"), &["a".into()], &[]);
        killed.finished_at = None;
        vec![
            view(ended("20261205T020000", "db1", &[("a", true), ("b", true)])),
            view(ended(
                "20261206T020000",
                "db1",
                &[("a", true), ("b", false)],
            )),
            view(killed),
        ]
    }

    #[test]
    fn the_newest_complete_run_and_why_newer_ones_are_not() {
        let choice = choose(&runs(), &Wish::default()).unwrap();
        assert_eq!(choice.run, "20261205T020000");
        assert_eq!(choice.why, "the newest complete run");
        assert_eq!(
            choice.newer,
            vec![
                (
                    "20261206T020000".into(),
                    "incomplete: b failed (boom)".into()
                ),
                (
                    "20261207T020000".into(),
                    "incomplete: it never finished (killed, or still running)".into()
                ),
            ]
        );
    }

    #[test]
    fn run_and_journal_choose_and_missing_backups_count() {
        let wish = Wish {
            run: Some("20261206T020000"),
            ..Wish::default()
        };
        let choice = choose(&runs(), &wish).unwrap();
        assert_eq!(choice.problems, vec!["b failed (boom)"]);
        // A re-run continues the journal's run though a newer complete one appeared.
        let mut all = runs();
        all.push(view(ended("20261208T020000", "db1", &[("a", true)])));
        let server = server("db1");
        let wish = Wish {
            journal: Some(("20261205T020000", Some(&server))),
            ..Wish::default()
        };
        let choice = choose(&all, &wish).unwrap();
        assert_eq!(choice.run, "20261205T020000");
        assert!(
            choice.newer[2]
                .1
                .starts_with("complete, but the run the target's restore journal"),
            "{:?}",
            choice.newer
        );
        // --run beats the journal.
        let wish = Wish {
            run: Some("20261208T020000"),
            journal: Some(("20261205T020000", Some(&server))),
            ..Wish::default()
        };
        assert_eq!(choose(&all, &wish).unwrap().run, "20261208T020000");
        // A complete record whose backup was deleted since is not complete.
        let mut gone = runs();
        gone[0].present.remove("b");
        let err = choose(&gone, &Wish::default()).unwrap_err();
        assert!(err.contains("its backup of b is not in the store"), "{err}");
        assert!(choose(
            &runs(),
            &Wish {
                run: Some("20990101T000000"),
                ..Wish::default()
            }
        )
        .is_err());
    }

    #[test]
    fn several_servers_need_one_named() {
        let mut all = runs();
        let mut rebuilt = view(ended("20261209T020000", "db1", &[("a", true)]));
        rebuilt.server.as_mut().unwrap().system_identifier = Some("7500000000000000002".into());
        all.push(rebuilt);
        all.push(view(ended("20261209T030000", "db2", &[("x", true)])));
        let err = choose(&all, &Wish::default()).unwrap_err();
        assert!(
            err.contains("runs of 3 servers") && err.contains("--server"),
            "{err}"
        );
        let err = choose(
            &all,
            &Wish {
                server: Some("db1"),
                ..Wish::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("more than one server"), "{err}");
        let choice = choose(
            &all,
            &Wish {
                server: Some("7500000000000000002"),
                ..Wish::default()
            },
        )
        .unwrap();
        assert_eq!(choice.run, "20261209T020000");
        let choice = choose(
            &all,
            &Wish {
                server: Some("db2"),
                ..Wish::default()
            },
        )
        .unwrap();
        assert_eq!(choice.run, "20261209T030000");
        assert!(choose(
            &all,
            &Wish {
                server: Some("nope"),
                ..Wish::default()
            }
        )
        .is_err());
    }
}
