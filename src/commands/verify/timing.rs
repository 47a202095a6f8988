//! What a verify measured: the restore's and the checks' durations, kept in
//! its report and verdict (`verification.timing`) to two decimals, and with
//! `--metrics-file` the restore time as its group's
//! `pgbak_restore_duration_seconds` in the node_exporter textfile.

use std::path::Path;

use super::Report;
use crate::meta::Meta;
use crate::ui;

/// Seconds to two decimals, as the verdict records them.
pub(super) fn hundredths(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// `--metrics-file`: a passed verify's restore time, as its group's
/// `pgbak_restore_duration_seconds`. A failure is a warning.
pub(super) fn write_metric(path: &Path, meta: &Meta, report: &Report) {
    let Some(timing) = report.timing.as_ref().filter(|_| report.passed) else {
        return;
    };
    let update = crate::metrics::Update::Restored {
        group: crate::metrics::GroupLabels {
            database: meta.database.clone(),
            mode: meta.mode.as_str().to_owned(),
            label: meta.label.clone().unwrap_or_default(),
            server: meta
                .server
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        },
        seconds: timing.restore_seconds,
    };
    if let Err(err) = crate::metrics::write(path, &update) {
        ui::warn(&format!(
            "could not write the restore time into {}: {}",
            path.display(),
            crate::error::one_line(&err)
        ));
    }
}
