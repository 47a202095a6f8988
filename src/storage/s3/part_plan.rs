//! How big each part of a multipart upload is, and so how much memory the
//! upload holds: a pure function of the settings, table-tested, and the
//! source of the memory table in docs/s3.md (a unit test compares the two).
//!
//! Parts start at `base` and double every `max_parts / 10` parts, so the
//! store's part limit holds about 1,000 times the first part (8 TiB from
//! 8 MiB); `max_size` (`--s3-max-part-size-mib`) stops the doubling, which
//! bounds memory at `(concurrency + 1) x max_size` and the dump size at
//! [`PartPlan::capacity`].

pub const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The part size an upload starts with unless told otherwise: with the default
/// 3 parts in flight plus the one being filled, 32 MiB of buffers, which keeps
/// pgbak's peak RSS under 64 MiB while uploading (measured, release build:
/// 47 MiB; 55 MiB with 4 in flight).
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// S3's smallest part (all but the last). Stores with a lower minimum (test
/// servers) can be matched with the hidden `PGBAK_S3_MIN_PART_SIZE` (bytes).
pub const S3_MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const S3_MAX_PART_SIZE: u64 = 5 * GIB;
/// The part size doubles this many times over the allowed part count.
const GROWTH_STEPS: u32 = 10;

/// Part sizes of one upload: `base` for the first `step` parts, then doubling
/// every `step` parts, never above `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub base: u64,
    pub step: u32,
    pub max_parts: u32,
    pub max_size: u64,
}

/// How a dump of a given size is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub parts: u32,
    pub largest: u64,
}

impl Layout {
    /// The part buffers at the largest part: one being filled, `concurrency` uploading.
    pub fn memory(&self, concurrency: usize) -> u64 {
        (concurrency as u64 + 1).saturating_mul(self.largest)
    }
}

impl PartPlan {
    /// `part_size` is the first part's size asked for; without it the base
    /// grows (up to `max_size`) until twice `estimate`, the database's size,
    /// fits: a dump can be about twice that (vectors as text, no compression).
    pub fn new(
        part_size: Option<u64>,
        max_size: u64,
        max_parts: u32,
        estimate: Option<u64>,
    ) -> PartPlan {
        let max_size = max_size.min(S3_MAX_PART_SIZE);
        let mut plan = PartPlan {
            base: part_size.unwrap_or(DEFAULT_PART_SIZE).min(max_size),
            step: (max_parts / GROWTH_STEPS).max(1),
            max_parts,
            max_size,
        };
        if part_size.is_none() {
            let need = estimate.unwrap_or(0).saturating_mul(2);
            while plan.capacity() < need && plan.base < max_size {
                plan.base = (plan.base * 2).min(max_size);
            }
        }
        plan
    }

    /// Size of part `number` (1-based).
    pub fn size(&self, number: u32) -> u64 {
        let doublings = (number.saturating_sub(1) / self.step).min(40);
        self.base
            .saturating_mul(1u64 << doublings)
            .min(self.max_size)
    }

    /// Bytes that fit in `max_parts` parts.
    pub fn capacity(&self) -> u64 {
        (1..=self.max_parts).fold(0u64, |sum, n| sum.saturating_add(self.size(n)))
    }

    /// The parts a dump of `size` bytes takes; None when it does not fit.
    pub fn layout(&self, size: u64) -> Option<Layout> {
        let mut held = 0u64;
        for number in 1..=self.max_parts {
            let part = self.size(number);
            held = held.saturating_add(part);
            if held >= size {
                return Some(Layout {
                    parts: number,
                    largest: part,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIB: u64 = 1 << 40;

    #[test]
    fn part_plan_grows_to_hold_multi_terabyte_dumps() {
        let plan = PartPlan::new(None, S3_MAX_PART_SIZE, 10_000, None);
        assert_eq!(plan.base, 8 * MIB);
        assert_eq!(plan.size(1), 8 * MIB);
        assert_eq!(plan.size(1000), 8 * MIB);
        assert_eq!(plan.size(1001), 16 * MIB);
        assert!(plan.capacity() > 5 * TIB, "{}", plan.capacity());
        assert!(plan.size(10_000) <= S3_MAX_PART_SIZE);
        // A store with a lower part limit still holds a large dump.
        let small = PartPlan::new(None, S3_MAX_PART_SIZE, 1000, None);
        assert!(small.capacity() > 500 * GIB);
        // A 10 TiB database starts with larger parts.
        let huge = PartPlan::new(None, S3_MAX_PART_SIZE, 10_000, Some(10 * TIB));
        assert!(huge.base > 8 * MIB);
        assert!(huge.capacity() >= 20 * TIB);
        // An explicit part size is kept as the base.
        assert_eq!(
            PartPlan::new(Some(65536), S3_MAX_PART_SIZE, 10_000, Some(TIB)).base,
            65536
        );
    }

    #[test]
    fn max_part_size_caps_growth_and_so_memory() {
        let plan = PartPlan::new(None, 64 * MIB, 10_000, None);
        assert_eq!(plan.size(1), 8 * MIB);
        assert_eq!(plan.size(3001), 64 * MIB);
        assert_eq!(plan.size(10_000), 64 * MIB);
        // 8+16+32 MiB for 1,000 parts each, then 7,000 x 64 MiB.
        assert_eq!(plan.capacity(), 56_000 * MIB + 7000 * 64 * MIB);
        let cases = [
            // (dump, parts, largest part, memory with 3 in flight)
            (0, Some((1, 8 * MIB, 32 * MIB))),
            (8 * MIB, Some((1, 8 * MIB, 32 * MIB))),
            (8 * MIB + 1, Some((2, 8 * MIB, 32 * MIB))),
            (100 * GIB, Some((3725, 64 * MIB, 256 * MIB))),
            (TIB, None),
        ];
        for (dump, want) in cases {
            let got = plan.layout(dump).map(|l| (l.parts, l.largest, l.memory(3)));
            assert_eq!(got, want, "{dump} bytes");
        }
        // The database's size does not grow the base past the cap either.
        let grown = PartPlan::new(None, 16 * MIB, 10_000, Some(10 * TIB));
        assert_eq!(grown.base, 16 * MIB);
        assert_eq!(grown.size(10_000), 16 * MIB);
        // A first part larger than the cap is cut to it.
        assert_eq!(
            PartPlan::new(Some(32 * MIB), 16 * MIB, 100, None).base,
            16 * MIB
        );
    }

    #[test]
    fn parts_double_every_thousand_with_the_defaults() {
        let plan = PartPlan::new(None, S3_MAX_PART_SIZE, 10_000, Some(TIB / 2));
        for (dump, parts, largest) in [
            (10 * GIB, 1140, 16 * MIB),
            (100 * GIB, 3725, 64 * MIB),
            (TIB, 7032, GIB),
        ] {
            assert_eq!(plan.layout(dump), Some(Layout { parts, largest }), "{dump}");
        }
    }

    /// `1 GiB`, `16 MiB`: the manual's way of writing a power-of-two size.
    fn size_text(n: u64) -> String {
        match n {
            n if n >= TIB && n % TIB == 0 => format!("{} TiB", n / TIB),
            n if n >= GIB && n % GIB == 0 => format!("{} GiB", n / GIB),
            n if n % MIB == 0 => format!("{} MiB", n / MIB),
            n => crate::ui::bytes(n),
        }
    }

    fn thousands(n: u32) -> String {
        match n {
            n if n >= 1000 => format!("{},{:03}", n / 1000, n % 1000),
            n => n.to_string(),
        }
    }

    /// The table under "Memory and part size" in docs/s3.md, from [`PartPlan`].
    fn memory_table() -> String {
        let default = PartPlan::new(None, S3_MAX_PART_SIZE, 10_000, None);
        let capped = PartPlan::new(None, 64 * MIB, 10_000, None);
        let mut table = String::from(
            "| dump size | parts | largest part | memory (default, 3 at once) | \
             memory with `S3_CONCURRENCY=1` | with `--s3-max-part-size-mib 64` |\n\
             |---|---|---|---|---|---|\n",
        );
        for dump in [10 * GIB, 100 * GIB, TIB] {
            let layout = default.layout(dump).expect("the defaults hold 1 TiB");
            let with_cap = match capped.layout(dump) {
                Some(l) => format!(
                    "{} parts, memory {}",
                    thousands(l.parts),
                    size_text(l.memory(3))
                ),
                None => format!(
                    "does not fit: 10,000 parts hold {}",
                    crate::ui::bytes(capped.capacity())
                ),
            };
            table.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                size_text(dump),
                thousands(layout.parts),
                size_text(layout.largest),
                size_text(layout.memory(3)),
                size_text(layout.memory(1)),
                with_cap
            ));
        }
        table
    }

    #[test]
    fn the_manuals_memory_table_matches_the_part_plan() {
        let page = include_str!("../../../docs/s3.md");
        let table = memory_table();
        assert!(
            page.contains(&table),
            "docs/s3.md's memory table under \"Memory and part size\" should read:\n{table}"
        );
    }
}
