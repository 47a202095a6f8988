//! docs/reference/cli.md: `pgbak --help` and every command's `--help`, as clap
//! renders them at 100 columns, without the values of environment variables
//! (the generating machine's environment is nobody's business).

use clap::CommandFactory;
use pgbak::cli::Cli;

use super::fenced;

const WIDTH: usize = 100;

fn prepared() -> clap::Command {
    let mut root = Cli::command()
        .term_width(WIDTH)
        .mut_args(|a| a.hide_env_values(true))
        .mut_subcommands(|sub| sub.term_width(WIDTH).mut_args(|a| a.hide_env_values(true)));
    root.build();
    root
}

/// Help text without the trailing spaces clap leaves on blank lines.
fn plain(help: clap::builder::StyledStr) -> String {
    help.to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn page() -> String {
    let mut root = prepared();
    let mut out = String::new();
    out.push_str("## pgbak\n\n");
    out.push_str(&fenced("text", &plain(root.render_long_help())));
    let names: Vec<String> = root
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        let sub = root
            .find_subcommand_mut(&name)
            .expect("the names come from the same command");
        let help = plain(sub.render_long_help());
        out.push_str(&format!("\n## pgbak {name}\n\n"));
        out.push_str(&fenced("text", &help));
    }
    out
}

/// Every line is plain text (no terminal styling) and no wider than the page.
#[test]
fn the_cli_page_is_plain_and_fits_its_width() {
    let page = page();
    assert!(!page.contains('\u{1b}'), "ANSI escapes in the help text");
    assert!(page.contains("## pgbak backup") && page.contains("## pgbak cron"));
    for line in page.lines() {
        assert!(
            line.chars().count() <= WIDTH + 2,
            "a help line wider than {WIDTH} columns: {line:?}"
        );
    }
}
