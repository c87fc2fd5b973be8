//! Usage as stored — per UTC hour, split in quarters — summed into a window's buckets.
//!
//! Every IANA zone's offset is a whole number of quarter hours, so every local bucket
//! boundary (a local hour, midnight, the 1st) falls on a quarter: summing quarters is exact in
//! any zone, Asia/Kolkata's half hours and Asia/Kathmandu's quarters included, where hourly
//! data alone would have to guess.

/// Seconds in a quarter hour.
pub const QUARTER: i64 = 900;

/// One hour of usage: its start (UTC seconds) and what was counted in each quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuarterRow {
    pub hour_start: i64,
    pub quarters: [i64; 4],
}

impl QuarterRow {
    pub fn total(&self) -> i64 {
        self.quarters.iter().sum()
    }

    /// Each quarter with its start.
    pub fn quarters(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..4).map(move |i| (self.hour_start + i as i64 * QUARTER, self.quarters[i]))
    }
}

/// The start of the hour holding `t` and the quarter's index in it.
pub fn hour_and_quarter(t: i64) -> (i64, usize) {
    let hour = t - t.rem_euclid(3600);
    (hour, ((t - hour) / QUARTER) as usize)
}

/// The bucket (`[start, end)`, ascending) holding instant `t`, if any.
pub fn bucket_of(buckets: &[(i64, i64)], t: i64) -> Option<usize> {
    let slot = buckets.partition_point(|&(start, _)| start <= t).checked_sub(1)?;
    (t < buckets[slot].1).then_some(slot)
}

/// Sums `rows` into `buckets` (`[start, end)`, ascending, contiguous or not); what falls
/// outside every bucket is left out.
pub fn fill(buckets: &[(i64, i64)], rows: &[QuarterRow]) -> Vec<i64> {
    let mut values = vec![0i64; buckets.len()];
    for row in rows {
        for (t, v) in row.quarters().filter(|&(_, v)| v != 0) {
            if let Some(slot) = bucket_of(buckets, t) {
                values[slot] = values[slot].saturating_add(v);
            }
        }
    }
    values
}

/// What `rows` hold within `[start, end)`.
pub fn sum_in(rows: &[QuarterRow], start: i64, end: i64) -> i64 {
    fill(&[(start, end)], rows)[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quarters_fall_in_local_buckets() {
        // A half-hour zone's day starts at 18:30 UTC: the hour 18:00 splits in two.
        let rows = [QuarterRow {
            hour_start: 18 * 3600,
            quarters: [1, 2, 4, 8],
        }];
        let buckets = [(0, 18 * 3600 + 1800), (18 * 3600 + 1800, 86_400)];
        assert_eq!(fill(&buckets, &rows), vec![3, 12]);
        assert_eq!(sum_in(&rows, 0, 86_400), 15);
        assert_eq!(hour_and_quarter(3600 + 2700), (3600, 3));
        assert_eq!(hour_and_quarter(-1), (-3600, 3));
        assert_eq!(bucket_of(&buckets, 18 * 3600 + 1800), Some(1));
        assert_eq!(bucket_of(&buckets, 86_400), None);
        assert_eq!(bucket_of(&buckets, -1), None);
    }

    proptest! {
        /// Bucketed or not, every quarter inside the window is counted once: the buckets'
        /// values add up to the rows' total within the window.
        #[test]
        fn buckets_add_up_to_the_rows(
            values in proptest::collection::vec((0i64..500, proptest::array::uniform4(0i64..1000)), 0..60),
            cuts in proptest::collection::btree_set(0i64..2000, 1..30),
        ) {
            let rows: Vec<QuarterRow> = values
                .iter()
                .map(|&(h, quarters)| QuarterRow { hour_start: h * 3600, quarters })
                .collect();
            let cuts: Vec<i64> = cuts.into_iter().map(|c| c * QUARTER).collect();
            let buckets: Vec<(i64, i64)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            let filled: i64 = fill(&buckets, &rows).iter().sum();
            let (from, to) = (cuts[0], cuts[cuts.len() - 1]);
            let expected: i64 = rows
                .iter()
                .flat_map(|r| r.quarters().collect::<Vec<_>>())
                .filter(|&(t, _)| t >= from && t < to)
                .map(|(_, v)| v)
                .sum();
            prop_assert_eq!(filled, expected);
        }
    }
}
