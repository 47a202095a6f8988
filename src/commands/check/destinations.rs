//! `check` at each `--to` destination (issue 27): every group judged there
//! on its own (the same limits: newest, newest verified), and a destination
//! whose newest backup of a group is not the group's newest (it missed a
//! backup: down, full, dropped from a run) fails, named. The directory and
//! the bucket are judged together as ever, before.

use anyhow::Result;
use chrono::Utc;

use super::verdict::{assess, GroupReport};
use super::{list_groups, read_groups, Reading};
use crate::settings::check::CheckSettings;
use crate::storage::{Destination, Stores};

/// The reports of every `--to` destination, given the main ones.
pub(super) async fn check(
    settings: &CheckSettings,
    stores: &Stores,
    main: &[GroupReport],
) -> Result<Vec<GroupReport>> {
    let mut reports = Vec::new();
    for destination in stores.added() {
        let mut at = at_destination(settings, destination).await?;
        lagging(&destination.name, main, &mut at);
        reports.extend(at);
    }
    Ok(reports)
}

/// One destination's groups, judged as `check` judges a store.
async fn at_destination(
    settings: &CheckSettings,
    destination: &Destination,
) -> Result<Vec<GroupReport>> {
    let alone = Stores::single(&destination.store);
    let groups = list_groups(settings, &alone).await?;
    let reading = Reading::of(settings, &alone, false, false).await;
    let read = read_groups(groups, &alone, reading).await?;
    let now = Utc::now();
    let mut reports: Vec<GroupReport> = read
        .iter()
        .map(|r| {
            assess(
                &r.group,
                &r.seen,
                r.backups,
                r.incomplete,
                settings.limits,
                now,
            )
        })
        .collect();
    super::verdict::supersede(&mut reports);
    for report in &mut reports {
        report.destination = Some(destination.name.clone());
    }
    Ok(reports)
}

/// Whether two reports are of the same group.
fn same_group(a: &GroupReport, b: &GroupReport) -> bool {
    (&a.database, &a.mode, &a.label, &a.server) == (&b.database, &b.mode, &b.label, &b.server)
}

/// Marks the groups where destination `name` lags behind `main` (the
/// directory and the bucket): its newest backup is not theirs, or it holds
/// none of a group they hold. Pure.
pub(super) fn lagging(name: &str, main: &[GroupReport], at: &mut Vec<GroupReport>) {
    for wanted in main.iter().filter(|m| m.superseded_by.is_none()) {
        let Some(newest) = &wanted.newest else {
            continue;
        };
        match at.iter_mut().find(|r| same_group(r, wanted)) {
            Some(report) => {
                let theirs = report.newest.as_ref().map(|b| b.name.as_str());
                if theirs != Some(newest.name.as_str()) {
                    report.ok = false;
                    report.status = "lagging";
                    report.problems.insert(
                        0,
                        format!(
                            "destination {name} lags: its newest backup is {}, the newest is {}",
                            theirs.unwrap_or("none"),
                            newest.name
                        ),
                    );
                }
            }
            None => at.push(GroupReport {
                ok: false,
                status: "lagging",
                problems: vec![format!(
                    "destination {name} lags: it holds no backup of this group, the newest is {}",
                    newest.name
                )],
                backups: 0,
                incomplete: 0,
                newest: None,
                newest_verified: None,
                last_verify: None,
                trend: Vec::new(),
                pinned: Vec::new(),
                locked_until: None,
                destination: Some(name.to_owned()),
                ..wanted.clone()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::verdict::tests::{group, limits, now, seen};

    #[test]
    fn a_destination_lags_when_its_newest_is_not_the_groups() {
        let report = |hours: &[i64]| {
            let seen: Vec<_> = hours.iter().map(|h| seen(*h, None)).collect();
            assess(&group(), &seen, seen.len(), 0, limits(), now())
        };
        let main = [report(&[1, 25])];
        // (the destination's backups, lagging)
        let cases: [(&[i64], bool); 3] = [(&[1, 25], false), (&[25], true), (&[], true)];
        for (hours, lags) in cases {
            let mut at: Vec<GroupReport> = if hours.is_empty() {
                Vec::new()
            } else {
                vec![report(hours)]
            };
            lagging("offsite", &main, &mut at);
            assert_eq!(at.len(), 1, "{hours:?}");
            assert_eq!(at[0].status == "lagging", lags, "{hours:?}: {:?}", at[0]);
            if lags {
                assert!(!at[0].ok);
                assert!(at[0].problems[0].starts_with("destination offsite lags"));
            }
        }
    }
}
