//! What pgbak does to its own process before it holds a secret: no core
//! dumps. A crash (or a `kill -QUIT`, or `gcore` by another process of the
//! same user) would otherwise write the database password, the S3 keys and
//! the age identity in memory to a file. `RLIMIT_CORE` 0 writes no core file;
//! not dumpable (`PR_SET_DUMPABLE` 0) also keeps other processes of the same
//! user from attaching to pgbak or reading its memory through `/proc`. Both
//! reset for the programs pgbak starts (at exec), which hold only what they
//! are given.

/// Disables core dumps of this process; a failure is reported, never fatal.
pub fn no_core_dumps() -> Result<(), String> {
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(rustix::process::Resource::Core, none)
        .map_err(|e| format!("setting RLIMIT_CORE to 0: {e}"))?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("making the process not dumpable: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_core_dumps_leaves_no_core_limit_and_no_dumpable_flag() {
        // In a child process (the ignored test below, run on its own), so the
        // test binary itself stays as it was.
        let status = std::process::Command::new(std::env::current_exe().unwrap_or_default())
            .args(["--exact", "hardening::tests::in_child", "--ignored"])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
    }

    #[test]
    #[ignore = "run by no_core_dumps_leaves_no_core_limit_and_no_dumpable_flag in a child"]
    fn in_child() {
        super::no_core_dumps().unwrap_or_else(|e| panic!("{e}"));
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(
            rustix::process::dumpable_behavior().ok(),
            Some(rustix::process::DumpableBehavior::NotDumpable)
        );
    }
}
