//! Without an `S3_*` bucket, the first `--to` bucket is the authoritative store for names too:
//! a pod with an empty directory never names a backup before one already in its group there.

use super::to_bucket;
use crate::retention::small_db;
use crate::support::bucket::{backup_dir, keys};
use crate::support::{self, output_text, pg16, run, s3};

#[test]
fn destinations_a_pod_names_its_backup_after_the_newest_in_the_to_bucket() {
    let pg = pg16();
    let db = small_db(pg, "dest pod names", 10);
    let server = s3();
    let bucket = server.fresh_bucket("dest-pod-names");
    let to = to_bucket(server, &bucket, "", "name=offsite");
    // Each run a new pod: a fresh, empty directory.
    let pod_backup = |hint: &str| {
        let mut cmd = support::pgbak(pg);
        for (key, value) in server.env() {
            cmd.env(key, value);
        }
        let dir = backup_dir(hint);
        let out = run(cmd
            .env("DATABASE_URL", db.url())
            .env_remove("S3_BUCKET")
            .args(["backup", "--output-dir"])
            .arg(&dir)
            .args(["--to", &to]));
        let _ = std::fs::remove_dir_all(&dir);
        out
    };
    let out = pod_backup("dest-pod-names-1");
    assert!(out.status.success(), "{}", output_text(&out));
    let first = keys(server, &bucket, "", ".dump").pop().unwrap();
    let group = first.trim_end_matches(".dump").rsplit_once('_').unwrap().0;
    // A backup of the group named 30 s ahead (a clock that was ahead) is in the bucket only.
    let ahead = (chrono::Utc::now() + chrono::Duration::seconds(30)).format("%Y%m%dT%H%M%S");
    let ahead_name = format!("{group}_{ahead}.dump");
    server.put_object(&bucket, &ahead_name, b"PGDMP not really".to_vec(), None);

    let out = pod_backup("dest-pod-names-2");
    assert!(out.status.success(), "{}", output_text(&out));
    let all = keys(server, &bucket, "", ".dump");
    let newest = all.last().unwrap();
    assert_ne!(newest, &ahead_name, "{all:?}");
    assert!(
        newest > &ahead_name,
        "named before the bucket's newest: {all:?}"
    );
}
