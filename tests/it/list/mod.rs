//! `pgbak list`: what is on disk and in the bucket.

mod backups;
