//! The `pgbak` binary: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pgbak::cli::drop_empty_env();
    if let Err(message) = pgbak::cli::load_secret_files() {
        eprintln!("pgbak: error: {message}");
        return ExitCode::from(pgbak::error::USAGE);
    }
    let cli = pgbak::cli::Cli::parse();
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
    let outcome = runtime.block_on(pgbak::run(cli));
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
