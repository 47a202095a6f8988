//! Keys a test makes: an age identity by `pgbak keygen`, the way an operator makes one.

use std::path::{Path, PathBuf};

use super::{output_text, pgbak_bare};

/// `pgbak keygen -o DIR/NAME`: the identity file and its public key (the recipient).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = pgbak_bare()
        .args(["keygen", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (key, public)
}
