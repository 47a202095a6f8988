//! Cron's re-proving after a successful run (`PGBAK_VERIFY_CHECKSUMS`,
//! `PGBAK_VERIFY_SAMPLE`): the retained backups of the run's databases in
//! the authoritative store read back when a pass is due, and the few
//! proven longest ago restored ([`crate::commands::verify::reprove`]). A
//! failure is the run's `verify` step failing: alerted, exit 1.

use anyhow::anyhow;

use super::{CronRun, Failed};
use crate::alert::Step;
use crate::commands::verify::reprove::{checksums_due, reprove};
use crate::settings::cron::CronConfig;
use crate::settings::reprove::{Reprove, CRON_PARALLEL};
use crate::signals::Signals;
use crate::storage::Stores;

/// Re-proves what the settings ask for; nothing without them.
pub(super) async fn after_success(
    config: &CronConfig,
    stores: &Stores,
    run: &mut CronRun,
    signals: &mut Signals,
) -> Result<(), Failed> {
    let (Some(wanted), Some(store)) = (&config.reprove, stores.authoritative()) else {
        return Ok(());
    };
    run.step(Step::Verify, async {
        let checksums = match wanted.checksums.span() {
            Some(span) => checksums_due(store, &wanted.databases, span).await?,
            None => false,
        };
        if !checksums && wanted.sample == 0 {
            return Ok(());
        }
        let work = Reprove {
            checksums,
            sample: wanted.sample,
            parallel: CRON_PARALLEL,
            databases: wanted.databases.clone(),
        };
        let reproved = reprove(&work, &wanted.verify, store, signals).await?;
        let failures = reproved.failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "re-proving the retained backups failed for {}",
                failures.join(", ")
            ))
        }
    })
    .await
}
