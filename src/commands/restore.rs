//! `pgbak restore` (not yet implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, RestoreArgs};

pub async fn run(_global: &GlobalArgs, _args: RestoreArgs) -> Result<ExitCode> {
    Err(crate::error::usage("pgbak restore is not yet implemented"))
}
