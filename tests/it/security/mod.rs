//! The attacks of the security model, each built and shown to fail: a hostile database (its
//! owner's code never runs in pgbak's sessions, nor with privilege during verify), a hostile host
//! (local users, planted files, pgbak's own children), secrets kept out of argv, logs and core
//! dumps, and a bucket an attacker can write to (meta.json reaching SQL, plaintext in place of
//! ciphertext, unsigned or re-signed backups).

mod bucket_downgrade;
mod bucket_meta_sql;
mod bucket_signing;
mod hostile_database;
mod hostile_host;
mod secrets;
