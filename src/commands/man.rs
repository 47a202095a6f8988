//! `pgbak man`: the man pages (roff), generated from the clap definition so
//! they say exactly what `--help` says. `pgbak man > pgbak.1` prints the top
//! page; `pgbak man --dir DIR` writes it and one page per subcommand
//! (`pgbak-backup.1`, ...), as git and cargo ship theirs, for packagers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::ui;

pub fn run(args: ManArgs) -> Result<ExitCode> {
    let Some(dir) = args.dir else {
        write_stdout(&render(top_command())?)?;
        return Ok(ExitCode::SUCCESS);
    };
    let written = write_pages(&dir)?;
    ui::info(&format!(
        "wrote {} man pages into {}",
        written.len(),
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// pgbak's command without clap's `help` subcommand, which has no page.
fn top_command() -> clap::Command {
    Cli::command().disable_help_subcommand(true)
}

/// One page (the command's own), dated with the build date; every page's
/// footer names pgbak's version (a subcommand's would name only itself).
fn render(command: clap::Command) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .date(crate::version::BUILD_DATE)
        .source(format!("pgbak {}", crate::version::LINE))
        .render(&mut out)
        .context("rendering the man page")?;
    Ok(out)
}

/// `pgbak.1` and `pgbak-<subcommand>.1` for every visible subcommand, into
/// `dir`, with the umask's usual mode (man pages are public, not 0600).
fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))?;
    let mut top = top_command();
    // Names the subcommands' pages `pgbak-backup` (clap's display names).
    top.build();
    let mut pages = vec![top.clone()];
    pages.extend(top.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let name = page
            .get_display_name()
            .unwrap_or_else(|| page.get_name())
            .to_owned();
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, render(page)?)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes generated text to stdout in one piece.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
