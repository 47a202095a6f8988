use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::*;

/// A file of its own under the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("pgbak-env-test-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("writing a test file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn empty_values_read_as_unset() {
    let env = Env::from_pairs([("A", "1"), ("EMPTY", ""), ("PATH", "/a:/b")]);
    assert_eq!(env.get("A").as_deref(), Some("1"));
    assert_eq!(env.get("EMPTY"), None);
    assert_eq!(env.get("MISSING"), None);
    assert!(env.empty_in_process(OsStr::new("EMPTY")));
    assert!(!env.empty_in_process(OsStr::new("A")));
    assert_eq!(env.names().count(), 3);
}

#[test]
fn the_environment_wins_over_the_env_file_which_fills_unset_and_empty_names() {
    let file = TempFile::new(
        "env-file",
        "SET=from-file\nEMPTY=from-file\nNEW=from-file\nBLANK=\nexport BAD=1\n",
    );
    let mut env = Env::from_pairs([("SET", "from-process"), ("EMPTY", "")]);
    let err = env
        .load_env_file(&file.0)
        .expect_err("line 5 is not KEY=value");
    assert!(err.to_string().contains("line 5"), "{err}");
    assert_eq!(env.get("SET").as_deref(), Some("from-process"));
    assert_eq!(env.get("EMPTY").as_deref(), Some("from-file"));
    assert_eq!(env.get("NEW").as_deref(), Some("from-file"));
    assert_eq!(env.get("BLANK"), None);
    // A child gets the file's value instead of the process's empty one.
    let child: BTreeMap<&OsStr, &OsStr> = env.vars_os().collect();
    assert_eq!(child.len(), 3);
    assert_eq!(child[OsStr::new("EMPTY")], OsStr::new("from-file"));
    assert_eq!(child[OsStr::new("SET")], OsStr::new("from-process"));
    let missing = env.load_env_file(Path::new("/nonexistent/pgbak.env"));
    assert!(missing.is_err());
}

#[test]
fn a_secret_file_fills_only_an_unset_variable() {
    let url = TempFile::new("url", "postgresql://u:p@h/db\r\n\n");
    let password = TempFile::new("password", "from-file\n");
    let mut env = Env::from_pairs([
        ("PGPASSWORD", "from-process".into()),
        ("PGPASSWORD_FILE", password.0.clone().into_os_string()),
    ]);
    // The _FILE variable may itself come from the environment file.
    env.fill("DATABASE_URL_FILE", &url.0.display().to_string());
    env.load_secret_files().expect("readable secret files");
    assert_eq!(
        env.get("DATABASE_URL").as_deref(),
        Some("postgresql://u:p@h/db")
    );
    assert_eq!(env.get("PGPASSWORD").as_deref(), Some("from-process"));

    let empty = TempFile::new("empty", "\n");
    let mut env = Env::from_pairs([("HEARTBEAT_URL_FILE", &empty.0)]);
    let err = env.load_secret_files().expect_err("an empty secret file");
    assert_eq!(
        err,
        format!(
            "HEARTBEAT_URL_FILE={}: the file is empty",
            empty.0.display()
        )
    );
    let mut env = Env::from_pairs([("AWS_SESSION_TOKEN_FILE", "/nonexistent/token")]);
    let err = env.load_secret_files().expect_err("a missing secret file");
    assert!(
        err.starts_with("AWS_SESSION_TOKEN_FILE=/nonexistent/token: cannot read it: "),
        "{err}"
    );
}

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long, env = "PGBAK_TEST_KEEP", default_value_t = 7)]
    keep: u32,
    #[arg(long = "exclude", env = "PGBAK_TEST_EXCLUDE", value_delimiter = ',')]
    exclude: Vec<String>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    Verify {
        #[arg(long, env = "PGBAK_TEST_TARGET_URL", hide_env_values = true)]
        target_url: Option<String>,
        #[arg(long, conflicts_with = "target_url")]
        ephemeral: bool,
        #[arg(
            long,
            env = "PGBAK_TEST_PAUSE",
            value_parser = crate::settings::parse_bool,
            action = clap::ArgAction::SetTrue
        )]
        pause: bool,
    },
}

fn loaded(pairs: &[(&str, &str)]) -> Env {
    let mut env = Env::default();
    for (name, value) in pairs {
        env.fill(name, value);
    }
    env
}

fn parse_cli(argv: &[&str], env: &Env) -> Result<Cli, clap::Error> {
    parse_with::<Cli>(std::iter::once("pgbak").chain(argv.iter().copied()), env)
}

#[test]
fn a_loaded_value_is_under_the_flag_and_over_the_default() {
    let none = Env::default();
    assert_eq!(parse_cli(&[], &none).unwrap().keep, 7);
    let env = loaded(&[
        ("PGBAK_TEST_KEEP", "5"),
        ("PGBAK_TEST_TARGET_URL", "postgresql://u:secret@h/db"),
        ("PGBAK_TEST_PAUSE", "yes"),
    ]);
    assert_eq!(parse_cli(&[], &env).unwrap().keep, 5);
    // A list splits as the variable's value would.
    let list = loaded(&[("PGBAK_TEST_EXCLUDE", "template*,scratch")]);
    assert_eq!(
        parse_cli(&[], &list).unwrap().exclude,
        ["template*", "scratch"]
    );
    assert_eq!(
        parse_cli(&["--exclude", "x"], &list).unwrap().exclude,
        ["x"]
    );
    assert_eq!(parse_cli(&["--keep", "9"], &env).unwrap().keep, 9);
    let cli = parse_cli(&["verify"], &env).unwrap();
    let Some(Sub::Verify {
        target_url, pause, ..
    }) = cli.command
    else {
        panic!("verify")
    };
    assert_eq!(target_url.as_deref(), Some("postgresql://u:secret@h/db"));
    assert!(pause);
    let bad = loaded(&[("PGBAK_TEST_KEEP", "many")]);
    let err = parse_cli(&[], &bad).expect_err("not a number");
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
}

#[test]
fn help_never_shows_a_loaded_secret() {
    let env = loaded(&[
        ("PGBAK_TEST_KEEP", "5"),
        ("PGBAK_TEST_TARGET_URL", "postgresql://u:secret@h/db"),
    ]);
    let help = parse_cli(&["verify", "--help"], &env)
        .expect_err("help")
        .to_string();
    assert!(help.contains("--target-url"), "{help}");
    assert!(!help.contains("secret"), "{help}");
    let help = parse_cli(&["--help"], &env).expect_err("help").to_string();
    assert!(help.contains("[default: 5]"), "{help}");
}

#[test]
fn a_loaded_value_conflicts_as_the_same_variable_would() {
    let env = loaded(&[("PGBAK_TEST_TARGET_URL", "postgresql://h/db")]);
    let err = parse_cli(&["verify", "--ephemeral"], &env).expect_err("a conflict");
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    assert!(
        err.to_string().contains(
            "'--ephemeral' cannot be used with '--target-url' (from PGBAK_TEST_TARGET_URL)"
        ),
        "{err}"
    );
    assert!(parse_cli(&["verify"], &env).is_ok());
    assert!(parse_cli(&["verify", "--ephemeral"], &Env::default()).is_ok());
    // The flag itself wins over its loaded value, and still conflicts.
    let err = parse_cli(
        &["verify", "--ephemeral", "--target-url", "postgresql://x/y"],
        &env,
    )
    .expect_err("a conflict on the command line");
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn an_empty_variable_leaves_the_flag_at_its_default() {
    use clap::{Arg, Command};
    let command = || {
        Command::new("pgbak")
            .arg(Arg::new("keep").long("keep").env("PGBAK_TEST_KEEP"))
            .subcommand(Command::new("run").arg(Arg::new("dir").long("dir").env("PGBAK_TEST_DIR")))
    };
    let env_of = |c: &Command, id: &str| {
        c.get_arguments()
            .find(|a| a.get_id().as_str() == id)
            .and_then(|a| a.get_env().map(OsStr::to_owned))
    };
    let env = Env::from_pairs([("PGBAK_TEST_KEEP", ""), ("PGBAK_TEST_DIR", "")]);
    let cleared = with_snapshot(command(), &env);
    assert_eq!(env_of(&cleared, "keep"), None);
    let run = cleared.find_subcommand("run").expect("run");
    assert_eq!(env_of(run, "dir"), None);
    let set = Env::from_pairs([("PGBAK_TEST_KEEP", "3")]);
    let untouched = with_snapshot(command(), &set);
    assert_eq!(
        env_of(&untouched, "keep").as_deref(),
        Some(OsStr::new("PGBAK_TEST_KEEP"))
    );
}
