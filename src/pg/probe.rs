//! Asking pg_dump what it is while pgbak connects. Which pg_dump a backup
//! uses depends on the server's version, known only once connected, and
//! asking it (`--version`, then whether it takes zstd) costs two process
//! starts that used to run one after the other between connecting and
//! dumping: tens of milliseconds on a backup of a small database that
//! pg_dump itself makes in half a second. [`Probe::start`] asks the pg_dump
//! [`tools::find`] would try first, both questions at once, before the
//! connection is opened; [`Probe::finish`] takes its answer when it fits the
//! server and otherwise falls back to [`tools::find`] and
//! [`tools::default_compression`], so the tools chosen, the compression and
//! every error are the same as without the probe.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tokio::task::JoinHandle;

use super::tools::{self, PgTools};

/// A probe running in the background; dropping it stops it.
pub struct Probe {
    explicit: Option<PathBuf>,
    task: JoinHandle<Option<Probed>>,
}

/// What the first pg_dump found said.
struct Probed {
    dir: PathBuf,
    /// As [`tools::parse_version`] reads `--version`; None when unreadable.
    version: Option<(u32, String)>,
    /// Whether it takes zstd; None when not asked (a compression was given).
    zstd: Option<bool>,
}

impl Probe {
    /// Starts asking the first pg_dump in `explicit` (`--pg-bin-dir`) or,
    /// without it, on PATH and in the usual install roots; whether it takes
    /// zstd only when `default_compression` is wanted.
    pub fn start(explicit: Option<&Path>, default_compression: bool) -> Probe {
        let explicit = explicit.map(Path::to_path_buf);
        let dirs = match &explicit {
            Some(dir) => vec![dir.clone()],
            None => tools::candidate_dirs(),
        };
        let task = tokio::spawn(async move {
            let dir = dirs.into_iter().find(|dir| dir.join("pg_dump").is_file())?;
            let pg_dump = dir.join("pg_dump");
            let version = async {
                let mut cmd = tokio::process::Command::from(tools::version_command(&pg_dump));
                let out = cmd.kill_on_drop(true).output().await.ok()?;
                tools::version_in(&out)
            };
            // Asked before the version is known: a pg_dump older than 16
            // refuses the spec, and its answer is not used.
            let zstd = async {
                match default_compression {
                    true => Some(tools::takes_zstd(&pg_dump).await),
                    false => None,
                }
            };
            let (version, zstd) = tokio::join!(version, zstd);
            Some(Probed { dir, version, zstd })
        });
        Probe { explicit, task }
    }

    /// The tools for a server of major version `need` (`server_text` names
    /// it in errors) and pg_dump's `--compress` argument: `compress` as this
    /// pg_dump spells it, or the default compression when it is None.
    pub async fn finish(
        mut self,
        need: u32,
        server_text: &str,
        compress: Option<&str>,
    ) -> Result<(PgTools, String)> {
        let probed = (&mut self.task).await.ok().flatten();
        if let Some(answer) = probed.and_then(|p| p.answer(need, compress)) {
            return Ok(answer);
        }
        let tools = tools::find(self.explicit.as_deref(), need, server_text)?;
        let compression = match compress {
            Some(spec) => tools::pg_dump_compress_arg(tools.major, spec),
            None => tools::default_compression(&tools).await,
        };
        Ok((tools, compression))
    }
}

impl Probed {
    /// The tools and the `--compress` argument, when this pg_dump serves a
    /// server of major version `need` and answered what the compression
    /// needs; None sends [`Probe::finish`] the long way.
    fn answer(self, need: u32, compress: Option<&str>) -> Option<(PgTools, String)> {
        let (major, version) = self.version.filter(|(major, _)| *major >= need)?;
        let compression = match (compress, self.zstd) {
            (Some(spec), _) => tools::pg_dump_compress_arg(major, spec),
            (None, Some(zstd)) => tools::compression_given(major, zstd),
            (None, None) => return None,
        };
        Some((tools::chosen(self.dir, major, version), compression))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(version: Option<u32>, zstd: Option<bool>) -> Probed {
        Probed {
            dir: PathBuf::from("/opt/pg/bin"),
            version: version.map(|major| (major, format!("{major}.3"))),
            zstd,
        }
    }

    /// pg_dump's major, whether it takes zstd, the server's major, --compress, the answer.
    type Case = (
        Option<u32>,
        Option<bool>,
        u32,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn the_probe_answers_only_what_it_asked_and_only_for_a_new_enough_pg_dump() {
        let zstd = Some("zstd:1");
        let gzip4 = Some("gzip:4");
        let cases: [Case; 10] = [
            (Some(17), Some(true), 16, None, zstd),
            (Some(17), Some(false), 16, None, gzip4),
            (Some(16), Some(true), 16, None, zstd),
            // Older than 16: the zstd answer is not used, the level is plain.
            (Some(15), Some(true), 15, None, Some("4")),
            (Some(15), None, 15, Some("gzip:9"), Some("9")),
            (Some(17), None, 16, Some("lz4"), Some("lz4")),
            // Not asked whether it takes zstd, and no compression given.
            (Some(17), None, 16, None, None),
            // Too old for the server, or a version it could not read: find() decides.
            (Some(15), Some(true), 16, None, None),
            (None, Some(true), 16, None, None),
            (None, None, 16, Some("gzip:4"), None),
        ];
        for (version, takes_zstd, need, compress, want) in cases {
            let got = probed(version, takes_zstd).answer(need, compress);
            assert_eq!(
                got.as_ref().map(|(_, c)| c.as_str()),
                want,
                "pg_dump {version:?}, zstd {takes_zstd:?}, server {need}, --compress {compress:?}"
            );
            if let Some((tools, _)) = got {
                assert_eq!(
                    (tools.bin_dir, tools.major),
                    (PathBuf::from("/opt/pg/bin"), version.unwrap_or_default())
                );
            }
        }
    }
}
