//! The bucket is the truth (issue 23): pods that start with an empty directory, many servers
//! sharing one prefix, names that come from the clock, `check` on a host that reads only the
//! bucket, and verdicts recorded where the backup lives.

mod shared_bucket;
mod verdicts;
