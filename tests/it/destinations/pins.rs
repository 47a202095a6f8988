//! The anomaly pin at every destination: a collapse pins the previous backup wherever it is
//! held (the directory, the `S3_*` bucket, a `--to` bucket), `unpin` clears it everywhere, and a
//! pod with an empty directory and only a `--to` bucket still finds its baseline there.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::to_bucket;
use crate::retention::small_db;
use crate::support::bucket::{backup_dir, keys, pgbak_s3, s3_meta};
use crate::support::cron::{cron, Dirs};
use crate::support::{
    self, output_text, pg16, private_s3, read_meta, run, s3, second_s3, stdout_json, HttpListener,
    S3Server,
};

/// Whether the meta.json of `stem` at `key_prefix` in `bucket` carries a pin.
fn pinned_in_bucket(server: &S3Server, bucket: &str, key_prefix: &str, stem: &str) -> bool {
    s3_meta(server, bucket, &format!("{key_prefix}{stem}.meta.json"))
        .get("pinned")
        .is_some_and(Value::is_object)
}

#[test]
fn destinations_a_collapse_pins_everywhere_and_unpin_clears_everywhere() {
    let pg = pg16();
    let db = small_db(pg, "dest pins", 2000);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-pin-main");
    let offsite = other.fresh_bucket("dest-pin-off");
    let dir = backup_dir("dest-pin-local");
    let to = to_bucket(other, &offsite, "", "name=offsite");
    let with_all = |args: &[&str]| {
        let mut cmd = pgbak_s3(&db, main, &bucket, "p/");
        cmd.args(args).env("BACKUP_DIR", &dir).env("PGBAK_TO", &to);
        cmd
    };
    let backup = || {
        std::thread::sleep(Duration::from_millis(1100));
        let out =
            run(with_all(&["backup", "--keep-last", "1", "--json", "--output-dir"]).arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
        stdout_json(&out)
    };
    let good = backup()["meta"]["file"]
        .as_str()
        .unwrap()
        .replace(".dump", "");
    db.psql("DELETE FROM t");
    let collapsed = backup();
    assert!(collapsed["anomaly"].is_string(), "{collapsed}");

    // Pinned at all three, so keep-last 1 kept it at all three.
    let local_meta = dir.join(format!("{good}.meta.json"));
    assert!(read_meta(&local_meta)["pinned"].is_object());
    assert!(pinned_in_bucket(main, &bucket, "p/", &good), "s3");
    assert!(pinned_in_bucket(other, &offsite, "", &good), "offsite");
    assert_eq!(keys(other, &offsite, "", ".dump").len(), 2, "pinned, kept");

    // unpin clears it at all three, saying so per destination.
    let out = run(&mut with_all(&["unpin", "--s3", &good]));
    assert!(out.status.success(), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("offsite"), "{text}");
    assert!(read_meta(&local_meta).get("pinned").is_none());
    assert!(!pinned_in_bucket(main, &bucket, "p/", &good), "s3");
    assert!(!pinned_in_bucket(other, &offsite, "", &good), "offsite");

    // Unpinned, each destination's retention rotates it out.
    backup();
    for (server, b, prefix) in [(main, &bucket, "p/"), (other, &offsite, "")] {
        let left = keys(server, b, prefix, ".dump");
        assert_eq!(left.len(), 1, "{left:?} in {b}");
        assert!(!left[0].starts_with(&good), "{left:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn destinations_a_pin_lands_at_the_others_when_one_destination_is_down() {
    let pg = pg16();
    let db = small_db(pg, "dest pin down", 2000);
    let main = s3();
    let bucket = main.fresh_bucket("dest-pin-down");
    let doomed = private_s3();
    let offsite = doomed.fresh_bucket("dest-pin-down-off");
    let dir = backup_dir("dest-pin-down");
    let to = to_bucket(&doomed, &offsite, "", "name=offsite");
    let backup = |keep: &str| {
        std::thread::sleep(Duration::from_millis(1100));
        run(pgbak_s3(&db, main, &bucket, "p/")
            .args(["backup", "--keep-last", keep, "--output-dir"])
            .arg(&dir)
            .env("PGBAK_TO", &to))
    };
    for _ in 0..2 {
        let out = backup("2");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let made = keys(main, &bucket, "p/", ".dump");
    let (oldest, good) = (&made[0], made[1].replace(".dump", ""));
    db.psql("DELETE FROM t");
    doomed.kill();
    // offsite is down: its copy fails (exit 1) and so does its pin there; the others are
    // pinned, and the run goes on to retention (keep-last 1 removes the oldest).
    let out = backup("1");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("pinning {good} at destination offsite")),
        "{text}"
    );
    assert!(read_meta(&dir.join(format!("{good}.meta.json")))["pinned"].is_object());
    assert!(pinned_in_bucket(main, &bucket, "p/", &good), "{text}");
    let left = keys(main, &bucket, "p/", ".dump");
    assert_eq!(left.len(), 2, "{left:?}: the pinned one and the new one");
    assert!(!left.contains(oldest), "retention ran: {left:?}\n{text}");
    assert!(!dir.join(oldest).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pgbak cron` with only a `--to` bucket (no `S3_*`), in a fresh directory each time.
fn pod_cron(server: &S3Server, db_url: &str, dirs: &Dirs, to: &str, hook: &str) -> Command {
    let mut base = support::pgbak(pg16());
    for (key, value) in server.env() {
        if key != "S3_ENDPOINT_URL" {
            base.env(key, value);
        }
    }
    let mut cmd = cron(base, dirs, db_url);
    cmd.env("PGBAK_TO", to)
        .env("BACKUP_KEEP", "1")
        .env("ALERT_WEBHOOK_URL", hook)
        .env_remove("S3_BUCKET");
    cmd
}

#[test]
fn destinations_a_pod_with_only_a_to_bucket_finds_its_baseline_there() {
    let pg = pg16();
    let db = small_db(pg, "dest pod anomaly", 2000);
    let server = s3();
    let bucket = server.fresh_bucket("dest-pod");
    let to = to_bucket(server, &bucket, "pod/", "name=offsite");
    let hook = HttpListener::ok();
    let first = Dirs::new("dest-pod-1");
    let out = run(&mut pod_cron(server, &db.url(), &first, &to, &hook.url()));
    assert!(out.status.success(), "{}", output_text(&out));
    let good = keys(server, &bucket, "pod/", ".dump");
    assert_eq!(good.len(), 1, "{good:?}");
    let good = good[0].replace(".dump", "");

    std::thread::sleep(Duration::from_millis(1100));
    db.psql("DELETE FROM t");
    // A new pod: its directory starts empty; only the bucket knows the history.
    let second = Dirs::new("dest-pod-2");
    let out = run(&mut pod_cron(server, &db.url(), &second, &to, &hook.url()));
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        pinned_in_bucket(server, &bucket, "pod/", &good),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        keys(server, &bucket, "pod/", ".dump").len(),
        2,
        "pinned, kept"
    );
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    let body = alerts[0].json();
    assert_eq!(body["status"], "warning", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("public.t 2000 -> 0"),
        "{body}"
    );
}
