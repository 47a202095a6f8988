//! The per-destination series of a cron run (issue 27's 3-2-1): whether the
//! run's backup reached each destination, when one last did, and its size
//! there, each labelled `destination="NAME"` beside the group's labels. An
//! operator alerts on a destination that lags (`time() -
//! pgbak_destination_last_success_timestamp_seconds > 26*3600`) while the
//! group's own series say the run as a whole.

use super::{GroupLabels, Sample};

pub(super) const COPIED: &str = "pgbak_destination_last_copy_success";
pub(super) const LAST_SUCCESS: &str = "pgbak_destination_last_success_timestamp_seconds";
pub(super) const SIZE: &str = "pgbak_destination_backup_size_bytes";

/// What the file says of them: name, type, help.
pub(super) const METRICS: [(&str, &str, &str); 3] = [
    (
        COPIED,
        "gauge",
        "1 when the last pgbak cron run of this group left its backup complete at this destination, else 0.",
    ),
    (
        LAST_SUCCESS,
        "gauge",
        "Unix time the newest pgbak cron run of this group whose backup reached this destination complete started.",
    ),
    (
        SIZE,
        "gauge",
        "Size of the newest backup of this group a pgbak cron run left complete at this destination.",
    ),
];

/// One destination of a run: its name and whether the run's backup
/// reached it complete (with the dump's size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationMetric {
    pub name: String,
    /// The dump's size when the backup is complete there; None when this
    /// run's backup did not reach it.
    pub copied: Option<u64>,
}

/// The group's destination series after a run that started `started` with
/// `destinations` (all the run's destinations; empty: a run that never got
/// as far as knowing them, whose group's series are carried on). A
/// destination that failed keeps its last success time and size; a
/// destination no longer configured loses its series.
pub(super) fn after_run(
    mine: &[Sample],
    group: &GroupLabels,
    started: f64,
    destinations: &[DestinationMetric],
) -> Vec<Sample> {
    let ours = |s: &&Sample| METRICS.iter().any(|(name, _, _)| *name == s.name);
    if destinations.is_empty() {
        return mine.iter().filter(ours).cloned().collect();
    }
    let previous = |name: &str, destination: &str| {
        mine.iter()
            .find(|s| s.name == name && s.label("destination") == destination)
            .map(|s| s.value)
    };
    let mut out = Vec::new();
    for d in destinations {
        let label = Some(("destination", d.name.as_str()));
        let copied = d.copied.is_some();
        out.push(Sample::new(
            COPIED,
            group,
            label,
            f64::from(u8::from(copied)),
        ));
        let at = match copied {
            true => Some(started),
            false => previous(LAST_SUCCESS, &d.name),
        };
        let size = d.copied.map(|s| s as f64).or(previous(SIZE, &d.name));
        for (name, value) in [(LAST_SUCCESS, at), (SIZE, size)] {
            if let Some(value) = value {
                out.push(Sample::new(name, group, label, value));
            }
        }
    }
    out
}

/// The run's destinations as the metrics see them: each of `all` (in
/// order), copied when `held` names it, with `size`.
pub fn of_run(all: &[String], held: &[String], size: u64) -> Vec<DestinationMetric> {
    all.iter()
        .map(|name| DestinationMetric {
            name: name.clone(),
            copied: held.contains(name).then_some(size),
        })
        .collect()
}
