//! `pgbak list` (not yet implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, ListArgs};

pub async fn run(_global: &GlobalArgs, _args: ListArgs) -> Result<ExitCode> {
    Err(crate::error::usage("pgbak list is not yet implemented"))
}
