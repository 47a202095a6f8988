//! `check --max-unproven-age`'s reading and judging of each group: every
//! complete backup's verdict documents read (restore verdicts and checksum
//! proofs, in the directory and the bucket), and the group failed when its
//! backup proven longest ago ([`super::unproven`], pure) is over the limit.

use chrono::{DateTime, Utc};

use super::{unproven, GroupReport, Listed, Seen};
use crate::storage::Stores;
use crate::ui;

/// `--max-unproven-age` on one group: its backup proven longest ago, and a
/// problem when that is over the limit.
pub(super) fn judge(
    report: &mut GroupReport,
    proofs: &[unproven::Proofs],
    limit: std::time::Duration,
    now: DateTime<Utc>,
) {
    report.oldest_unproven = unproven::oldest(proofs, now);
    let Some(problem) = report
        .oldest_unproven
        .as_ref()
        .and_then(|o| unproven::problem(o, limit))
    else {
        return;
    };
    if report.ok {
        report.status = "unproven";
        report.ok = false;
    }
    report.problems.push(problem);
}

/// A complete backup's proofs: its verdict documents in the directory and
/// the bucket (restore verdicts and checksum proofs), and meta.json's
/// legacy verdict when it was read.
pub(super) async fn read(b: &Listed, stores: &Stores, seen: Option<&Seen>) -> unproven::Proofs {
    let mut proofs = unproven::Proofs {
        name: b.name.stem(),
        made: b.name.time(),
        restored: seen
            .and_then(|s| s.verified)
            .and_then(|(at, passed)| at.filter(|_| passed)),
        checksummed: None,
    };
    let places = [
        (b.local_verdict, stores.local.as_ref()),
        (b.s3_verdict, stores.bucket.as_ref()),
    ];
    for (_, store) in places.into_iter().filter(|(has, _)| *has) {
        let Some(store) = store else { continue };
        match store.load_verdict_file(&b.name).await {
            Ok(Some(doc)) => {
                let restored = doc
                    .verification
                    .filter(|v| v.passed)
                    .and_then(|v| DateTime::parse_from_rfc3339(&v.verified_at).ok())
                    .map(|t| t.with_timezone(&Utc));
                let summed = doc.checksum.filter(|c| c.passed).and_then(|c| c.at());
                proofs.restored = proofs.restored.max(restored);
                proofs.checksummed = proofs.checksummed.max(summed);
            }
            Ok(None) => {}
            Err(err) => ui::warn(&crate::error::one_line(&err)),
        }
    }
    proofs
}
