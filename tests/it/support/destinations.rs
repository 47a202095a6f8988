//! Several destinations for one backup (issue 27): a case with a database,
//! the local directory, a bucket on an S3 server of its own (`first`, which
//! a test may kill) as the `S3_*` bucket, and a bucket on the shared S3
//! server (`second`) named as a `--to` destination; copying what one bucket
//! holds into the other, as a backup to both would have left it.

use std::path::PathBuf;
use std::process::Command;

use super::bucket::{backup_dir, pgbak_s3};
use super::s3::{private_s3, s3, OwnedS3, S3Server};
use super::{output_text, pg16, run, TestDb};

/// The prefix every bucket of a case uses.
pub const PREFIX: &str = "p/";

/// A database with the fixture, the local directory and two buckets on two servers.
pub struct TwoBuckets {
    pub db: TestDb<'static>,
    pub dir: PathBuf,
    pub first: OwnedS3,
    pub first_bucket: String,
    pub second: &'static S3Server,
    pub second_bucket: String,
}

impl TwoBuckets {
    pub fn new(hint: &str) -> TwoBuckets {
        let db = pg16().fresh_db(hint);
        db.load_fixture(0.05);
        let first = private_s3();
        let first_bucket = first.fresh_bucket(hint);
        let second = s3();
        let second_bucket = second.fresh_bucket(hint);
        TwoBuckets {
            db,
            dir: backup_dir(&hint.replace(' ', "-")),
            first,
            first_bucket,
            second,
            second_bucket,
        }
    }

    /// pgbak with the first bucket as the `S3_*` bucket, connected to the database.
    pub fn pgbak(&self) -> Command {
        pgbak_s3(&self.db, &self.first, &self.first_bucket, PREFIX)
    }

    /// The second bucket as a `--to` URL named `offsite`, with `extra` parameters.
    pub fn offsite(&self, extra: &str) -> String {
        format!(
            "s3://{}/{PREFIX}?endpoint={}&region=us-east-1&name=offsite{extra}",
            self.second_bucket, self.second.endpoint
        )
    }

    /// A backup to the local directory and the first bucket; its dump's file name.
    pub fn backup(&self, extra: &[&str]) -> String {
        let out = run(self
            .pgbak()
            .args(["backup", "--keep", "0", "--output-dir"])
            .arg(&self.dir)
            .args(extra));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut dumps = self.keys(&self.first, &self.first_bucket, ".dump");
        dumps.extend(self.keys(&self.first, &self.first_bucket, ".dump.age"));
        dumps.sort_by_key(|d| d.replace(".age", ""));
        dumps.last().cloned().expect("a dump in the first bucket")
    }

    /// The file names under the prefix of `bucket` on `server` ending in `suffix`, sorted.
    pub fn keys(&self, server: &S3Server, bucket: &str, suffix: &str) -> Vec<String> {
        let mut keys: Vec<String> = server
            .list_objects(bucket, PREFIX)
            .into_iter()
            .filter(|o| o.key.ends_with(suffix))
            .map(|o| o.key[PREFIX.len()..].to_owned())
            .collect();
        keys.sort();
        keys
    }

    /// Copies every object of the first bucket into the second, as a backup to both leaves them.
    pub fn copy_first_to_second(&self) {
        for object in self.first.list_objects(&self.first_bucket, PREFIX) {
            let bytes = self.first.get_object(&self.first_bucket, &object.key);
            self.second
                .put_object(&self.second_bucket, &object.key, bytes, None);
        }
    }
}
