//! The restore time in the metrics textfile: `pgbak cron --verify` writes its verify's
//! `pgbak_restore_duration_seconds` for the run's group (the value recorded in the verdict), a
//! run that does not verify keeps the last one, and `pgbak verify --metrics-file` replaces
//! only that series, leaving cron's others as they were.

use super::{scrape, series};
use crate::support::cron::{cron, Dirs};
use crate::support::verify::{run_json, verify_cmd};
use crate::support::{output_text, pg16, pgbak, run};

const RESTORE: &str = "pgbak_restore_duration_seconds";

#[test]
fn cron_and_verify_write_the_restore_time_of_the_group_into_the_metrics_file() {
    let pg = pg16();
    let db = pg.fixture_db("cron restore time", 0.05);
    let dirs = Dirs::new("restore-time");
    let name = db.name.as_str();

    let out = run(cron(pgbak(pg), &dirs, &db.url()).arg("--verify"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let verdicts: Vec<_> = std::fs::read_dir(&dirs.backups)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".verify.json"))
        .collect();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(verdicts[0].path()).unwrap()).unwrap();
    let recorded = verdict["verification"]["timing"]["restore_seconds"]
        .as_f64()
        .expect("the verdict records the restore time");
    let s = scrape(&dirs);
    assert_eq!(series(&s, RESTORE, name, "full"), Some(recorded));

    // A run without verify: the last measured restore time stays.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(cron(pgbak(pg), &dirs, &db.url()).env("VERIFY_ON_BACKUP", "false"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let s = scrape(&dirs);
    assert_eq!(series(&s, RESTORE, name, "full"), Some(recorded));
    let run_started = series(&s, "pgbak_last_run_start_timestamp_seconds", name, "full");

    // `pgbak verify --metrics-file` of the newest backup: its own measure replaces it.
    let mut dumps = crate::support::dumps(&dirs.backups);
    dumps.sort();
    let newest = dirs.backups.join(dumps.last().unwrap());
    let (out, report) = run_json(verify_cmd(&db, &newest, &["--metrics-file"]).arg(&dirs.metrics));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let measured = report["timing"]["restore_seconds"].as_f64().unwrap();
    let s = scrape(&dirs);
    assert_eq!(series(&s, RESTORE, name, "full"), Some(measured));
    assert_eq!(
        series(&s, "pgbak_last_run_start_timestamp_seconds", name, "full"),
        run_started,
        "cron's series are as the last run left them"
    );
}
