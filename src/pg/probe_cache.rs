//! What each pg_dump said about itself, remembered while it stays the same
//! binary. [`super::probe`] asks pg_dump its version and whether it takes
//! zstd; on a host that backs up every night the answers change only when
//! the binary does, and asking costs two process starts on the path to the
//! dump (a few milliseconds of a backup that pg_dump makes in half a second).
//!
//! The cache is one small file, `pg-tools.json` in
//! [`crate::settings::cache_dir`] (0600 in a 0700 directory). Per pg_dump
//! path it holds the binary's identity (device, inode, size, modification
//! and change times: a package upgrade, a rebuild, a copy over it or a
//! `touch` each change one) and the answers. An answer counts only while the
//! binary at that path still has that identity. Anything unreadable, or a
//! file others may write, is a miss; a cache that cannot be written costs
//! only the next run's probe. Nothing in it is a path pgbak runs or a
//! command it builds: pgbak looks up the pg_dump it already chose, and the
//! version is read as `--version`'s text is ([`super::tools::parse_version`]).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file's name in the cache directory.
pub const FILE: &str = "pg-tools.json";

/// Entries kept (the most recent): enough for every pg_dump of a host.
const KEEP: usize = 16;

/// What pg_dump said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    /// What `pg_dump --version` printed.
    pub version: String,
    /// Whether it takes zstd; None when it was not asked.
    pub zstd: Option<bool>,
}

/// The identity of the binary the answers came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    /// The identity of the file `path` names now (through symlinks).
    fn of(path: &Path) -> Option<Identity> {
        let m = std::fs::metadata(path).ok()?;
        Some(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    pg_dump: PathBuf,
    identity: Identity,
    answers: Answers,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    entries: Vec<Entry>,
}

/// The cache in one directory.
#[derive(Debug, Clone)]
pub struct ProbeCache {
    dir: PathBuf,
}

impl ProbeCache {
    pub fn at(dir: PathBuf) -> ProbeCache {
        ProbeCache { dir }
    }

    /// The cache of this run ([`crate::settings::cache_dir`]); None without one.
    pub fn of_this_user() -> Option<ProbeCache> {
        crate::settings::cache_dir().map(ProbeCache::at)
    }

    fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// What `pg_dump` said, when it is still the binary that said it.
    pub fn lookup(&self, pg_dump: &Path) -> Option<Answers> {
        let identity = Identity::of(pg_dump)?;
        self.load()
            .entries
            .into_iter()
            .find(|e| e.pg_dump == pg_dump && e.identity == identity)
            .map(|e| e.answers)
    }

    /// Remembers what `pg_dump` said; a failure is only logged (the next run asks again).
    pub fn remember(&self, pg_dump: &Path, answers: &Answers) {
        if let Err(err) = self.write(pg_dump, answers) {
            crate::ui::debug(&format!(
                "not caching what {} said: {}",
                pg_dump.display(),
                crate::error::one_line(&err)
            ));
        }
    }

    fn write(&self, pg_dump: &Path, answers: &Answers) -> Result<()> {
        let identity = Identity::of(pg_dump).context("reading the binary's identity")?;
        let mut contents = self.load();
        contents.entries.retain(|e| e.pg_dump != pg_dump);
        contents.entries.push(Entry {
            pg_dump: pg_dump.to_path_buf(),
            identity,
            answers: answers.clone(),
        });
        let excess = contents.entries.len().saturating_sub(KEEP);
        contents.entries.drain(..excess);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // Written whole beside it, then renamed over it: a reader sees the
        // old file or the new one. (tempfile's files are 0600.)
        let mut staged = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("writing in {}", self.dir.display()))?;
        serde_json::to_writer(&mut staged, &contents).context("writing the cache")?;
        staged
            .persist(self.file())
            .with_context(|| format!("replacing {}", self.file().display()))?;
        Ok(())
    }

    /// The file's entries; none when it is missing, unreadable, not what
    /// pgbak writes, or writable by others than its owner.
    fn load(&self) -> Contents {
        let file = self.file();
        let trusted = std::fs::metadata(&file)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o022 == 0);
        if !trusted {
            return Contents::default();
        }
        std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(version: &str, zstd: Option<bool>) -> Answers {
        Answers {
            version: format!("pg_dump (PostgreSQL) {version}\n"),
            zstd,
        }
    }

    fn binary(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn an_answer_is_kept_while_the_binary_is_the_same_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ProbeCache::at(tmp.path().join("cache/pgbak"));
        let pg_dump = binary(tmp.path(), "pg_dump", "v1");
        assert_eq!(cache.lookup(&pg_dump), None, "nothing cached yet");
        cache.remember(&pg_dump, &answers("17.10", Some(true)));
        assert_eq!(cache.lookup(&pg_dump), Some(answers("17.10", Some(true))));
        // Another binary at another path has no answer.
        let other = binary(tmp.path(), "other", "v1");
        assert_eq!(cache.lookup(&other), None);

        // The file and its directory are the user's alone.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.dir), 0o700);
        assert_eq!(mode(&cache.file()), 0o600);
    }

    #[test]
    fn a_changed_binary_is_asked_again() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ProbeCache::at(tmp.path().join("c"));
        let pg_dump = binary(tmp.path(), "pg_dump", "version one");
        cache.remember(&pg_dump, &answers("16.4", Some(false)));
        // Replaced by another file (a package upgrade renames a new one in).
        let staged = binary(tmp.path(), "pg_dump.new", "version two!");
        std::fs::rename(&staged, &pg_dump).unwrap();
        assert_eq!(cache.lookup(&pg_dump), None);
        cache.remember(&pg_dump, &answers("17.10", Some(true)));
        // Rewritten in place with content of the same size.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&pg_dump, "version TWO!").unwrap();
        assert_eq!(cache.lookup(&pg_dump), None);
        // Gone.
        std::fs::remove_file(&pg_dump).unwrap();
        assert_eq!(cache.lookup(&pg_dump), None);
    }

    #[test]
    fn a_damaged_or_foreign_writable_cache_is_a_miss_and_is_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ProbeCache::at(tmp.path().join("c"));
        let pg_dump = binary(tmp.path(), "pg_dump", "v");
        cache.remember(&pg_dump, &answers("17.10", Some(true)));

        std::fs::write(cache.file(), "{ not json").unwrap();
        assert_eq!(cache.lookup(&pg_dump), None);
        cache.remember(&pg_dump, &answers("17.10", Some(true)));
        assert!(cache.lookup(&pg_dump).is_some());

        // A file others may write is not trusted.
        std::fs::set_permissions(cache.file(), std::fs::Permissions::from_mode(0o622)).unwrap();
        assert_eq!(cache.lookup(&pg_dump), None);
    }

    #[test]
    fn only_the_latest_entries_are_kept_and_a_path_has_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ProbeCache::at(tmp.path().join("c"));
        let first = binary(tmp.path(), "pg_dump0", "0");
        cache.remember(&first, &answers("15.1", None));
        cache.remember(&first, &answers("15.1", Some(false)));
        assert_eq!(cache.load().entries.len(), 1);
        for i in 1..=KEEP {
            let path = binary(tmp.path(), &format!("pg_dump{i}"), "x");
            cache.remember(&path, &answers("17.10", Some(true)));
        }
        assert_eq!(cache.load().entries.len(), KEEP);
        assert_eq!(cache.lookup(&first), None, "the oldest entry went");
    }

    #[test]
    fn a_cache_that_cannot_be_written_fails_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = binary(tmp.path(), "not-a-dir", "file");
        let cache = ProbeCache::at(blocker.join("pgbak"));
        let pg_dump = binary(tmp.path(), "pg_dump", "v");
        cache.remember(&pg_dump, &answers("17.10", Some(true)));
        assert_eq!(cache.lookup(&pg_dump), None);
    }
}
