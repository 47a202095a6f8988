//! The `pgbak` binary: parse the command line, run it, turn the outcome into an exit code.

#![deny(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any secret is read (environment file, *_FILE, identities).
    if let Err(why) = pgbak::hardening::no_core_dumps() {
        eprintln!("pgbak: warning: core dumps stay enabled: {why}");
    }
    let argv = pgbak::settings::argv();
    // First, before anything reads `settings::env()`: the environment file
    // and the *_FILE secrets go into this run's snapshot of the environment
    // (never into the process's), which the command line is parsed against
    // and every child and the AWS SDK are given. A read before this point
    // would fix the snapshot without them, and startup would fail.
    if let Err(message) = pgbak::settings::startup(&argv) {
        eprintln!("pgbak: error: {message}");
        return ExitCode::from(pgbak::error::USAGE);
    }
    let parsed = pgbak::settings::parse::<pgbak::cli::Cli>(&argv);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("pgbak: error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = match parsed {
        Ok(cli) => runtime.block_on(pgbak::run(cli)),
        // A cron run with a bad setting is still logged, alerted and counted.
        Err(err) if err.use_stderr() && pgbak::settings::command_line::is_cron(&argv) => {
            runtime.block_on(pgbak::commands::cron::unparsed(&argv, err))
        }
        // A bad value from the environment: say which variable held it.
        Err(err) => match pgbak::settings::refusal::environment_refusal(&argv, &err) {
            Some(line) => {
                eprintln!("error: {line}");
                return ExitCode::from(pgbak::error::USAGE);
            }
            None => err.exit(),
        },
    };
    // Children are killed on drop; do not wait for stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(code) => code,
        Err(err) => {
            pgbak::ui::error(&pgbak::error::one_line(&err));
            ExitCode::from(pgbak::error::exit_code(&err))
        }
    }
}
