//! The integration tests: one binary, real PostgreSQL, real S3 API server, real HTTP listener.
//! Run through `scripts/test.sh` (it installs the tools first).

mod support;

mod harness;
mod list;
mod s3;
