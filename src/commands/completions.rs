//! `pgbak completions SHELL`: the shell completion script, generated from the
//! same clap definition as `--help`, so it never lags behind the flags.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "pgbak", &mut out);
    super::man::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
