//! Build facts for `pgbak --version` (src/version.rs): the git commit the
//! source is at and the build date. The date is SOURCE_DATE_EPOCH's when set
//! (reproducible builds: the release workflow sets it to the commit's time).
//! Without git the commit is PGBAK_BUILD_COMMIT's (the container build passes
//! it), else `cargo package`'s `.cargo_vcs_info.json` (a source tarball), else
//! it is left out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

#[path = "build/version.rs"]
mod version;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build/version.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=PGBAK_BUILD_COMMIT");
    let given = std::env::var("PGBAK_BUILD_COMMIT")
        .ok()
        .filter(|c| version::is_commit(c));
    let commit = git_commit(&dir).or(given).or_else(|| vcs_info_commit(&dir));
    let date = version::utc_date(build_time());
    let package = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!(
        "cargo:rustc-env=PGBAK_COMMIT={}",
        commit.as_deref().unwrap_or("")
    );
    println!("cargo:rustc-env=PGBAK_BUILD_DATE={date}");
    println!("cargo:rustc-env=PGBAK_TARGET={target}");
    println!(
        "cargo:rustc-env=PGBAK_VERSION_LINE={}",
        version::version_line(&package, commit.as_deref(), &date)
    );
}

/// SOURCE_DATE_EPOCH, else now. A malformed SOURCE_DATE_EPOCH fails the
/// build rather than silently stamping another date.
fn build_time() -> u64 {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            panic!("SOURCE_DATE_EPOCH={value:?} is not a Unix time in seconds")
        }),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// HEAD's commit when this crate is the top of a git work tree (not a
/// tarball unpacked inside some other repository), and the files that
/// change when HEAD moves, so the build script reruns then and only then.
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let commit = git(dir, &["rev-parse", "HEAD"]).filter(|c| version::is_commit(c))?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// One line of git's output; None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_owned())
}

fn vcs_info_commit(dir: &Path) -> Option<String> {
    let path = dir.join(".cargo_vcs_info.json");
    let text = std::fs::read_to_string(&path).ok()?;
    println!("cargo:rerun-if-changed={}", path.display());
    version::vcs_info_commit(&text)
}
