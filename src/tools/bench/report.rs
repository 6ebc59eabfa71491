//! Samples and the `nats bench` report: the human lines (`Pub stats: 1,234,567 msgs/sec ~
//! 18.84 MB/sec`, per-client lines, `min | avg | max | stddev`) and the CSV, shaped as nats.go's
//! `bench` package shapes them so the two tools' output can be read side by side.
//!
//! Cold: built once, after the run. Invariant: a sample's rate divides by a duration that is
//! never zero (it is clamped to 1 ns), so no report holds `inf` or `NaN`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::units::{comma, human_bytes};

/// One client's work: how many messages (or requests, or connects) in what time.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Sample {
    pub job_msg_count: u64,
    pub msg_bytes: u64,
    pub start: Instant,
    pub end: Instant,
}

impl Sample {
    /// A sample of `count` messages of `size` bytes between `start` and `end`.
    pub fn new(count: u64, size: usize, start: Instant, end: Instant) -> Sample {
        Sample {
            job_msg_count: count,
            msg_bytes: count.saturating_mul(size as u64),
            start,
            end,
        }
    }

    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }

    /// Messages per second, truncated as nats.go's `Rate` truncates.
    pub fn rate(&self) -> i64 {
        (self.job_msg_count as f64 / self.seconds()) as i64
    }

    /// Payload bytes per second.
    pub fn throughput(&self) -> f64 {
        self.msg_bytes as f64 / self.seconds()
    }

    /// `1,234,567 msgs/sec ~ 18.84 MB/sec`.
    pub fn summary(&self) -> String {
        let rate = comma(self.rate());
        format!("{rate} msgs/sec ~ {}/sec", human_bytes(self.throughput()))
    }

    fn seconds(&self) -> f64 {
        self.duration().as_secs_f64().max(1e-9)
    }
}

/// The samples of one side (publishers or subscribers) and their aggregate.
#[derive(Clone, Debug, Default)]
pub struct SampleGroup {
    pub samples: Vec<Sample>,
}

impl SampleGroup {
    pub fn new(samples: Vec<Sample>) -> SampleGroup {
        SampleGroup { samples }
    }

    pub fn has_samples(&self) -> bool {
        !self.samples.is_empty()
    }

    /// All samples as one: counts summed, from the earliest start to the latest end.
    pub fn aggregate(&self) -> Option<Sample> {
        let first = self.samples.first()?;
        let mut total = *first;
        for s in &self.samples[1..] {
            total.job_msg_count += s.job_msg_count;
            total.msg_bytes += s.msg_bytes;
            total.start = total.start.min(s.start);
            total.end = total.end.max(s.end);
        }
        Some(total)
    }

    /// `min 1,000 | avg 1,200 | max 1,400 | stddev 200 msgs`, over per-client rates.
    pub fn statistics(&self, unit: &str) -> String {
        let rates: Vec<i64> = self.samples.iter().map(Sample::rate).collect();
        let min = rates.iter().copied().min().unwrap_or(0);
        let max = rates.iter().copied().max().unwrap_or(0);
        let avg = average(&rates);
        let variance = rates
            .iter()
            .map(|&r| (r as f64 - avg as f64).powi(2))
            .sum::<f64>()
            / rates.len().max(1) as f64;
        let stddev = variance.sqrt() as i64;
        format!(
            "min {} | avg {} | max {} | stddev {} {unit}",
            comma(min),
            comma(avg),
            comma(max),
            comma(stddev)
        )
    }
}

fn average(rates: &[i64]) -> i64 {
    let sum: i128 = rates.iter().map(|&r| i128::from(r)).sum();
    let len = i128::try_from(rates.len().max(1)).unwrap_or(1);
    i64::try_from(sum / len).unwrap_or(i64::MAX)
}

/// A finished run: publisher and subscriber samples under a name and a run id.
#[derive(Clone, Debug)]
pub struct Benchmark {
    pub name: String,
    pub run_id: String,
    pub pubs: SampleGroup,
    pub subs: SampleGroup,
}

impl Benchmark {
    /// The report text, line for line as nats.go `Benchmark.Report`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if !self.pubs.has_samples() && !self.subs.has_samples() {
            return "No publisher or subscribers. Nothing to report.\n".to_string();
        }
        let mut indent = "";
        if let (Some(p), Some(s)) = (self.pubs.aggregate(), self.subs.aggregate()) {
            let overall = combined(p, s);
            let _ = writeln!(out, "{} Pub/Sub stats: {}", self.name, overall.summary());
            indent = " ";
        }
        write_group(&mut out, indent, "Pub", &self.pubs);
        write_group(&mut out, indent, "Sub", &self.subs);
        out
    }

    /// The CSV, as nats.go `Benchmark.CSV`: subscribers (`S0`..) then publishers (`P0`..).
    pub fn csv(&self) -> String {
        let mut out =
            String::from("#RunID,ClientID,MsgCount,MsgBytes,MsgsPerSec,BytesPerSec,DurationSecs\n");
        let groups = [("S", &self.subs), ("P", &self.pubs)];
        for (prefix, group) in groups {
            for (i, s) in group.samples.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{},{prefix}{i},{},{},{},{:.6},{:.6}",
                    self.run_id,
                    s.job_msg_count,
                    s.msg_bytes,
                    s.rate(),
                    s.throughput(),
                    s.duration().as_secs_f64()
                );
            }
        }
        out
    }
}

/// Both sides as one sample (nats.go `Benchmark.Close`): counts added, widest time span.
fn combined(p: Sample, s: Sample) -> Sample {
    Sample {
        job_msg_count: p.job_msg_count + s.job_msg_count,
        msg_bytes: p.msg_bytes + s.msg_bytes,
        start: p.start.min(s.start),
        end: p.end.max(s.end),
    }
}

fn write_group(out: &mut String, indent: &str, side: &str, group: &SampleGroup) {
    let Some(total) = group.aggregate() else {
        return;
    };
    let _ = writeln!(out, "{indent}{side} stats: {}", total.summary());
    if group.samples.len() < 2 {
        return;
    }
    for (i, s) in group.samples.iter().enumerate() {
        let count = s.job_msg_count;
        let _ = writeln!(out, "{indent} [{}] {} ({count} msgs)", i + 1, s.summary());
    }
    let _ = writeln!(out, "{indent} {}", group.statistics("msgs"));
}

/// Splits `total` over `clients` as evenly as possible, the first ones taking the remainder
/// (nats.go `MsgsPerClient`).
pub fn msgs_per_client(total: u64, clients: usize) -> Vec<u64> {
    if clients == 0 {
        return Vec::new();
    }
    let n = clients as u64;
    (0..n)
        .map(|i| total / n + u64::from(i < total % n))
        .collect()
}

/// A run id like nats.go's (a NUID): 22 characters of `[0-9A-Za-z]`.
pub fn new_run_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..22)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(count: u64, size: usize, millis: u64, base: Instant) -> Sample {
        Sample::new(count, size, base, base + Duration::from_millis(millis))
    }

    #[test]
    fn pub_sub_report_has_nats_bench_lines() {
        let base = Instant::now();
        let bench = Benchmark {
            name: "NATS".into(),
            run_id: "RUN".into(),
            pubs: SampleGroup::new(vec![sample(1000, 16, 500, base)]),
            subs: SampleGroup::new(vec![
                sample(1000, 16, 500, base),
                sample(1000, 16, 1000, base),
            ]),
        };
        let report = bench.report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "NATS Pub/Sub stats: 3,000 msgs/sec ~ 46.88 KB/sec"
        );
        assert_eq!(lines[1], " Pub stats: 2,000 msgs/sec ~ 31.25 KB/sec");
        assert_eq!(lines[2], " Sub stats: 2,000 msgs/sec ~ 31.25 KB/sec");
        assert_eq!(lines[3], "  [1] 2,000 msgs/sec ~ 31.25 KB/sec (1000 msgs)");
        assert_eq!(lines[4], "  [2] 1,000 msgs/sec ~ 15.62 KB/sec (1000 msgs)");
        assert_eq!(
            lines[5],
            "  min 1,000 | avg 1,500 | max 2,000 | stddev 500 msgs"
        );
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn pub_only_report_has_no_indent() {
        let base = Instant::now();
        let bench = Benchmark {
            name: "NATS".into(),
            run_id: "RUN".into(),
            pubs: SampleGroup::new(vec![sample(10, 1, 1000, base)]),
            subs: SampleGroup::default(),
        };
        assert_eq!(bench.report(), "Pub stats: 10 msgs/sec ~ 10.00 B/sec\n");
    }

    #[test]
    fn csv_rows_subscribers_first() {
        let base = Instant::now();
        let bench = Benchmark {
            name: "NATS".into(),
            run_id: "RUN".into(),
            pubs: SampleGroup::new(vec![sample(10, 2, 1000, base)]),
            subs: SampleGroup::new(vec![sample(10, 2, 2000, base)]),
        };
        let csv = bench.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "#RunID,ClientID,MsgCount,MsgBytes,MsgsPerSec,BytesPerSec,DurationSecs"
        );
        assert_eq!(lines[1], "RUN,S0,10,20,5,10.000000,2.000000");
        assert_eq!(lines[2], "RUN,P0,10,20,10,20.000000,1.000000");
    }

    #[test]
    fn zero_duration_is_finite() {
        let now = Instant::now();
        let s = Sample::new(5, 1, now, now);
        assert!(s.throughput().is_finite());
        assert!(s.rate() > 0);
    }

    #[test]
    fn split_over_clients() {
        assert_eq!(msgs_per_client(10, 3), vec![4, 3, 3]);
        assert_eq!(msgs_per_client(2, 3), vec![1, 1, 0]);
        assert!(msgs_per_client(10, 0).is_empty());
        assert_eq!(new_run_id().len(), 22);
    }
}
