//! docs/reference/exit-codes.md: `error::CODES`, and the same codes in `pgbak --help`.

use clap::CommandFactory;
use pgbak::cli::Cli;
use pgbak::error::CODES;

pub fn table() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for (code, meaning) in CODES {
        out.push_str(&format!("| {code} | {meaning} |\n"));
    }
    out
}

/// `pgbak --help` ends with the exit codes: the same ones.
#[test]
fn the_help_names_every_exit_code() {
    let help = Cli::command().render_long_help().to_string();
    let (_, epilogue) = help
        .split_once("Exit codes:")
        .expect("pgbak --help lists the exit codes");
    for (code, _) in CODES {
        assert!(
            epilogue.contains(&code.to_string()),
            "pgbak --help does not name exit code {code}"
        );
    }
}
