//! The record of signals a run keeps, in a test binary of its own: signals and
//! their record are process-wide, so sending one to the test process must not
//! touch other tests (the lib's unit tests run code that checks that record).

use pgbak::signals::{unless_interrupted, Signal, Signals};

/// The signal a guarded step ended on is the one the run's report tells of:
/// it must not count as a new signal that cuts that report short (the run
/// then exited 143 without its alert: CI, cron_sigterm_during_the_dump...).
#[test]
fn a_signal_that_ended_a_step_does_not_cut_the_report_of_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut signals = Signals::new().unwrap();
        let pid = std::process::id().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(kill.unwrap().success());
        assert_eq!(signals.recv().await, Signal::Terminate);
        // The report yields to the runtime (its requests), so the task that
        // records signals runs before it ends.
        let report = async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        assert_eq!(unless_interrupted(report).await, Ok(()));
    });
}
