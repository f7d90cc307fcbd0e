//! A log-bucketed latency histogram: values (nanoseconds) below 256 are counted exactly, above
//! that each power of two is split into 128 equal buckets, so a bucket is at most 1/128 of its
//! values wide and a percentile (reported as its bucket's midpoint) is within 0.4% of the
//! recorded value. Fixed size (7,424 counters), no allocation while recording; one per client
//! task, merged at the end.
//!
//! Worked example: 1,000,000 ns = 2^19 × 1.907..., so its exponent is 19, the bucket width is
//! 2^(19-7) = 4,096 ns, and it lands in the bucket [999,424, 1,003,520), reported as 1,001,472.

use std::time::Duration;

/// Values below this are their own bucket.
const EXACT: u64 = 256;
/// log2 of the buckets per power of two above `EXACT`.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// 256 exact buckets, then 128 for each exponent 8..=63.
const BUCKETS: usize = EXACT as usize + (64 - 8) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], count: 0, sum: 0, min: u64::MAX, max: 0 }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn record_duration(&mut self, duration: Duration) {
        self.record(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Exact; 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Exact; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest recorded value with at least
    /// `ceil(q × count)` values at or below it, as its bucket's midpoint clamped to [min, max];
    /// the largest rank is the exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return self.max;
        }
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bounds(bucket);
                return (low + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= 8
    let top = value >> (exponent - SUB_BITS); // in [128, 256)
    EXACT as usize + (exponent as usize - 8) * SUB as usize + (top - SUB) as usize
}

/// A bucket's lowest value and width.
fn bounds(bucket: usize) -> (u64, u64) {
    if bucket < EXACT as usize {
        return (bucket as u64, 1);
    }
    let above = bucket - EXACT as usize;
    let exponent = (above / SUB as usize) as u32 + 8;
    let top = SUB + (above % SUB as usize) as u64;
    let shift = exponent - SUB_BITS;
    (top << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: u64, expected: u64, what: &str) {
        let error = (actual as f64 - expected as f64).abs() / expected as f64;
        assert!(error <= 0.01, "{what}: {actual} is not within 1% of {expected}");
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        let mut value = 1u64;
        let mut samples = vec![0, 1, 255, 256, 257, 511, 512, u64::MAX - 1, u64::MAX];
        while value < u64::MAX / 3 {
            samples.extend([value - 1, value, value + 1]);
            value = value * 3 + 7;
        }
        for value in samples {
            let (low, width) = bounds(index(value));
            assert!(low <= value && value - low < width, "{value} outside [{low}, +{width})");
            assert!(value < EXACT || width as f64 / low as f64 <= 1.0 / SUB as f64);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        // 1..=100,000 µs, in nanoseconds: the q-quantile is q × 100,000 µs.
        let mut histogram = Histogram::new();
        for micros in 1..=100_000u64 {
            histogram.record(micros * 1_000);
        }
        assert_eq!(histogram.count(), 100_000);
        assert_close(histogram.quantile(0.5), 50_000_000, "p50");
        assert_close(histogram.quantile(0.99), 99_000_000, "p99");
        assert_close(histogram.quantile(0.999), 99_900_000, "p99.9");
        assert_eq!(histogram.quantile(1.0), 100_000_000);
        assert_eq!(histogram.max(), 100_000_000);
        assert_eq!(histogram.min(), 1_000);
        assert!((histogram.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution() {
        // 990 fast ops at 1 ms, 9 at 20 ms, one at 2 s: p50 and p99 are 1 ms, p99.9 20 ms.
        let mut histogram = Histogram::new();
        for _ in 0..990 {
            histogram.record_duration(Duration::from_millis(1));
        }
        for _ in 0..9 {
            histogram.record_duration(Duration::from_millis(20));
        }
        histogram.record_duration(Duration::from_secs(2));
        assert_close(histogram.quantile(0.5), 1_000_000, "p50");
        assert_close(histogram.quantile(0.99), 1_000_000, "p99");
        assert_close(histogram.quantile(0.991), 20_000_000, "p99.1");
        assert_close(histogram.quantile(0.999), 20_000_000, "p99.9");
        assert_eq!(histogram.quantile(1.0), 2_000_000_000);
    }

    #[test]
    fn small_values_are_exact_and_single_values_are_themselves() {
        let mut histogram = Histogram::new();
        for value in 0..100 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 49);
        assert_eq!(histogram.quantile(0.0), 0);
        let mut one = Histogram::new();
        one.record(123_456_789);
        assert_eq!(one.quantile(0.5), 123_456_789, "clamped to min and max");
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }

    #[test]
    fn merging_equals_recording_into_one() {
        let mut whole = Histogram::new();
        let mut parts = [Histogram::new(), Histogram::new(), Histogram::new()];
        for value in 0..30_000u64 {
            let value = value * value % 7_000_003 + 1;
            whole.record(value);
            parts[(value % 3) as usize].record(value);
        }
        let mut merged = Histogram::new();
        for part in &parts {
            merged.merge(part);
        }
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile(q), whole.quantile(q));
        }
        assert_eq!((merged.count(), merged.min(), merged.max()), (whole.count(), whole.min(), whole.max()));
    }
}
