//! pgbak: logical backups of PostgreSQL (+ pgvector) that are proven to restore.
//!
//! The binary is thin; [`run`] dispatches a parsed [`cli::Cli`] to one module of
//! [`commands`] per subcommand (plus `commands::cluster`, a whole server at once with
//! `--all-databases`, and `commands::globals`, the roles backup). Shared parts sit beside them:
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
//!   rule keeps them, and applies that to any [`storage::BackupStore`];
//! - [`anomaly`] compares a new backup with the previous one (pin on collapse);
//! - [`children`] marks the processes pgbak starts and stops those a killed run left behind;
//! - [`lock`] keeps two cron runs from overlapping; [`alert`], [`heartbeat`] and [`metrics`] report them;
//! - [`ui`] prints timestamped lines (or a progress bar on a terminal), scrubbed by the
//!   [`ui::Redactor`] that [`settings::secrets`] builds once, at dispatch, from every secret
//!   the settings hold; the same redactor is handed to what builds alert and heartbeat bodies.

pub mod alert;
pub mod anomaly;
pub mod archive;
pub mod children;
pub mod cli;
pub mod commands;
pub mod encryption;
pub mod error;
pub mod heartbeat;
pub mod lock;
pub mod meta;
pub mod metrics;
pub mod mode;
pub mod pg;
pub mod pipeline;
pub mod retention;
pub mod settings;
pub mod signals;
pub mod storage;
pub mod ui;

use std::process::ExitCode;

/// Runs one parsed command line and returns the process exit code.
/// Each command's settings are resolved here, once, before it runs
/// ([`settings::commands`]).
pub async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    use settings::backup::BackupSettings;
    use settings::commands::{GlobalSettings, KeygenSettings, ListSettings};
    use settings::commands::{PruneSettings, UnpinSettings};
    use settings::cron::CronSettings;
    let global = GlobalSettings::resolve(&cli.global, settings::secrets::redactor(&cli));
    ui::init(global.verbosity, global.redactor.clone())?;
    if let Some(limit) = global.timeout {
        signals::set_timeout(limit);
    }
    if matches!(
        cli.command,
        cli::Command::Backup(_) | cli::Command::Restore(_) | cli::Command::Verify(_)
    ) {
        // (cron sweeps after its settings are checked, into its log.)
        children::stop_leftovers().await;
    }
    match cli.command {
        cli::Command::Backup(args) => {
            commands::backup::run(BackupSettings::resolve(&global, args)?).await
        }
        cli::Command::Restore(args) => commands::restore::run(&global, args).await,
        cli::Command::Verify(args) => commands::verify::run(&global, args).await,
        cli::Command::Cron(args) => {
            commands::cron::run(CronSettings::resolve(&global, *args)).await
        }
        cli::Command::List(args) => commands::list::run(ListSettings::resolve(args)?).await,
        cli::Command::Check(args) => commands::check::run(&global, args).await,
        cli::Command::Keygen(args) => commands::keygen::run(KeygenSettings::resolve(args)),
        cli::Command::Prune(args) => commands::prune::run(PruneSettings::resolve(args)?).await,
        cli::Command::Unpin(args) => commands::unpin::run(UnpinSettings::resolve(args)?).await,
        cli::Command::Completions(args) => commands::completions::run(args),
        cli::Command::Man => commands::man::run(),
    }
}
