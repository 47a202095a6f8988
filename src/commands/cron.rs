//! `pgbak cron` (not yet implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{CronArgs, GlobalArgs};

pub async fn run(_global: &GlobalArgs, _args: CronArgs) -> Result<ExitCode> {
    Err(crate::error::usage("pgbak cron is not yet implemented"))
}
