//! The environment as pgbak reads it: the only module that reads
//! `std::env`, and it never writes it. At startup ([`startup`]) one snapshot
//! is built, before anything else reads it: the process environment, plus
//! the environment file's values (`pgbak cron --env-file`) for names the
//! process leaves unset or empty, plus the `*_FILE` secrets for variables
//! that are unset. After that the snapshot ([`env`]) is the environment: an
//! empty value counts as unset (`BACKUP_KEEP=` means the default, as
//! `${BACKUP_KEEP:-7}` did in the scripts), the command line is parsed
//! against it ([`parse`]), children start from it
//! ([`crate::children::command`]) and the AWS SDK is told what it holds
//! ([`crate::settings::s3`]). pgbak's own process environment stays as it
//! was inherited.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::env_file::parse_env_file;
use super::vars;

/// A snapshot of environment variables. Empty values are kept (so callers
/// can tell a child to drop them) but read as unset.
#[derive(Clone, Default)]
pub struct Env {
    /// The process's own variables, as inherited (empty ones included).
    process: BTreeMap<OsString, OsString>,
    /// Values loaded at startup (the environment file, `*_FILE` secrets)
    /// for names the process leaves unset or empty.
    loaded: BTreeMap<OsString, OsString>,
}

/// Names only: the values may be secrets.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("process", &self.process.keys().collect::<Vec<_>>())
            .field("loaded", &self.loaded.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    /// The process environment as it is now.
    fn capture() -> Env {
        Env {
            process: std::env::vars_os().collect(),
            loaded: BTreeMap::new(),
        }
    }

    /// An environment made of `pairs` (tests, and parsers fed a map).
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            process: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            loaded: BTreeMap::new(),
        }
    }

    /// The value of `name`; None when unset, empty or not UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)?.to_str().map(str::to_owned)
    }

    /// An environment whose `pairs` were loaded at startup, as an
    /// environment file's are: the command line parsed against it
    /// ([`parse_with`]) sees them as the flags' values, as it would the
    /// process's. For tests of the settings.
    #[cfg(test)]
    pub(crate) fn loaded<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        let mut env = Env::default();
        for (name, value) in pairs {
            env.fill(name.as_ref(), value.as_ref());
        }
        env
    }

    /// A boolean variable, read by the one parser ([`super::parse_bool`]):
    /// None when unset or empty; a usage error (exit 2) naming the variable
    /// when it is not a boolean.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.get(name)
            .map(|value| {
                super::parse_bool(&value)
                    .map_err(|why| crate::error::usage(format!("{name}={value:?}: {why}")))
            })
            .transpose()
    }

    /// A duration variable (`90s`, `10m`, or plain seconds): None when unset
    /// or empty; zero only where `zero_ok`; a usage error naming the variable.
    pub fn duration(&self, name: &str, zero_ok: bool) -> Result<Option<Duration>> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match text.trim().parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(text.trim()).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(d) if d.is_zero() && !zero_ok => Err(crate::error::usage(format!(
                "{name}={text:?}: must be more than zero"
            ))),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(crate::error::usage(format!(
                "{name}={text:?}: {e} (expected e.g. 90s, 10m, 2h)"
            ))),
        }
    }

    /// A byte count variable (more than zero): None when unset or empty; a
    /// usage error naming the variable.
    pub fn byte_count(&self, name: &str) -> Result<Option<u64>> {
        self.get(name)
            .map(|text| {
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        crate::error::usage(format!("{name}={text:?} is not a byte count"))
                    })
            })
            .transpose()
    }

    /// The value of `name` as the OS gave it; None when unset or empty.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.value(OsStr::new(name))
    }

    fn value(&self, name: &OsStr) -> Option<&OsStr> {
        self.loaded
            .get(name)
            .or_else(|| self.process.get(name))
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether the process sets `name` to the empty string (which clap
    /// would read as a value).
    fn empty_in_process(&self, name: &OsStr) -> bool {
        self.process.get(name).is_some_and(|v| v.is_empty())
    }

    /// Every variable name, set or empty (a child must not inherit either).
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.vars_os().map(|(name, _)| name)
    }

    /// Every variable with its value, empty ones included: what a child
    /// inherits. A loaded value replaces the process's empty one.
    pub fn vars_os(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.process
            .iter()
            .filter(|(name, _)| !self.loaded.contains_key(*name))
            .chain(&self.loaded)
            .map(|(name, value)| (name.as_os_str(), value.as_os_str()))
    }

    /// Lookup by name, the shape the pure parsers ([`crate::pg::url`]) take.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name)
    }

    /// Sets `name` to `value` unless it is already set: what the process
    /// (or an earlier source) gives wins.
    fn fill(&mut self, name: &str, value: &str) {
        if !value.is_empty() && self.get_os(name).is_none() {
            self.loaded.insert(name.into(), value.into());
        }
    }

    /// Adds the values of the environment file at `path` (see [`Env::fill`]).
    /// Lines that do not parse are skipped and reported (by number).
    fn load_env_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the environment file {}", path.display()))?;
        let (pairs, bad) = parse_env_file(&text);
        for (name, value) in pairs {
            self.fill(&name, &value);
        }
        if !bad.is_empty() {
            let lines: Vec<String> = bad.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "the environment file {} has lines that are not KEY=value: line {} \
                 (systemd EnvironmentFile= syntax; no `export`)",
                path.display(),
                lines.join(", ")
            );
        }
        Ok(())
    }

    /// Sets each variable of [`vars::SECRET_VARS`] that is unset from its
    /// `_FILE` (trailing newlines dropped). A variable set directly wins
    /// over its file; an unreadable or empty file is an error.
    fn load_secret_files(&mut self) -> Result<(), String> {
        for name in vars::SECRET_VARS {
            let file_var = format!("{name}_FILE");
            let Some(path) = self.get_os(&file_var).map(PathBuf::from) else {
                continue;
            };
            if self.get_os(name).is_some() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{file_var}={}: cannot read it: {e}", path.display()))?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(format!("{file_var}={}: the file is empty", path.display()));
            }
            self.fill(name, value);
        }
        Ok(())
    }
}

static SNAPSHOT: OnceLock<Env> = OnceLock::new();

/// The environment of this run, as [`startup`] built it (the bare process
/// environment where startup never ran: the crate used as a library).
pub fn env() -> &'static Env {
    SNAPSHOT.get_or_init(Env::capture)
}

/// One variable of this run's environment (empty reads as unset).
pub fn var(name: &str) -> Option<String> {
    env().get(name)
}

/// The directories of `PATH`, in order.
pub fn path_dirs() -> Vec<PathBuf> {
    env()
        .get_os(vars::PATH)
        .map(|path| std::env::split_paths(path).collect())
        .unwrap_or_default()
}

/// The first `name` that is a file in a `PATH` directory.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The user's home directory (`HOME`), where libpq looks for `.pgpass` and
/// `.postgresql/`.
pub fn home_dir() -> Option<PathBuf> {
    env().get_os(vars::HOME).map(PathBuf::from)
}

/// The directory for temporary files: `TMPDIR`, else `/tmp`.
pub fn temp_dir() -> PathBuf {
    env()
        .get_os(vars::TMPDIR)
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// The command line of this process.
pub fn argv() -> Vec<OsString> {
    std::env::args_os().collect()
}

/// What went wrong loading the environment file; reported by `pgbak cron`
/// as a configuration error once it can log and alert.
static ENV_FILE_ERROR: OnceLock<String> = OnceLock::new();

/// The environment file's load failure, if any.
pub fn env_file_error() -> Option<&'static str> {
    ENV_FILE_ERROR.get().map(String::as_str)
}

/// Builds this run's environment, before anything reads it ([`env`]): the
/// process environment, then the environment file of a `pgbak cron` command
/// line, or of one of the commands run by hand beside it (list, check,
/// prune, unpin, verify, restore, backup): its `--env-file`, else
/// `PGBAK_ENV_FILE`; then the `*_FILE` secrets. A bad environment file is
/// remembered for cron to report ([`env_file_error`]) and an error (exit 2)
/// for the others; a bad secret file is an error (exit 2).
pub fn startup(argv: &[OsString]) -> Result<(), String> {
    use super::command_line::{command as argv_command, env_file_flag, ENV_FILE_COMMANDS};
    let mut env = Env::capture();
    let command = argv_command(argv).filter(|c| ENV_FILE_COMMANDS.contains(&c.as_str()));
    if let Some(command) = command {
        let path =
            env_file_flag(argv).or_else(|| env.get_os(vars::PGBAK_ENV_FILE).map(PathBuf::from));
        if let Some(path) = path {
            if let Err(err) = env.load_env_file(&path) {
                let message = crate::error::one_line(&err);
                if command != "cron" {
                    return Err(message);
                }
                let _ = ENV_FILE_ERROR.set(message);
            }
        }
    }
    env.load_secret_files()?;
    SNAPSHOT
        .set(env)
        .map_err(|_| "internal error: the environment was read before it was loaded".to_owned())
}

/// Parses `argv` as `T` (the whole [`crate::cli::Cli`], or cron's reporting
/// part alone) against this run's environment ([`env`]); see [`parse_with`].
pub fn parse<T: CommandFactory + FromArgMatches>(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<T, clap::Error> {
    parse_with(argv, env())
}

/// Parses `argv` as `T` against `env`. clap reads each flag's variable
/// (`Arg::env`) from the process environment itself, so the command is
/// adjusted first ([`with_snapshot`]), and the conflicts clap cannot see
/// are checked after ([`check_loaded_conflicts`]). Precedence: flag,
/// environment, environment file (or `*_FILE`), default.
pub fn parse_with<T: CommandFactory + FromArgMatches>(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    env: &Env,
) -> Result<T, clap::Error> {
    let mut command = with_snapshot(T::command(), env);
    let mut matches = command.try_get_matches_from_mut(argv)?;
    check_loaded_conflicts(&command, &matches, env).map_err(|err| err.format(&mut command))?;
    T::from_arg_matches_mut(&mut matches).map_err(|err| err.format(&mut T::command()))
}

/// Points each flag's variable at `env`: a variable the process sets to ""
/// is hidden from clap (the flag falls back to its default instead of
/// failing to parse), and a value loaded at startup becomes the flag's
/// default, which the command line still overrides (its help hides it
/// where the flag hides its environment value: it may be a secret).
fn with_snapshot(command: clap::Command, env: &Env) -> clap::Command {
    let command = command.mut_args(|arg| {
        let Some(name) = arg.get_env().map(OsStr::to_owned) else {
            return arg;
        };
        let arg = if env.empty_in_process(&name) {
            arg.env(None::<&str>)
        } else {
            arg
        };
        let Some(value) = env.loaded.get(&name) else {
            return arg;
        };
        let hide = arg.is_hide_env_values_set() && arg.get_action().takes_values();
        let arg = arg.default_value(value.clone());
        if hide {
            arg.hide_default_value(true)
        } else {
            arg
        }
    });
    command.mut_subcommands(|sub| with_snapshot(sub, env))
}

/// clap counts a default as not given, so it cannot see a conflict (such as
/// `verify --ephemeral` with `PGBAK_VERIFY_TARGET_URL`) when one side comes
/// from the environment file or a `*_FILE` secret: judged here as clap
/// judges the same value from the process environment (exit 2).
fn check_loaded_conflicts(
    command: &clap::Command,
    matches: &ArgMatches,
    env: &Env,
) -> Result<(), clap::Error> {
    let loaded = |arg: &clap::Arg| arg.get_env().is_some_and(|n| env.loaded.contains_key(n));
    let given = |arg: &clap::Arg| match matches.value_source(arg.get_id().as_str()) {
        Some(ValueSource::DefaultValue) => loaded(arg),
        Some(_) => true,
        None => false,
    };
    let describe = |arg: &clap::Arg| {
        let flag = arg
            .get_long()
            .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
        match arg.get_env().filter(|_| loaded(arg)) {
            Some(name) => format!("'{flag}' (from {})", name.to_string_lossy()),
            None => format!("'{flag}'"),
        }
    };
    for arg in command.get_arguments() {
        for other in command.get_arg_conflicts_with(arg) {
            if (loaded(arg) || loaded(other)) && given(arg) && given(other) {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "the argument {} cannot be used with {}\n",
                        describe(arg),
                        describe(other)
                    ),
                ));
            }
        }
    }
    match matches.subcommand() {
        Some((name, sub_matches)) => match command.find_subcommand(name) {
            Some(sub) => check_loaded_conflicts(sub, sub_matches, env),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
