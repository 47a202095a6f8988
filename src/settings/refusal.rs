//! clap's refusal of a command line, told on one line, naming the
//! environment variable when the bad value came from one: clap itself names
//! only the flag, and an operator who never typed `--verify` is left to
//! guess that `VERIFY_ON_BACKUP` said it.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue};
use clap::CommandFactory;

use crate::cli::Cli;

/// clap's refusal on one line, naming the environment variable when the bad
/// value came from one rather than from the command line `argv`.
pub fn describe_refusal(argv: &[OsString], err: &clap::Error) -> String {
    let first = first_line(err);
    match from_environment(argv, err) {
        Some((env, long)) => format!("{env} (the environment's value for --{long}): {first}"),
        None => first,
    }
}

/// The refusal of a value that came from the environment, on one line
/// naming the variable; None when the command line itself was refused
/// (clap's own message, with its usage, says it best then).
pub fn environment_refusal(argv: &[OsString], err: &clap::Error) -> Option<String> {
    from_environment(argv, err).map(|_| describe_refusal(argv, err))
}

fn first_line(err: &clap::Error) -> String {
    let rendered = err.to_string();
    rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

/// The variable (and the flag's long name) whose value clap refused, when
/// the flag was not on the command line but its variable is set.
fn from_environment(argv: &[OsString], err: &clap::Error) -> Option<(String, String)> {
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.trim_start_matches('-');
    let long = long.split([' ', '=']).next().unwrap_or(long).to_owned();
    let command = Cli::command();
    // The command the line names, else any (a line that names none).
    let named = super::command_line::command(argv);
    let env = command
        .get_subcommands()
        .filter(|c| named.as_deref().is_none_or(|n| c.get_name() == n))
        .flat_map(|c| c.get_arguments())
        .chain(command.get_arguments())
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())?;
    let on_command_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    (!on_command_line && super::env().get(&env).is_some()).then_some((env, long))
}
