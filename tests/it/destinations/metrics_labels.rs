//! cron's metrics per destination: each destination's series carry `destination="NAME"`, one
//! that is down is marked failed and keeps the time its last copy reached it, so "a destination
//! lags" is an alert rule; the series without the label stay as they were.

use super::to_bucket;
use crate::retention::small_db;
use crate::support::bucket::pgbak_s3;
use crate::support::cron::{cron, metric, Dirs};
use crate::support::{free_port, output_text, pg16, run, s3, second_s3};

#[test]
fn destinations_metrics_carry_a_destination_label_and_mark_the_one_down() {
    let pg = pg16();
    let db = small_db(pg, "dest metrics", 100);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-metrics-main");
    let offsite = other.fresh_bucket("dest-metrics-off");
    let dirs = Dirs::new("dest-metrics");
    let cron_run = |to: &str| {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        run(cron(pgbak_s3(&db, main, &bucket, "p/"), &dirs, &db.url())
            .env("BACKUP_KEEP", "3")
            .env("PGBAK_TO", to))
    };
    let up = to_bucket(other, &offsite, "", "name=offsite");
    let out = cron_run(&up);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let first = dirs.samples();
    let at = |samples: &_, name: &str, dest: &str| {
        metric(samples, name, &[&format!("destination=\"{dest}\"")])
    };
    const OK: &str = "pgbak_destination_last_copy_success";
    const LAST: &str = "pgbak_destination_last_success_timestamp_seconds";
    const SIZE: &str = "pgbak_destination_backup_size_bytes";
    for dest in ["local", "s3", "offsite"] {
        assert_eq!(at(&first, OK, dest), 1.0, "{dest}: {first:?}");
        assert!(at(&first, SIZE, dest) > 0.0, "{dest}");
    }
    let first_success = at(&first, LAST, "offsite");
    assert_eq!(first_success, at(&first, LAST, "local"));

    // offsite down: the run fails (exit 1), offsite is marked, its last success stays.
    let down = format!(
        "s3://{offsite}/?endpoint=http://127.0.0.1:{}&name=offsite",
        free_port()
    );
    let out = cron_run(&down);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let second = dirs.samples();
    assert_eq!(at(&second, OK, "offsite"), 0.0, "{second:?}");
    assert_eq!(at(&second, OK, "local"), 1.0);
    assert_eq!(at(&second, OK, "s3"), 1.0);
    assert_eq!(at(&second, LAST, "offsite"), first_success, "offsite lags");
    assert!(at(&second, LAST, "s3") > first_success);
    assert!(at(&second, LAST, "local") > first_success);
    // The series without the label are as before.
    assert_eq!(metric(&second, "pgbak_last_run_success", &[]), 0.0);
    let unlabelled = second
        .keys()
        .filter(|k| k.starts_with("pgbak_last_run_success{"))
        .all(|k| !k.contains("destination="));
    assert!(unlabelled, "{second:?}");
}
