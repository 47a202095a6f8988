//! `pgbak man`: the man page (roff), generated from the clap definition so it
//! says exactly what `--help` says, for packagers: `pgbak man > pgbak.1`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

pub fn run() -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .context("rendering the man page")?;
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes generated text to stdout in one piece.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
