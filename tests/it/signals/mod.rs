//! Nothing outlives a killed pgbak, and a stop signal stops it: children die with a SIGKILLed
//! pgbak or are stopped by the next run, SIGTERM ends a run promptly wherever it waits, and thirty
//! cron runs with random faults keep every guarantee. (Signals in one command's own steps are
//! tested with that command: `backup::faults`, `verify::cleanup`, `s3::failures`, ...)

mod children;
mod kill;
mod soak;
mod stop;
