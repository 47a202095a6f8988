//! The integration tests: one binary, real PostgreSQL, real S3 API server, real HTTP listener.
//! Run through `scripts/test.sh` (it installs the tools first). One module per subject
//! (`cargo test --test it -- verify::` runs one); CONTRIBUTING.md says how they are laid out.

mod support;

mod backup;
mod check;
mod connect;
mod contrib;
mod cron;
mod destinations;
mod dr;
mod encryption;
mod fleet;
mod harness;
mod list;
mod restore;
mod retention;
mod s3;
mod security;
mod settings;
mod signals;
mod verify;
