//! `pgbak backup` of one database: what it writes (dump, meta.json, modes, labels, names), the
//! server's identity, hot standbys, and what a failure or a signal in the middle leaves behind.
//! Connecting is `connect::`, `--all-databases` is `dr::` and `cron::`, S3 is `s3::`.

mod faults;
mod output;
mod server_identity;
mod standby;
