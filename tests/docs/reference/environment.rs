//! docs/reference/environment.md: every variable of `settings::vars::ALL`,
//! by group, with the flags clap reads it for.

use std::collections::BTreeMap;

use clap::CommandFactory;
use pgbak::cli::Cli;
use pgbak::settings::vars::{Var, ALL, SECRET_VARS};

/// The flags that take their value from each variable, with the commands
/// that have them: `` `--keep-last` (backup, cron, prune, list) ``.
fn flags() -> BTreeMap<String, Vec<String>> {
    let mut root = Cli::command();
    root.build();
    // variable -> flag -> commands
    let mut found: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    let mut add = |env: &str, long: &str, command: &str| {
        let flags = found.entry(env.to_owned()).or_default();
        let i = match flags.iter().position(|(flag, _)| flag == long) {
            Some(i) => i,
            None => {
                flags.push((long.to_owned(), Vec::new()));
                flags.len() - 1
            }
        };
        if !flags[i].1.iter().any(|c| c == command) {
            flags[i].1.push(command.to_owned());
        }
    };
    for arg in root.get_arguments() {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            add(&env.to_string_lossy(), long, "any command");
        }
    }
    for sub in root.get_subcommands() {
        for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                add(&env.to_string_lossy(), long, sub.get_name());
            }
        }
    }
    found
        .into_iter()
        .map(|(env, flags)| {
            let shown = flags
                .into_iter()
                .map(|(flag, commands)| format!("`--{flag}` ({})", commands.join(", ")))
                .collect();
            (env, shown)
        })
        .collect()
}

/// One table per group, in the registry's order.
pub fn page() -> String {
    let flags = flags();
    let mut out = String::new();
    let mut group = "";
    for var in ALL {
        if var.group != group {
            group = var.group;
            out.push_str(&format!(
                "\n### {group}\n\n| variable | read by | flag | default | meaning |\n|---|---|---|---|---|\n"
            ));
        }
        out.push_str(&row(var, flags.get(var.name)));
    }
    out.trim_start().to_owned()
}

fn row(var: &Var, flags: Option<&Vec<String>>) -> String {
    let mut name = format!("`{}`", var.name);
    if SECRET_VARS.contains(&var.name) {
        name.push_str(&format!(" (or `{}_FILE`)", var.name));
    }
    let commands = var.commands.join(", ");
    let flags = flags.map(|f| f.join(", ")).unwrap_or_default();
    let cells = [name.as_str(), &commands, &flags, var.default, var.meaning];
    for cell in cells {
        assert!(
            !cell.contains('|'),
            "{}: a cell holds '|': {cell}",
            var.name
        );
    }
    format!("| {} |\n", cells.join(" | "))
}

/// Every command a variable names is one pgbak has.
#[test]
fn every_variable_names_real_commands() {
    let root = Cli::command();
    let commands: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
    for var in ALL {
        for command in var.commands {
            assert!(
                *command == "all" || commands.contains(command),
                "{}: no command {command:?} (commands: {commands:?})",
                var.name
            );
        }
    }
}

/// Every variable a flag reads is in the registry (so it is on the page).
#[test]
fn every_variable_a_flag_reads_is_in_the_registry() {
    for env in flags().keys() {
        assert!(
            ALL.iter().any(|v| v.name == env),
            "{env} is read by a flag but not in settings::vars::ALL"
        );
    }
}
