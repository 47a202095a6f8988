//! The few facts about a command line needed before (or without) clap:
//! its command, whether it is `pgbak cron`, its `--env-file`, its `--mode`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::mode::Mode;

/// The commands that read an environment file (`--env-file`, else
/// `PGBAK_ENV_FILE`): cron, and what an operator runs by hand beside it.
pub const ENV_FILE_COMMANDS: &[&str] = &[
    "cron", "backup", "restore", "verify", "list", "check", "prune", "unpin", "sync",
];

/// The flags before the command that take a value (`--pg-bin-dir DIR`).
const GLOBAL_WITH_VALUE: &[&str] = &["--pg-bin-dir", "--timeout", "--lock-wait-timeout"];

/// The command of `pgbak [global flags] COMMAND ...`, read without clap.
pub fn command(argv: &[OsString]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if GLOBAL_WITH_VALUE.contains(&text.as_ref()) {
            args.next();
        } else if !text.starts_with('-') {
            return Some(text.into_owned());
        }
    }
    None
}

/// The `--env-file` of a command line of one of [`ENV_FILE_COMMANDS`], found
/// before clap parses, since the file's variables are clap's input (the
/// settings fall back to `PGBAK_ENV_FILE`).
pub fn env_file_flag(argv: &[OsString]) -> Option<PathBuf> {
    if !command(argv).is_some_and(|c| ENV_FILE_COMMANDS.contains(&c.as_str())) {
        return None;
    }
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == "--env-file" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--env-file=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// Whether the command line is `pgbak [global flags] cron ...`.
pub fn is_cron(argv: &[OsString]) -> bool {
    command(argv).as_deref() == Some("cron")
}

/// The mode a cron command line asks for, read without clap (for a run whose
/// command line did not parse).
pub fn mode_arg(argv: &[OsString]) -> Mode {
    let texts: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    texts
        .iter()
        .enumerate()
        .find_map(|(i, t)| match t.strip_prefix("--mode=") {
            Some(value) => Some(value.to_owned()),
            None if t == "--mode" => texts.get(i + 1).cloned(),
            None => None,
        })
        .and_then(|m| Mode::parse(&m))
        .unwrap_or(Mode::Full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn cron_command_lines_are_recognised_before_parsing() {
        let cases: [(&[&str], bool, Option<&str>, Mode); 8] = [
            (&["pgbak", "cron"], true, None, Mode::Full),
            (
                &["pgbak", "-v", "cron", "--env-file", "/e"],
                true,
                Some("/e"),
                Mode::Full,
            ),
            (
                &[
                    "pgbak",
                    "--pg-bin-dir",
                    "/b",
                    "cron",
                    "--env-file=/f",
                    "--mode",
                    "schema",
                ],
                true,
                Some("/f"),
                Mode::Schema,
            ),
            (&["pgbak", "cron", "--mode=data"], true, None, Mode::Data),
            (
                &["pgbak", "backup", "--env-file", "/e"],
                false,
                Some("/e"),
                Mode::Full,
            ),
            (
                &["pgbak", "--timeout", "2h", "cron", "--env-file=/t"],
                true,
                Some("/t"),
                Mode::Full,
            ),
            (
                &["pgbak", "keygen", "--env-file", "/k"],
                false,
                None,
                Mode::Full,
            ),
            (&["pgbak"], false, None, Mode::Full),
        ];
        for (args, cron, file, mode) in cases {
            let args = argv(args);
            assert_eq!(is_cron(&args), cron, "{args:?}");
            assert_eq!(env_file_flag(&args), file.map(PathBuf::from), "{args:?}");
            assert_eq!(mode_arg(&args), mode, "{args:?}");
        }
    }
}
