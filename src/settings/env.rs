//! The process environment as pgbak reads it: the only module that reads
//! `std::env`. At startup ([`startup`]) the environment file and the `*_FILE`
//! secrets are loaded, once, before any thread exists; after that the
//! environment is one read-only snapshot ([`env`]) in which an empty value
//! counts as unset (`BACKUP_KEEP=` means the default, as `${BACKUP_KEEP:-7}`
//! did in the scripts), and the command line is parsed against it ([`parse`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};

use super::env_file::parse_env_file;
use super::vars;

/// A snapshot of environment variables. Empty values are kept (so callers
/// can tell a child to drop them) but read as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
}

impl Env {
    /// The process environment as it is now.
    fn capture() -> Env {
        Env {
            vars: std::env::vars_os().collect(),
        }
    }

    /// An environment made of `pairs` (tests, and parsers fed a map).
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`; None when unset, empty or not UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)?.to_str().map(str::to_owned)
    }

    /// The value of `name` as the OS gave it; None when unset or empty.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .get(OsStr::new(name))
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether `name` is set to the empty string (and so read as unset).
    fn is_empty_set(&self, name: &OsStr) -> bool {
        self.vars.get(name).is_some_and(|v| v.is_empty())
    }

    /// Every variable name, set or empty (a child must not inherit either).
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.vars.keys().map(OsString::as_os_str)
    }

    /// Lookup by name, the shape the pure parsers ([`crate::pg::url`]) take.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name)
    }
}

static SNAPSHOT: OnceLock<Env> = OnceLock::new();

/// The environment of this run, captured on first use (after [`startup`]).
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

/// Before anything else, while the process is still single-threaded: loads
/// the environment file of a `pgbak cron` command line (its `--env-file`,
/// else `PGBAK_ENV_FILE`) and the `*_FILE` secrets into the environment,
/// where the client tools and the AWS SDK read them too. This is the one
/// place pgbak writes its own environment. A bad environment file is
/// remembered for cron to report ([`env_file_error`]); a bad secret file is
/// an error (exit 2).
pub fn startup(argv: &[OsString]) -> Result<(), String> {
    if crate::commands::cron::is_cron(argv) {
        let path = crate::commands::cron::env_file_flag(argv).or_else(|| {
            std::env::var_os(vars::PGBAK_ENV_FILE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = path {
            if let Err(err) = load_env_file(&path) {
                let _ = ENV_FILE_ERROR.set(crate::error::one_line(&err));
            }
        }
    }
    load_secret_files()
}

fn unset_or_empty(name: &str) -> bool {
    std::env::var_os(name).is_none_or(|v| v.is_empty())
}

/// Loads `path` into the process environment, leaving variables that are
/// already set (and not empty) alone: the environment wins over the file.
/// Lines that do not parse are skipped and reported (by number).
fn load_env_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the environment file {}", path.display()))?;
    let (pairs, bad) = parse_env_file(&text);
    for (key, value) in pairs {
        if !value.is_empty() && unset_or_empty(&key) {
            std::env::set_var(&key, value);
        }
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

/// Sets each variable of [`vars::SECRET_VARS`] that is unset from its `_FILE`
/// (trailing newlines dropped). A variable set directly wins over its file.
fn load_secret_files() -> Result<(), String> {
    for name in vars::SECRET_VARS {
        let file_var = format!("{name}_FILE");
        let Some(path) = std::env::var_os(&file_var).filter(|p| !p.is_empty()) else {
            continue;
        };
        if !unset_or_empty(name) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{file_var}={}: cannot read it: {e}",
                Path::new(&path).display()
            )
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!(
                "{file_var}={}: the file is empty",
                Path::new(&path).display()
            ));
        }
        std::env::set_var(name, value);
    }
    Ok(())
}

/// Parses `argv` as `T` (the whole [`crate::cli::Cli`], or cron's reporting
/// part alone) against [`env`]: a flag's variable that is set but empty is
/// ignored, so the flag falls back to its default instead of failing to parse.
pub fn parse<T: CommandFactory + FromArgMatches>(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<T, clap::Error> {
    let command = ignore_empty_env(T::command(), env());
    let mut matches = command.try_get_matches_from(argv)?;
    T::from_arg_matches_mut(&mut matches).map_err(|err| err.format(&mut T::command()))
}

fn ignore_empty_env(command: clap::Command, env: &Env) -> clap::Command {
    let command = command.mut_args(|arg| {
        if arg.get_env().is_some_and(|name| env.is_empty_set(name)) {
            arg.env(None::<&'static str>)
        } else {
            arg
        }
    });
    command.mut_subcommands(|sub| ignore_empty_env(sub, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_read_as_unset() {
        let env = Env::from_pairs([("A", "1"), ("EMPTY", ""), ("PATH", "/a:/b")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("EMPTY"), None);
        assert_eq!(env.get("MISSING"), None);
        assert!(env.is_empty_set(OsStr::new("EMPTY")));
        assert!(!env.is_empty_set(OsStr::new("A")));
        assert_eq!(env.names().count(), 3);
    }

    #[test]
    fn an_empty_variable_leaves_the_flag_at_its_default() {
        use clap::{Arg, Command};
        let command = || {
            Command::new("pgbak")
                .arg(Arg::new("keep").long("keep").env("PGBAK_TEST_KEEP"))
                .subcommand(
                    Command::new("run").arg(Arg::new("dir").long("dir").env("PGBAK_TEST_DIR")),
                )
        };
        let env_of = |c: &Command, id: &str| {
            c.get_arguments()
                .find(|a| a.get_id().as_str() == id)
                .and_then(|a| a.get_env().map(OsStr::to_owned))
        };
        let env = Env::from_pairs([("PGBAK_TEST_KEEP", ""), ("PGBAK_TEST_DIR", "")]);
        let cleared = ignore_empty_env(command(), &env);
        assert_eq!(env_of(&cleared, "keep"), None);
        let run = cleared.find_subcommand("run").expect("run");
        assert_eq!(env_of(run, "dir"), None);
        let set = Env::from_pairs([("PGBAK_TEST_KEEP", "3")]);
        let untouched = ignore_empty_env(command(), &set);
        assert_eq!(
            env_of(&untouched, "keep").as_deref(),
            Some(OsStr::new("PGBAK_TEST_KEEP"))
        );
    }
}
