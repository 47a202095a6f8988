//! The integration tests: one binary, real PostgreSQL, real S3 API server, real HTTP listener.
//! Run through `scripts/test.sh` (it installs the tools first).

mod support;

mod backup;
mod check;
mod children;
mod completions;
mod cron;
mod cron_trust;
mod drill;
mod encryption;
mod environment;
mod faults;
mod harness;
mod heartbeat;
mod kubernetes;
mod list;
mod names;
mod packages;
mod restore;
mod retention;
mod s3;
mod s3_checks;
mod s3_markers;
mod tls;
mod trust;
mod trust_s3;
mod trust_signals;
mod trust_standby;
mod verdict;
mod verify;
mod verify_schema;
mod versions;
mod workflows;
