//! `pgbak verify`: the checks and their verdict, what a restore into a temporary database, a
//! `--target-url` or an `--ephemeral` cluster leaves behind (nothing), the schema comparison,
//! pg_restore's verdict, and the tables verify expects on any database.

mod checks;
mod checksums;
mod cleanup;
mod expected_tables;
mod schema;
mod streamed;
mod verdict;
