//! `pgbak verify` (not yet implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, VerifyArgs};

pub async fn run(_global: &GlobalArgs, _args: VerifyArgs) -> Result<ExitCode> {
    Err(crate::error::usage("pgbak verify is not yet implemented"))
}
