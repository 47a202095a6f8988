//! The integration tests: one binary, real PostgreSQL, real S3 API server, real HTTP listener.
//! Run through `scripts/test.sh` (it installs the tools first).

mod support;

mod any_database;
mod backup;
mod bucket_downgrade;
mod bucket_meta_sql;
mod bucket_signing;
mod check;
mod children;
mod completions;
mod cron;
mod cron_trust;
mod drill;
mod encryption;
mod environment;
mod faults;
mod fetch_sweep;
mod fleet;
mod fleet_all;
mod fleet_minor;
mod fleet_verdicts;
mod harness;
mod heartbeat;
mod kubernetes;
mod list;
mod names;
mod restore;
mod retention;
mod s3;
mod s3_checks;
mod s3_markers;
mod sealed_meta;
mod server_identity;
mod table_restore;
mod tls;
mod trust;
mod trust_s3;
mod trust_signals;
mod trust_standby;
mod usability;
mod verdict;
mod verify;
mod verify_schema;
