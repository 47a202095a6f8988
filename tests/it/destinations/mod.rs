//! Several destinations for one backup (issue 27): reading falls back
//! through them in order; `pgbak sync` makes each hold what the others do.

mod fallback;
mod sync;
