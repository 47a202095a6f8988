//! Keys a test makes: an age identity by `pgbak keygen`, the way an operator makes one.

use std::path::{Path, PathBuf};

use super::{output_text, pgbak_bare};

/// `pgbak keygen -o DIR/NAME`: the identity file and its public key (the recipient).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    keygen_with(&[], dir, name)
}

/// `pgbak keygen FLAGS -o DIR/NAME` (`--sign`: an ed25519 signing key): the key file and its
/// public half.
pub fn keygen_with(flags: &[&str], dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = pgbak_bare()
        .arg("keygen")
        .args(flags)
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (key, public)
}
