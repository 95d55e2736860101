//! How long the replicas' log syncs took during a benchmark's window, read from the
//! process's Prometheus recorder (`boxoffice_raft_log_fsync_seconds`, every replica's
//! histogram summed), so a run's tail latency can be read beside the disk it ran on: on this
//! shared machine the disk's sync latency moves from one run to the next, and the tail at
//! low concurrency follows it.
//!
//! The recorder keeps cumulative bucket counts. The window is the difference of two
//! readings, and its percentiles are interpolated within a bucket, as Prometheus'
//! `histogram_quantile` does, so they are as fine as the buckets
//! (`telemetry::LOG_FSYNC_BUCKETS_SECONDS`).

use boxoffice_raft::telemetry::LOG_FSYNC_SECONDS;

/// A histogram's cumulative counts per upper bound (seconds, ascending, the last `+Inf`, so
/// its count is the whole count) and its sum.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncHistogram {
    buckets: Vec<(f64, u64)>,
    sum_secs: f64,
}

impl SyncHistogram {
    /// The log sync histogram as the process's recorder has it now; `None` when the
    /// recorder is not this crate's (another was installed first).
    pub fn now() -> Option<SyncHistogram> {
        let handle = boxoffice_api::metrics::prometheus()?;
        Some(SyncHistogram::parse(&handle.render(), LOG_FSYNC_SECONDS))
    }

    /// `metric`'s histogram in Prometheus' text format, summed over its label sets. Lines
    /// of other metrics, and lines that do not parse, are skipped.
    pub fn parse(text: &str, metric: &str) -> SyncHistogram {
        let mut histogram = SyncHistogram::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(metric) else {
                continue;
            };
            let Some(value) = line.rsplit(' ').next() else {
                continue;
            };
            if let Some(labels) = rest.strip_prefix("_bucket{") {
                let (Some(bound), Ok(count)) = (le_of(labels), value.parse::<u64>()) else {
                    continue;
                };
                match histogram.buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some((_, total)) => *total += count,
                    None => histogram.buckets.push((bound, count)),
                }
            } else if rest.starts_with("_sum") {
                histogram.sum_secs += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// What was recorded after `earlier` (a reading of the same histogram).
    pub fn since(&self, earlier: &SyncHistogram) -> SyncHistogram {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, n)| *n)
        };
        SyncHistogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, n)| (bound, n.saturating_sub(before(bound))))
                .collect(),
            sum_secs: (self.sum_secs - earlier.sum_secs).max(0.0),
        }
    }

    /// Syncs recorded: the `+Inf` bucket's cumulative count.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |&(_, n)| n)
    }

    pub fn mean_secs(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_secs / count as f64)
    }

    /// The `q` quantile in seconds, interpolated linearly within its bucket (from the
    /// bucket below's bound, or 0); the highest finite bound when it falls past it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below as f64) / (cumulative - below) as f64;
                return Some(lower + (bound - lower) * within);
            }
            (lower, below) = (bound, cumulative);
        }
        Some(lower)
    }
}

/// The `le` label's bound in a bucket line's labels (`+Inf` is infinity).
fn le_of(labels: &str) -> Option<f64> {
    let start = labels.find("le=\"")? + 4;
    let end = start + labels[start..].find('"')?;
    match &labels[start..end] {
        "+Inf" => Some(f64::INFINITY),
        bound => bound.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "boxoffice_raft_log_fsync_seconds";

    fn text(a: [u64; 4], b: [u64; 4], sum: f64) -> String {
        let mut out = String::from("# TYPE boxoffice_raft_log_fsync_seconds histogram\n");
        for (node, counts) in [("1", a), ("2", b)] {
            for (le, n) in ["0.001", "0.0025", "0.005", "+Inf"].iter().zip(counts) {
                out += &format!("{M}_bucket{{node=\"{node}\",group=\"1\",le=\"{le}\"}} {n}\n");
            }
            out += &format!("{M}_sum{{node=\"{node}\",group=\"1\"}} {}\n", sum / 2.0);
            out += &format!("{M}_count{{node=\"{node}\",group=\"1\"}} {}\n", counts[3]);
        }
        out += "boxoffice_raft_proposals_total{node=\"1\",group=\"1\"} 77\n";
        out += "boxoffice_raft_log_fsync_seconds_bucket{le=\"garbage\"} 5\n";
        out
    }

    #[test]
    fn label_sets_are_summed_and_other_metrics_skipped() {
        let h = SyncHistogram::parse(&text([1, 2, 3, 4], [10, 20, 30, 40], 0.5), M);
        assert_eq!(
            h.buckets,
            vec![(0.001, 11), (0.0025, 22), (0.005, 33), (f64::INFINITY, 44)]
        );
        assert_eq!(h.count(), 44);
        assert!((h.mean_secs().unwrap() - 0.5 / 44.0).abs() < 1e-12);
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let before = SyncHistogram::parse(&text([1, 2, 3, 4], [0, 0, 0, 0], 0.1), M);
        let after = SyncHistogram::parse(&text([1, 2, 3, 4], [50, 100, 100, 100], 0.3), M);
        let window = after.since(&before);
        assert_eq!(window.count(), 100);
        assert_eq!(
            window.buckets,
            vec![
                (0.001, 50),
                (0.0025, 100),
                (0.005, 100),
                (f64::INFINITY, 100)
            ]
        );
        assert!((window.mean_secs().unwrap() - 0.002).abs() < 1e-12);
        // Half the syncs within 1 ms, the other half between 1 and 2.5 ms.
        assert!((window.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((window.quantile(0.25).unwrap() - 0.0005).abs() < 1e-12);
        assert!((window.quantile(0.99).unwrap() - (0.001 + 0.0015 * 0.98)).abs() < 1e-12);
    }

    #[test]
    fn past_the_last_bound_is_the_last_bound_and_nothing_is_none() {
        let h = SyncHistogram::parse(&text([0, 0, 1, 10], [0, 0, 0, 0], 1.0), M);
        assert_eq!(h.quantile(0.99), Some(0.005));
        // Within (2.5 ms, 5 ms], the bucket's own lower bound.
        assert!((h.quantile(0.05).unwrap() - 0.00375).abs() < 1e-12);
        let empty = SyncHistogram::parse(&text([0; 4], [0; 4], 0.0), M);
        assert_eq!(empty.quantile(0.5), None);
        assert_eq!(empty.mean_secs(), None);
        assert_eq!(SyncHistogram::default().quantile(0.5), None);
    }
}
