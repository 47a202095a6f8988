//! The argument groups several commands share, resolved into the domain's
//! own types: retention rules into a [`Policy`], the anomaly check into a
//! threshold, Object Lock into a [`LockPolicy`]. Retention, anomaly and
//! storage code take these and never see the command line.

use anyhow::Result;

use crate::cli::{AnomalyArgs, ObjectLockArgs, RetentionArgs};
use crate::error::usage;
use crate::retention::{Policy, Within, DEFAULT_KEEP_LAST};
use crate::settings::choices::LockMode;
use crate::storage::object_lock::LockPolicy;

/// The retention rules (each flag with its environment variable).
/// `--keep-last` defaults to 7 only when no other rule is set, so
/// `--keep-daily 7` alone means exactly that.
pub fn retention_policy(args: &RetentionArgs) -> Result<Policy> {
    let within = match args.keep_within.as_deref().filter(|w| !w.is_empty()) {
        Some(text) => Some(Within::parse(text).map_err(usage)?),
        None => None,
    };
    let mut policy = Policy {
        last: 0,
        hourly: args.keep_hourly.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
        monthly: args.keep_monthly.unwrap_or(0),
        yearly: args.keep_yearly.unwrap_or(0),
        within,
    };
    let others = policy != Policy::default();
    policy.last = args
        .keep_last
        .unwrap_or(if others { 0 } else { DEFAULT_KEEP_LAST });
    Ok(policy)
}

/// The anomaly threshold in percent, or None with `--no-anomaly-check`
/// (or a threshold of 0).
pub fn anomaly_threshold(args: &AnomalyArgs) -> Result<Option<u32>> {
    if args.no_anomaly_check {
        return Ok(None);
    }
    match args.anomaly_threshold {
        None => Ok(Some(crate::anomaly::DEFAULT_THRESHOLD)),
        Some(0) => Ok(None),
        Some(p) if p <= 100 => Ok(Some(p)),
        Some(p) => Err(usage(format!(
            "--anomaly-threshold {p} is not a percentage from 0 (off) to 100"
        ))),
    }
}

/// The Object Lock a run puts on what it uploads: None when
/// `--s3-object-lock-days` is unset or 0; a mode without days is a usage error.
pub fn object_lock(args: &ObjectLockArgs) -> Result<Option<LockPolicy>> {
    match (
        args.object_lock_days.filter(|d| *d > 0),
        args.object_lock_mode,
    ) {
        (Some(days), mode) if days <= 36_500 => Ok(Some(LockPolicy {
            days,
            mode: mode.unwrap_or(LockMode::Governance),
        })),
        (Some(days), _) => Err(usage(format!(
            "--s3-object-lock-days {days} is more than 100 years"
        ))),
        (None, Some(_)) => Err(usage(
            "--s3-object-lock-mode needs --s3-object-lock-days (S3_OBJECT_LOCK_DAYS)",
        )),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_last_defaults_to_seven_only_without_other_rules() {
        let args = RetentionArgs::default;
        assert_eq!(retention_policy(&args()).unwrap(), Policy::last(7));
        let mut a = args();
        a.keep_daily = Some(7);
        let p = retention_policy(&a).unwrap();
        assert_eq!((p.last, p.daily), (0, 7));
        let mut a = args();
        a.keep_last = Some(0);
        assert!(retention_policy(&a).unwrap().keeps_all());
        let mut a = args();
        a.keep_last = Some(3);
        a.keep_within = Some("14d".into());
        let p = retention_policy(&a).unwrap();
        assert_eq!(p.to_string(), "last 3, within 14d");
    }

    #[test]
    fn threshold_flags() {
        let args = |t, off| AnomalyArgs {
            anomaly_threshold: t,
            no_anomaly_check: off,
        };
        assert_eq!(anomaly_threshold(&args(None, false)).unwrap(), Some(50));
        assert_eq!(anomaly_threshold(&args(Some(20), false)).unwrap(), Some(20));
        assert_eq!(anomaly_threshold(&args(Some(20), true)).unwrap(), None);
        assert_eq!(anomaly_threshold(&args(Some(0), false)).unwrap(), None);
        assert!(anomaly_threshold(&args(Some(101), false)).is_err());
    }

    #[test]
    fn object_lock_settings_are_checked() {
        let args = |days, mode| ObjectLockArgs {
            object_lock_days: days,
            object_lock_mode: mode,
        };
        assert_eq!(object_lock(&args(None, None)).unwrap(), None);
        assert_eq!(object_lock(&args(Some(0), None)).unwrap(), None);
        assert_eq!(
            object_lock(&args(Some(30), None)).unwrap(),
            Some(LockPolicy {
                days: 30,
                mode: LockMode::Governance
            })
        );
        assert!(object_lock(&args(None, Some(LockMode::Compliance))).is_err());
        assert!(object_lock(&args(Some(99_999), None)).is_err());
    }
}
