//! `pgbak check`: fleet freshness judged from a directory or a bucket, without a database.

mod groups;
mod rto;
mod unproven;
