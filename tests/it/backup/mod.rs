//! `pgbak backup` of one database: what it writes (dump, meta.json, modes, labels, names), the
//! server's identity, hot standbys, what a failure or a signal in the middle leaves behind, the
//! group lock it shares with cron, and the probe of pg_dump while it connects.
//! Connecting is `connect::`, `--all-databases` is `dr::` and `cron::`, S3 is `s3::`.

mod faults;
mod lock;
mod output;
mod probe;
mod server_identity;
mod standby;
