//! How pgbak is configured: the environment file and the `*_FILE` secrets (read into pgbak's own
//! snapshot, never exported), `--env-file` for the ad-hoc commands, the one strict rule for boolean
//! variables and the `--no-x` flags, help that shows only what a command uses, the completions and
//! man pages generated from the same definitions, and versions: what `--version` names and which
//! meta.json formats this pgbak reads.

mod booleans;
mod command_line;
mod environment;
mod versions;
