//! One module per subcommand; each reads top to bottom as the steps it runs.

pub mod backup;
pub mod check;
pub mod completions;
pub mod cron;
pub mod each_database;
pub mod globals;
pub mod keygen;
pub mod list;
pub mod man;
pub mod prune;
pub mod restore;
pub mod sync;
pub mod unpin;
pub mod verify;
