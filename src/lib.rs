//! pgbak: logical backups of PostgreSQL (+ pgvector) that are proven to restore.
//!
//! The binary is thin; [`run`] dispatches a parsed [`cli::Cli`] to one module of
//! [`commands`] per subcommand (`backup/all.rs` and `restore/all.rs` take a whole server
//! with `--all-databases`, and `commands::globals` is the roles backup). Shared parts sit beside them:
//! - [`cli`] declares the command line; [`settings`] reads the environment (the only module
//!   that does) and resolves each command's settings once, at dispatch (flag > environment >
//!   default);
//! - [`archive`] finds a backup and checks it (meta.json, SHA-256, header) before verify/restore;
//! - [`pg`] parses `DATABASE_URL`, talks to the server, finds and runs the client tools,
//!   re-applies a database's own properties (`pg::dbprops`) and replays globals (`pg::globals`);
//! - [`pipeline`] streams pg_dump's output through hashing (and [`encryption`]) into the file (and S3) sinks;
//! - [`encryption`] parses age recipients and identities, and decrypts for pg_restore;
//! - [`storage`] names and lists the backup set on local disk;
//! - [`meta`] is the meta.json written beside every dump;
//! - [`retention`] decides, as a pure function, which backups to keep and which
//!   rule keeps them, and applies that to any [`storage::Store`];
//! - [`anomaly`] compares a new backup with the previous one (pin on collapse);
//! - [`children`] marks the processes pgbak starts and stops those a killed run left behind;
//! - [`lock`] keeps two cron runs from overlapping; [`alert`], [`heartbeat`] and [`metrics`] report them;
//! - [`ui`] prints timestamped lines (or a progress bar on a terminal), scrubbed by the
//!   [`ui::Redactor`] that [`settings::secrets`] builds once, at dispatch, from every secret
//!   the settings hold; the same redactor is handed to what builds alert and heartbeat bodies.
//!
//! System calls go through safe wrappers (`rustix`, `nix` for the user database): `unsafe`
//! is denied crate-wide and allowed only where `layout::unsafe_only_where_justified` lists it.

#![deny(unsafe_code)]

pub mod alert;
pub mod anomaly;
pub mod archive;
pub mod children;
pub mod cli;
pub mod commands;
pub mod encryption;
pub mod error;
pub mod hardening;
pub mod heartbeat;
pub mod lock;
pub mod meta;
pub mod metrics;
pub mod mode;
pub mod pg;
pub mod pipeline;
pub mod retention;
pub mod runs;
pub mod settings;
pub mod signals;
pub mod signing;
pub mod storage;
pub mod ui;
pub mod version;

use std::process::ExitCode;

/// Stops the children a dead pgbak left running and removes its downloads
/// ([`children::stop_leftovers`], [`archive::fetch_dir::sweep`]).
async fn sweep_leftovers() {
    children::stop_leftovers().await;
    let _ = tokio::task::spawn_blocking(archive::fetch_dir::sweep).await;
}

/// Runs one parsed command line and returns the process exit code.
/// Each command's settings are resolved here, once, before it runs
/// ([`settings::commands`]).
pub async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    use settings::backup::BackupSettings;
    use settings::commands::{GlobalSettings, KeygenSettings, ListSettings};
    use settings::commands::{PruneSettings, UnpinSettings};
    use settings::cron::CronSettings;
    use settings::destinations::ToFlags;
    use settings::{check::CheckSettings, restore::RestoreSettings, verify::VerifySettings};
    use storage::Stores;
    let global =
        GlobalSettings::resolve_for(&cli.global, &cli.command, settings::secrets::redactor(&cli));
    ui::init(global.verbosity, global.redactor.clone())?;
    if let Some(limit) = global.timeout {
        signals::set_timeout(limit);
    }
    // What dead runs left: restore and verify sweep it first (a leftover
    // pg_restore could still be writing where they are about to); a backup
    // sweeps while it starts, off the path to pg_dump (nothing a dead run left
    // touches what a new backup writes), and waits for the sweep at its end.
    // (cron sweeps after its settings are checked, into its log.)
    if matches!(
        cli.command,
        cli::Command::Restore(_) | cli::Command::Verify(_)
    ) {
        sweep_leftovers().await;
    }
    // Each command's stores are built here, once, from its settings
    // (`storage::Stores`, `storage::Place`): commands talk to them and never
    // build one; an S3 client is made at its store's first request.
    match cli.command {
        cli::Command::Backup(args) => {
            let sweeping = tokio::spawn(sweep_leftovers());
            let backup = async {
                let d = &args.dump;
                let to = ToFlags::new(&d.to, &d.s3, Some(&d.retention), Some(&d.object_lock));
                let settings = BackupSettings::resolve(&global, args)?;
                let job = &settings.plan.job;
                let stores = to.stores(Some(&job.output_dir), job.s3.as_ref())?;
                commands::backup::run(settings, &stores).await
            };
            let done = backup.await;
            let _ = sweeping.await;
            done
        }
        cli::Command::Restore(args) => {
            let source = &args.source;
            let to = ToFlags::new(&source.to, &source.s3, None, None);
            let settings = RestoreSettings::resolve(&global, args)?;
            archive::fetch_dir::use_scratch(settings.options.tuning.decrypt.scratch_dir.as_deref());
            let stores = settings::restore::reading(&to, &settings.restoring.place())?;
            commands::restore::run(settings, stores.destinations()).await
        }
        cli::Command::Verify(args) => {
            let source = &args.source;
            let to = ToFlags::new(&source.to, &source.s3, None, None);
            let settings = VerifySettings::resolve(&global, args)?;
            archive::fetch_dir::use_scratch(settings.options.scratch_dir.as_deref());
            let stores = settings::restore::reading(&to, &settings.backup.place())?;
            if let Some(reproving) = &settings.reprove {
                let store = reproving.place.open();
                let (opts, output) = (&settings.options, settings.output);
                let work = &reproving.work;
                return commands::verify::reprove::run(work, opts, output, &store).await;
            }
            commands::verify::run(settings, stores.destinations()).await
        }
        cli::Command::Cron(args) => {
            let d = &args.dump;
            let to = ToFlags::new(&d.to, &d.s3, Some(&d.retention), Some(&d.object_lock));
            let mut settings = CronSettings::resolve(&global, *args);
            let stores = match &settings.config {
                Ok(config) => {
                    let job = &config.plan.job;
                    match to.stores(Some(&job.output_dir), job.s3.as_ref()) {
                        Ok(stores) => stores,
                        // (A bad --to is the run's failure, reported as any bad setting.)
                        Err(err) => {
                            settings.config = Err(err);
                            Stores::default()
                        }
                    }
                }
                // (Reported as the run's failure, before anything is opened.)
                Err(_) => Stores::default(),
            };
            commands::cron::run(settings, &stores).await
        }
        cli::Command::List(args) => {
            let to = ToFlags::new(&args.to, &args.s3_args, Some(&args.retention), None);
            let settings = ListSettings::resolve(args)?;
            let stores = to.stores(Some(&settings.backup_dir), settings.s3.as_ref())?;
            commands::list::run(settings, &stores).await
        }
        cli::Command::Check(args) => {
            let to = ToFlags::new(&args.to, &args.s3_args, None, None);
            let settings = CheckSettings::resolve(args)?;
            let stores = to.stores(Some(&settings.backup_dir), settings.s3.as_ref())?;
            commands::check::run(&global, settings, &stores).await
        }
        cli::Command::Keygen(args) => commands::keygen::run(KeygenSettings::resolve(args)),
        cli::Command::Prune(args) => {
            let to = ToFlags::new(&args.to, &args.s3_args, Some(&args.retention), None);
            let settings = PruneSettings::resolve(args)?;
            let stores = to.stores(settings.local.as_deref(), settings.s3.as_ref())?;
            commands::prune::run(settings, &stores).await
        }
        cli::Command::Unpin(args) => {
            let to = ToFlags::new(&args.to, &args.s3_args, None, None);
            let settings = UnpinSettings::resolve(args)?;
            let stores = to.stores(Some(&settings.backup_dir), settings.s3.as_ref())?;
            commands::unpin::run(settings, &stores).await
        }
        cli::Command::Sync(args) => {
            let (r, l) = (Some(&args.retention), Some(&args.object_lock));
            let to = ToFlags::new(&args.to, &args.s3_args, r, l);
            let settings = settings::sync::SyncSettings::resolve(args)?;
            let stores = to.stores(settings.local.as_deref(), settings.s3.as_ref())?;
            commands::sync::run(settings, &stores).await
        }
        cli::Command::Completions(args) => commands::completions::run(args),
        cli::Command::Man(args) => commands::man::run(args),
    }
}

/// The layout rules ARCHITECTURE.md states, checked on the source tree.
#[cfg(test)]
mod layout {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `.rs` file under src/, with its path from src/ and its text.
    fn files() -> Vec<(String, String)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        sources(&src, &mut paths);
        paths
            .into_iter()
            .map(|p| {
                let name = p.strip_prefix(&src).unwrap().display().to_string();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_environment_is_read_only_in_settings_and_never_written() {
        for (name, text) in files() {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                // (Spelled in two halves, so this test does not find itself.)
                let reads = [concat!("env::", "var"), concat!("env::", "args")];
                if !name.starts_with("settings/") {
                    assert!(
                        !reads.iter().any(|r| code.contains(r)),
                        "{name}:{}: reads the environment outside settings/",
                        n + 1
                    );
                }
                assert!(
                    !code.contains(concat!("set_", "var("))
                        && !code.contains(concat!("remove_", "var(")),
                    "{name}:{}: writes the process environment",
                    n + 1
                );
            }
        }
    }

    #[test]
    fn only_settings_and_the_cli_generators_see_the_clap_types() {
        let allowed = ["cli/", "settings/", "lib.rs", "main.rs"];
        let generators = ["commands/completions.rs", "commands/man.rs"];
        for (name, text) in files() {
            if allowed.iter().any(|a| name.starts_with(a)) || generators.contains(&name.as_str()) {
                continue;
            }
            assert!(
                !text.contains("crate::cli"),
                "{name} uses crate::cli: resolve its settings in settings/ instead"
            );
        }
    }

    /// The places in `text` (one file's source) that name the `commands`
    /// module, outside comments: `crate::commands::…`, or `commands` inside
    /// a `crate::{…}` group.
    fn names_commands(text: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut in_group = false;
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let words = || {
                code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|w| w == "commands")
            };
            if code.contains(concat!("crate::", "commands")) || (in_group && words()) {
                found.push(n + 1);
            }
            if let Some(group) = code.split(concat!("crate::", "{")).nth(1) {
                in_group = !group.contains('}');
                if words() && !found.contains(&(n + 1)) {
                    found.push(n + 1);
                }
            } else if code.contains('}') {
                in_group = false;
            }
        }
        found
    }

    #[test]
    fn settings_never_imports_commands() {
        // The rule itself, on planted text: what it must find and what not.
        let planted = [
            (concat!("use crate::", "commands::verify::Target;"), vec![1]),
            (
                concat!("use crate::", "{cli, commands::check::Limits};"),
                vec![1],
            ),
            (
                concat!("use crate::", "{\n    cli,\n    commands,\n};"),
                vec![3],
            ),
            (
                "use super::commands::GlobalSettings; // settings/commands.rs",
                vec![],
            ),
            (
                concat!("// crate::", "commands is named in a comment"),
                vec![],
            ),
        ];
        for (text, want) in planted {
            assert_eq!(names_commands(text), want, "{text}");
        }
        for (name, text) in files() {
            if !name.starts_with("settings/") {
                continue;
            }
            let lines = names_commands(&text);
            assert!(
                lines.is_empty(),
                "{name}:{lines:?} imports from commands/: settings resolve what commands run \
                 with and never depend on them (move the type into settings/, or out of both)"
            );
        }
    }

    #[test]
    fn only_storage_connects_to_s3_or_names_a_backend() {
        // (Spelled in two halves, so this test does not find itself.)
        let connect = concat!("s3::", "connect");
        let variants = [
            concat!("Store::", "Local"),
            concat!("Store::", "S3"),
            concat!("Store::", "Memory"),
        ];
        for (name, text) in files() {
            if name.starts_with("storage/") {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !code.contains(connect),
                    "{name}:{}: connects to S3 outside storage/: use the store built at dispatch",
                    n + 1
                );
                assert!(
                    !variants.iter().any(|v| code.contains(v)),
                    "{name}:{}: names a storage backend outside storage/: ask the store",
                    n + 1
                );
            }
        }
    }

    #[test]
    fn no_source_file_is_over_600_lines() {
        for (name, text) in files() {
            let lines = text.lines().count();
            assert!(lines <= 600, "{name} has {lines} lines: split it by idea");
        }
    }

    /// The `.rs` files under `root` over src/'s cap of 600 lines, as "PATH has N lines".
    fn over_600_lines(root: &Path) -> Vec<String> {
        let mut paths = Vec::new();
        sources(root, &mut paths);
        paths.sort();
        paths
            .into_iter()
            .filter_map(|p| {
                let lines = std::fs::read_to_string(&p).unwrap().lines().count();
                let name = p.strip_prefix(root).unwrap().display();
                (lines > 600).then(|| format!("{name} has {lines} lines"))
            })
            .collect()
    }

    #[test]
    fn no_test_file_is_over_600_lines() {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let over = over_600_lines(&tests);
        assert!(
            over.is_empty(),
            "{over:?}: split by subject or by idea (CONTRIBUTING.md)"
        );
    }

    #[test]
    fn the_test_file_cap_finds_a_planted_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("verify")).unwrap();
        std::fs::write(root.path().join("verify/big.rs"), "//\n".repeat(601)).unwrap();
        std::fs::write(root.path().join("verify/full.rs"), "//\n".repeat(600)).unwrap();
        std::fs::write(root.path().join("notes.txt"), "x\n".repeat(700)).unwrap();
        assert_eq!(over_600_lines(root.path()), ["verify/big.rs has 601 lines"]);
    }

    /// The modules below a subject of tests/it (`SUBJECT/FILE.rs`, `SUBJECT/DIR/`) whose name
    /// ends in another subject's name: `cargo test --test it -- verify::` would run their tests
    /// too (`cron/reverify.rs` is `cron::reverify::`, which the filter `verify::` matches).
    fn filter_clashes(subjects: &[&str], modules: &[(&str, &str)]) -> Vec<String> {
        let mut clashes = Vec::new();
        for (subject, module) in modules {
            for other in subjects.iter().filter(|o| *o != subject) {
                if module.ends_with(other) {
                    clashes.push(format!("{subject}::{module} (matches {other}::)"));
                }
            }
        }
        clashes
    }

    #[test]
    fn a_subject_filter_selects_that_subject_only() {
        let it = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
        let mut subjects = Vec::new();
        let mut modules = Vec::new();
        for entry in std::fs::read_dir(&it).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !path.is_dir() || name == "support" {
                continue;
            }
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                let stem = inner.file_stem().unwrap().to_string_lossy().into_owned();
                if stem != "mod" {
                    modules.push((name.clone(), stem));
                }
            }
            subjects.push(name);
        }
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let modules: Vec<(&str, &str)> = modules
            .iter()
            .map(|(s, m)| (s.as_str(), m.as_str()))
            .collect();
        assert!(subjects.contains(&"verify"), "{subjects:?}");
        let clashes = filter_clashes(&subjects, &modules);
        assert!(clashes.is_empty(), "rename: {clashes:?}");
    }

    #[test]
    fn a_module_named_after_another_subject_is_a_clash() {
        let subjects = ["cron", "verify", "s3"];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case; 4] = [
            (&[("cron", "steps"), ("verify", "cleanup")], &[]),
            (&[("cron", "verify")], &["cron::verify (matches verify::)"]),
            (
                &[("cron", "reverify")],
                &["cron::reverify (matches verify::)"],
            ),
            (
                &[("verify", "from_s3"), ("s3", "s3_fetch")],
                &["verify::from_s3 (matches s3::)"],
            ),
        ];
        for (modules, expected) in cases {
            assert_eq!(filter_clashes(&subjects, modules), expected, "{modules:?}");
        }
    }

    /// Each `unsafe` left in src/, with why no safe wrapper does the job (the
    /// comment at the place says the same). Adding one means adding it here.
    const JUSTIFIED_UNSAFE: &[(&str, usize, &str)] = &[(
        "pg/tools.rs",
        1,
        "die_with_parent: Command::pre_exec, the only way to run prctl(PR_SET_PDEATHSIG) \
         in the child between fork and exec; the hook makes raw syscalls only (rustix)",
    )];

    /// How often the word `unsafe` appears in the code of `text` (comments
    /// left out; a string that spells it counts too: rephrase it).
    fn unsafe_words(text: &str) -> usize {
        let word = concat!("un", "safe");
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        text.lines()
            .map(|line| {
                let code = line.split("//").next().unwrap_or_default();
                code.match_indices(word)
                    .filter(|(at, _)| {
                        !ident(code[..*at].chars().next_back())
                            && !ident(code[at + word.len()..].chars().next())
                    })
                    .count()
            })
            .sum()
    }

    #[test]
    fn unsafe_words_are_counted_in_code_only() {
        let block = concat!("un", "safe { libc::getpid() }");
        let planted = format!("fn f() {{\n    let pid = {block};\n}}\n");
        assert_eq!(unsafe_words(&planted), 1);
        let allowed = concat!(
            "#![deny(un",
            "safe_code)]\n// un",
            "safe here\nlet unsafely = 1;\n"
        );
        assert_eq!(unsafe_words(allowed), 0);
    }

    #[test]
    fn unsafe_only_where_justified() {
        let mut found: Vec<(String, usize)> = files()
            .into_iter()
            .map(|(name, text)| (name, unsafe_words(&text)))
            .filter(|(_, n)| *n > 0)
            .collect();
        found.sort();
        let justified: Vec<(String, usize)> = JUSTIFIED_UNSAFE
            .iter()
            .map(|(name, n, _)| (name.to_string(), *n))
            .collect();
        assert_eq!(
            found, justified,
            "src/ (file, count) against layout::JUSTIFIED_UNSAFE: use a safe wrapper \
             (rustix, nix), or justify the new block in that list and at the place"
        );
    }
}
