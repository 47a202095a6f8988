//! How pgbak is configured: the environment file and the `*_FILE` secrets (read into pgbak's own
//! snapshot, never exported), `--env-file` for the ad-hoc commands, help that shows only what a
//! command uses, and the completions and man page generated from the same definitions.

mod command_line;
mod environment;
