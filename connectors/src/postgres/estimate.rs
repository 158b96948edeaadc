//! Where chunk boundaries fall on a large table, estimated from the planner statistics of its
//! watermark column (histogram and most common values), so planning costs one index probe per
//! chunk instead of a walk over every index entry in the range.

/// A place to cut the range, in watermark microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// Between the rows stamped before this instant and those at or after it.
    Before(i64),
    /// Inside the rows that all carry this watermark: a tie too large for one chunk, cut by key.
    Within(i64),
}

/// The watermark's distribution as the statistics describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Histogram bounds, ascending: bucket `i` spans `bounds[i]..bounds[i + 1]` and holds
    /// `bucket_rows` rows spread evenly (the histogram leaves the common values out).
    bounds: Vec<i64>,
    bucket_rows: f64,
    /// The most common values and their rows, ascending by value.
    common: Vec<(i64, f64)>,
}

impl Distribution {
    /// From `pg_stats`: histogram bounds, most common values with their frequencies, the
    /// fraction of NULLs, and the table's row estimate. `None` when there is no histogram.
    pub fn new(
        mut bounds: Vec<i64>,
        mut common: Vec<(i64, f64)>,
        null_frac: f64,
        rows: f64,
    ) -> Option<Self> {
        bounds.sort_unstable();
        if bounds.len() < 2 || rows <= 0.0 {
            return None;
        }
        let common_frac: f64 = common.iter().map(|(_, f)| f).sum();
        let histogram_rows = rows * (1.0 - null_frac - common_frac).max(0.0);
        let bucket_rows = histogram_rows / (bounds.len() - 1) as f64;
        common.sort_by_key(|(v, _)| *v);
        let common = common.into_iter().map(|(v, f)| (v, f * rows)).collect();
        Some(Distribution {
            bounds,
            bucket_rows,
            common,
        })
    }

    /// The last instant the statistics know of; rows past it were written since.
    pub fn end(&self) -> i64 {
        let last_common = self.common.last().map_or(i64::MIN, |(v, _)| *v);
        (*self.bounds.last().expect("two bounds")).max(last_common)
    }

    /// Rows estimated in `(from, to]`.
    pub fn rows_between(&self, from: i64, to: i64) -> f64 {
        self.pieces(from, to)
            .map(|(_, _, rows, tie)| rows + tie)
            .sum()
    }

    /// The range `(from, to]` as pieces `(a, b, rows spread over (a, b), rows tied at b)`.
    fn pieces(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, i64, f64, f64)> + '_ {
        let mut marks: Vec<i64> = self
            .bounds
            .iter()
            .copied()
            .chain(self.common.iter().map(|(v, _)| *v))
            .filter(|m| *m > from && *m < to)
            .chain([from, to])
            .collect();
        marks.sort_unstable();
        marks.dedup();
        let pairs: Vec<(i64, i64)> = marks.windows(2).map(|w| (w[0], w[1])).collect();
        pairs.into_iter().map(move |(a, b)| {
            let spread = self.spread(a, b);
            let tie = self
                .common
                .binary_search_by_key(&b, |(v, _)| *v)
                .map_or(0.0, |i| self.common[i].1);
            (a, b, spread, tie)
        })
    }

    /// Histogram rows spread over `(a, b)`, where no bound lies strictly inside.
    fn spread(&self, a: i64, b: i64) -> f64 {
        let i = self.bounds.partition_point(|x| *x <= a);
        if i == 0 || i == self.bounds.len() {
            return 0.0;
        }
        let (lo, hi) = (self.bounds[i - 1], self.bounds[i]);
        if hi <= lo {
            return 0.0;
        }
        self.bucket_rows * (b - a) as f64 / (hi - lo) as f64
    }

    /// Cuts `(from, to]` into pieces of about `chunk_rows` rows.
    pub fn cuts(&self, from: i64, to: i64, chunk_rows: u64) -> Vec<Cut> {
        let chunk = chunk_rows.max(1) as f64;
        let mut cuts = Vec::new();
        let mut filled = 0.0;
        for (a, b, spread, tie) in self.pieces(from, to) {
            let mut start = a as f64;
            let mut left = spread;
            while filled + left >= chunk && left > 0.0 {
                let take = chunk - filled;
                let at = start + (b as f64 - start) * take / left;
                let at = (at.ceil() as i64).clamp(a + 1, b);
                if cuts.last() != Some(&Cut::Before(at)) {
                    cuts.push(Cut::Before(at));
                }
                left -= take;
                start = at as f64;
                filled = 0.0;
            }
            filled += left;
            if tie > 0.0 {
                if filled + tie >= chunk && filled > 0.0 && cuts.last() != Some(&Cut::Before(b)) {
                    cuts.push(Cut::Before(b));
                    filled = 0.0;
                }
                if tie > chunk {
                    cuts.push(Cut::Within(b));
                    filled = tie % chunk;
                } else {
                    filled += tie;
                }
            }
        }
        cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(rows: f64) -> Distribution {
        // 100 buckets over 0..1_000_000.
        let bounds = (0..=100).map(|i| i * 10_000).collect();
        Distribution::new(bounds, Vec::new(), 0.0, rows).unwrap()
    }

    #[test]
    fn an_even_histogram_cuts_even_chunks() {
        let d = even(1_000_000.0);
        let cuts = d.cuts(0, 1_000_000, 100_000);
        let expected: Vec<Cut> = (1..10).map(|i| Cut::Before(i * 100_000)).collect();
        assert_eq!(&cuts[..9], &expected[..]);
        assert!(cuts.len() <= 10);
        assert!((d.rows_between(0, 500_000) - 500_000.0).abs() < 1.0);
    }

    #[test]
    fn a_range_inside_one_bucket_is_interpolated() {
        let d = even(1_000_000.0);
        // Bucket 0..10_000 holds 10,000 rows: 2,500-row chunks every 2,500 µs.
        assert_eq!(
            d.cuts(0, 10_000, 2_500),
            vec![
                Cut::Before(2_500),
                Cut::Before(5_000),
                Cut::Before(7_500),
                Cut::Before(10_000)
            ]
        );
    }

    #[test]
    fn a_tie_larger_than_a_chunk_is_cut_within() {
        let bounds = vec![0, 100, 200];
        // 1,000 rows; 60% share the instant 150, the rest spread over 0..200.
        let d = Distribution::new(bounds, vec![(150, 0.6)], 0.0, 1_000.0).unwrap();
        let cuts = d.cuts(0, 200, 250);
        assert!(cuts.contains(&Cut::Within(150)), "{cuts:?}");
        assert!(cuts.contains(&Cut::Before(150)), "{cuts:?}");
        assert!((d.rows_between(0, 200) - 1_000.0).abs() < 1.0);
        assert!((d.rows_between(149, 150) - 600.0 - 2.0).abs() < 1.0);
    }

    #[test]
    fn rows_past_the_histogram_are_not_guessed() {
        let d = even(1_000_000.0);
        assert_eq!(d.end(), 1_000_000);
        assert_eq!(d.rows_between(1_000_000, 5_000_000), 0.0);
        assert!(d.cuts(2_000_000, 3_000_000, 10).is_empty());
    }

    #[test]
    fn no_histogram_means_no_estimate() {
        assert!(Distribution::new(vec![5], Vec::new(), 0.0, 10.0).is_none());
        assert!(Distribution::new(vec![1, 2], Vec::new(), 0.0, 0.0).is_none());
    }
}
