//! The bookkeeping of the soak scenario of `trustgate-load` (`trustgate-load soak`), kept apart
//! from the HTTP driving so it can be tested without a server:
//!
//! - [`parse_duration`] reads `--duration` (`30m`, `90s`, `1h`, a bare number of seconds);
//! - [`mix_schedule`] spreads a weighted mix of operations evenly over one round;
//! - [`Windows`] says which part of a run is warm-up, "the first window" and "the last window"
//!   (1 minute and 5 minutes for runs of 11 minutes or more, shrunk proportionally below);
//! - [`Recorder`] collects latencies and errors per operation in one-second buckets, and the
//!   server's RSS samples;
//! - [`verdict`] applies the three criteria: no errors, RSS flat, p99 stable.
//!
//! Latencies are nanoseconds from the *scheduled* send time of an open-loop request, so a
//! stalled server shows up as latency of every request that should have been sent meanwhile
//! (no coordinated omission).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Stats, fmt_ns};

/// Below this run length the warm-up and the windows shrink proportionally.
pub const FULL_WINDOWS_FROM: Duration = Duration::from_secs(11 * 60);
/// Warm-up excluded from both windows, for a run of [`FULL_WINDOWS_FROM`] or longer.
pub const WARMUP: Duration = Duration::from_secs(60);
/// Length of the first and the last window, for a run of [`FULL_WINDOWS_FROM`] or longer.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// The mean RSS of the last window may differ from the first window's by at most this fraction.
pub const RSS_TOLERANCE: f64 = 0.10;
/// The p99 of an operation over the last window may be at most this multiple of the first's...
pub const P99_FACTOR: f64 = 1.5;
/// ... or exceed it by at most this much: the load generator's timer wakes up to 1 ms late and
/// that lateness is part of every latency measured from the scheduled time, so differences
/// below it are not a change in the server.
pub const P99_SLACK: Duration = Duration::from_millis(1);

/// Parses `30m`, `90s`, `1h`, `2m30s` or a bare number of seconds; zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return positive(Duration::from_secs(secs), text);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (use s, m or h)")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?}: too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!("{text:?}: a unit must follow {digits}"));
    }
    positive(Duration::from_secs(total), text)
}

fn positive(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("{text:?}: the duration must be positive"))
    } else {
        Ok(d)
    }
}

/// Parses `--mix`: four comma-separated weights (check, tuple write + delete, grant,
/// introspection), each at most 1000, not all zero.
pub fn parse_mix(text: &str) -> Result<[u32; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [a, b, c, d] = parts.as_slice() else {
        return Err(format!(
            "{text:?}: four weights expected (check,write+delete,grant,introspection)"
        ));
    };
    let mut out = [0u32; 4];
    for (slot, part) in out.iter_mut().zip([a, b, c, d]) {
        *slot = part
            .parse()
            .ok()
            .filter(|w| *w <= 1000)
            .ok_or_else(|| format!("{text:?}: {part:?} is not a weight between 0 and 1000"))?;
    }
    if out.iter().all(|w| *w == 0) {
        return Err(format!("{text:?}: at least one weight must be positive"));
    }
    Ok(out)
}

/// One round of a weighted mix: operation `i` appears `weights[i]` times, spread as evenly as
/// possible (smooth weighted round robin), so any stretch of the round has about the mix's
/// proportions.
pub fn mix_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if current[i] > current[best] {
                best = i;
            }
        }
        if let Some(c) = current.get_mut(best) {
            *c -= total;
        }
        out.push(best);
    }
    out
}

/// Which seconds of a run count for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The run's length.
    pub run: Duration,
    /// Excluded from the start (caches filling, the allocator growing to its working size).
    pub warmup: Duration,
    /// Length of the first window (right after the warm-up) and of the last (the run's end).
    pub window: Duration,
    /// Whether the run was shorter than [`FULL_WINDOWS_FROM`] and the windows shrank.
    pub scaled: bool,
}

impl Windows {
    /// 1-minute warm-up and 5-minute windows from 11 minutes on; below, both scaled by
    /// `run / 11 min` (so the windows never overlap).
    pub fn for_run(run: Duration) -> Windows {
        if run >= FULL_WINDOWS_FROM {
            return Windows {
                run,
                warmup: WARMUP,
                window: WINDOW,
                scaled: false,
            };
        }
        let f = run.as_secs_f64() / FULL_WINDOWS_FROM.as_secs_f64();
        Windows {
            run,
            warmup: WARMUP.mul_f64(f),
            window: WINDOW.mul_f64(f),
            scaled: true,
        }
    }

    /// `[start, end)` of the first window.
    pub fn first(&self) -> (Duration, Duration) {
        (self.warmup, self.warmup + self.window)
    }

    /// `[start, end)` of the last window.
    pub fn last(&self) -> (Duration, Duration) {
        (self.run.saturating_sub(self.window), self.run)
    }

    /// A human description for the verdict.
    pub fn describe(&self) -> String {
        let (a, b) = self.first();
        let (c, d) = self.last();
        let mut s = format!(
            "warm-up {} excluded; first window {}–{}, last window {}–{}",
            secs(self.warmup),
            secs(a),
            secs(b),
            secs(c),
            secs(d)
        );
        if self.scaled {
            s.push_str(&format!(
                " (run shorter than {}: warm-up and windows scaled from 1 min / 5 min by {:.2})",
                secs(FULL_WINDOWS_FROM),
                self.run.as_secs_f64() / FULL_WINDOWS_FROM.as_secs_f64()
            ));
        }
        s
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.0} s", d.as_secs_f64())
    }
}

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Connection refused or reset, timeout, a body that could not be read.
    Transport,
    /// An HTTP status other than the expected one.
    Status(u16),
    /// The expected status with an answer that says something else (a check with the wrong
    /// `allowed`, an inactive token, a login without a session cookie).
    Unexpected,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Transport => f.write_str("transport"),
            ErrorKind::Status(s) => write!(f, "HTTP {s}"),
            ErrorKind::Unexpected => f.write_str("unexpected answer"),
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Per operation: latencies of the successful requests, nanoseconds.
    samples: Vec<Vec<u64>>,
    /// Per (operation, kind): failed requests.
    errors: BTreeMap<(usize, ErrorKind), u64>,
}

/// Latencies and errors per operation and second, and RSS samples, of one run.
#[derive(Debug, Clone)]
pub struct Recorder {
    labels: Vec<&'static str>,
    buckets: Vec<Bucket>,
    /// (seconds since the start, resident set size in KiB).
    rss: Vec<(f64, u64)>,
}

/// Statistics of one operation over a stretch of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpSummary {
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Latency percentiles of the successful requests.
    pub stats: Stats,
}

impl Recorder {
    /// A recorder for operations named `labels` (indices into it identify an operation).
    pub fn new(labels: Vec<&'static str>) -> Recorder {
        Recorder {
            labels,
            buckets: Vec::new(),
            rss: Vec::new(),
        }
    }

    /// The operations' names.
    pub fn labels(&self) -> &[&'static str] {
        &self.labels
    }

    fn bucket(&mut self, at: Duration) -> &mut Bucket {
        let i = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if self.buckets.len() <= i {
            let ops = self.labels.len();
            self.buckets.resize_with(i.saturating_add(1), || Bucket {
                samples: vec![Vec::new(); ops],
                errors: BTreeMap::new(),
            });
        }
        &mut self.buckets[i]
    }

    /// A successful request of operation `op`, scheduled `at` after the start.
    pub fn ok(&mut self, at: Duration, op: usize, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if let Some(v) = self.bucket(at).samples.get_mut(op) {
            v.push(ns);
        }
    }

    /// A failed request of operation `op`, scheduled `at` after the start.
    pub fn error(&mut self, at: Duration, op: usize, kind: ErrorKind) {
        *self.bucket(at).errors.entry((op, kind)).or_default() += 1;
    }

    /// The server's resident set size, `kib` KiB, `at` after the start.
    pub fn rss(&mut self, at: Duration, kib: u64) {
        self.rss.push((at.as_secs_f64(), kib));
    }

    /// A copy holding only the requests scheduled in `[from, to)` (and the RSS samples taken
    /// then), so a report can be computed without holding a lock over the whole run.
    pub fn slice(&self, from: Duration, to: Duration) -> Recorder {
        let lo = usize::try_from(from.as_secs()).unwrap_or(usize::MAX);
        let mut buckets = vec![Bucket::default(); lo.min(self.buckets.len())];
        buckets.extend(self.range(from, to).cloned());
        let (a, b) = (from.as_secs_f64(), to.as_secs_f64());
        Recorder {
            labels: self.labels.clone(),
            buckets,
            rss: self
                .rss
                .iter()
                .filter(|(t, _)| *t >= a && *t < b)
                .copied()
                .collect(),
        }
    }

    /// Every error so far, per (operation label, kind).
    pub fn errors(&self) -> BTreeMap<(&'static str, ErrorKind), u64> {
        self.errors_in(Duration::ZERO, Duration::MAX)
    }

    /// Errors of requests scheduled in `[from, to)`, per (operation label, kind).
    pub fn errors_in(
        &self,
        from: Duration,
        to: Duration,
    ) -> BTreeMap<(&'static str, ErrorKind), u64> {
        let mut out = BTreeMap::new();
        for b in self.range(from, to) {
            for ((op, kind), n) in &b.errors {
                let label = self.labels.get(*op).copied().unwrap_or("?");
                *out.entry((label, kind.clone())).or_default() += n;
            }
        }
        out
    }

    fn range(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Bucket> {
        let lo = usize::try_from(from.as_secs()).unwrap_or(usize::MAX);
        // A bucket belongs to the range when its second starts before `to`.
        let hi = usize::try_from(to.as_secs_f64().ceil() as u64).unwrap_or(usize::MAX);
        self.buckets
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i >= lo && *i < hi)
            .map(|(_, b)| b)
    }

    /// Per operation, requests scheduled in `[from, to)`.
    pub fn summary(&self, from: Duration, to: Duration) -> Vec<OpSummary> {
        (0..self.labels.len())
            .map(|op| {
                let mut all: Vec<u64> = self
                    .range(from, to)
                    .flat_map(|b| b.samples.get(op).into_iter().flatten().copied())
                    .collect();
                let errors = self
                    .range(from, to)
                    .flat_map(|b| b.errors.iter())
                    .filter(|((o, _), _)| *o == op)
                    .map(|(_, n)| n)
                    .sum();
                OpSummary {
                    requests: all.len() as u64,
                    errors,
                    stats: Stats::of(&mut all),
                }
            })
            .collect()
    }

    /// Mean RSS (KiB) of the samples taken in `[from, to)`, if any.
    pub fn rss_mean(&self, from: Duration, to: Duration) -> Option<f64> {
        let (from, to) = (from.as_secs_f64(), to.as_secs_f64());
        let xs: Vec<u64> = self
            .rss
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, k)| *k)
            .collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<u64>() as f64 / xs.len() as f64)
    }

    /// The last RSS sample taken in `[from, to)`, KiB.
    pub fn rss_last(&self, from: Duration, to: Duration) -> Option<u64> {
        let (from, to) = (from.as_secs_f64(), to.as_secs_f64());
        self.rss
            .iter()
            .rev()
            .find(|(t, _)| *t >= from && *t < to)
            .map(|(_, k)| *k)
    }

    /// The per-minute table: requests, errors by kind, p50/p99 per operation, RSS at the end
    /// of the minute. `minute` is counted from 0.
    pub fn minute_row(&self, minute: u64) -> String {
        let from = Duration::from_secs(minute * 60);
        let to = from + Duration::from_secs(60);
        let summary = self.summary(from, to);
        let requests: u64 = summary.iter().map(|s| s.requests + s.errors).sum();
        let mut row = format!("{:>4} {:>9}", minute + 1, requests);
        for s in &summary {
            row.push_str(&format!(
                " {:>9} {:>9}",
                fmt_ms(s.stats.p50_ns),
                fmt_ms(s.stats.p99_ns)
            ));
        }
        let rss = self
            .rss_last(from, to)
            .map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        row.push_str(&format!(" {rss:>9}"));
        let errors = self.errors_in(from, to);
        if errors.is_empty() {
            row.push_str("  0");
        } else {
            let list: Vec<String> = errors
                .iter()
                .map(|((op, kind), n)| format!("{op} {kind}: {n}"))
                .collect();
            row.push_str(&format!("  {}", list.join(", ")));
        }
        row
    }

    /// The header of [`Recorder::minute_row`].
    pub fn minute_header(&self) -> String {
        let mut h = format!("{:>4} {:>9}", "min", "requests");
        for l in &self.labels {
            let short: String = l.chars().take(8).collect();
            h.push_str(&format!(" {:>9} {:>9}", format!("{short} p50"), "p99"));
        }
        h.push_str(&format!(" {:>9}  errors", "RSS MiB"));
        h
    }
}

/// Milliseconds with two decimals, `-` for no samples.
fn fmt_ms(ns: f64) -> String {
    if ns == 0.0 {
        "-".into()
    } else {
        format!("{:.2}", ns / 1e6)
    }
}

/// One criterion of the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// What it checks.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figures it was decided on.
    pub detail: String,
}

/// The three criteria over a finished run:
/// - **errors**: no failed request in the whole run (warm-up included);
/// - **RSS flat**: the mean RSS over the last window is within [`RSS_TOLERANCE`] of the mean over
///   the first window (either direction); no samples in a window fails the criterion;
/// - **p99 stable**: for every operation with samples in both windows, p99(last) ≤
///   [`P99_FACTOR`] × p99(first), or p99(last) − p99(first) ≤ [`P99_SLACK`]; an operation
///   with samples in only one window fails.
pub fn verdict(rec: &Recorder, w: &Windows) -> Vec<Criterion> {
    let mut out = Vec::new();
    let errors = rec.errors();
    let total: u64 = errors.values().sum();
    out.push(Criterion {
        name: "0 errors",
        passed: total == 0,
        detail: if total == 0 {
            "no failed request".into()
        } else {
            let list: Vec<String> = errors
                .iter()
                .map(|((op, kind), n)| format!("{op} {kind}: {n}"))
                .collect();
            format!("{total} failed: {}", list.join(", "))
        },
    });

    let (f0, f1) = w.first();
    let (l0, l1) = w.last();
    let (first, last) = (rec.rss_mean(f0, f1), rec.rss_mean(l0, l1));
    out.push(match (first, last) {
        (Some(a), Some(b)) => {
            let change = (b - a) / a.max(1.0);
            Criterion {
                name: "RSS flat",
                passed: change.abs() <= RSS_TOLERANCE,
                detail: format!(
                    "mean RSS {:.1} MiB (first window) → {:.1} MiB (last window): {:+.1}% \
                     (limit ±{:.0}%)",
                    a / 1024.0,
                    b / 1024.0,
                    100.0 * change,
                    100.0 * RSS_TOLERANCE
                ),
            }
        }
        _ => Criterion {
            name: "RSS flat",
            passed: false,
            detail: "no RSS samples in one of the windows (is --server-pid set?)".into(),
        },
    });

    let (a, b) = (rec.summary(f0, f1), rec.summary(l0, l1));
    let mut passed = true;
    let mut parts = Vec::new();
    for ((label, a), b) in rec.labels().iter().zip(&a).zip(&b) {
        if a.requests == 0 && b.requests == 0 {
            continue;
        }
        let (p, q) = (a.stats.p99_ns, b.stats.p99_ns);
        let ok = a.requests > 0
            && b.requests > 0
            && (q <= P99_FACTOR * p || q - p <= P99_SLACK.as_nanos() as f64);
        passed &= ok;
        parts.push(format!(
            "{label} {} → {}{}",
            fmt_ns(p),
            fmt_ns(q),
            if ok { "" } else { " (unstable)" }
        ));
    }
    out.push(Criterion {
        name: "p99 stable",
        passed,
        detail: format!(
            "p99 first → last window, limit ×{P99_FACTOR} or +{} ms: {}",
            P99_SLACK.as_millis(),
            parts.join("; ")
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn at(t: u64) -> Duration {
        Duration::from_secs(t)
    }

    #[test]
    fn durations_reject_bad_input() {
        for bad in [
            "",
            "0",
            "0m",
            "m",
            "10x",
            "5m3",
            "-1",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_duration("90"), Ok(90 * S));
        assert_eq!(parse_duration("2m"), Ok(120 * S));
        assert_eq!(parse_duration("1h"), Ok(3600 * S));
        assert_eq!(parse_duration("2m30s"), Ok(150 * S));
    }

    #[test]
    fn mixes_reject_bad_input() {
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "0,0,0,0",
            "1,x,1,1",
            "1,-1,1,1",
            "1,1,1,1001",
        ] {
            assert!(parse_mix(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_mix("16,1,2,2"), Ok([16, 1, 2, 2]));
        assert_eq!(parse_mix(" 1, 0 ,0,0"), Ok([1, 0, 0, 0]));
    }

    #[test]
    fn the_schedule_keeps_the_weights_and_spreads_them() {
        let s = mix_schedule(&[16, 2, 1]);
        assert_eq!(s.len(), 19);
        assert_eq!(s.iter().filter(|&&o| o == 0).count(), 16);
        assert_eq!(s.iter().filter(|&&o| o == 1).count(), 2);
        assert_eq!(s.iter().filter(|&&o| o == 2).count(), 1);
        // The two `1`s are not next to each other: spread, not grouped.
        let ones: Vec<usize> = (0..s.len()).filter(|&i| s[i] == 1).collect();
        assert!(ones[1] - ones[0] > 4, "{s:?}");
        assert!(mix_schedule(&[]).is_empty());
        assert!(mix_schedule(&[0, 0]).is_empty());
    }

    #[test]
    fn windows_shrink_below_eleven_minutes_and_never_overlap() {
        let full = Windows::for_run(30 * 60 * S);
        assert!(!full.scaled);
        assert_eq!(full.first(), (60 * S, 360 * S));
        assert_eq!(full.last(), (25 * 60 * S, 30 * 60 * S));
        let short = Windows::for_run(180 * S);
        assert!(short.scaled);
        assert!(short.describe().contains("scaled"));
        assert!(short.first().1 <= short.last().0, "{short:?}");
        assert!(short.warmup > Duration::ZERO && short.warmup < 60 * S);
        let edge = Windows::for_run(11 * 60 * S);
        assert_eq!(edge.first().1, edge.last().0);
    }

    fn steady(rec: &mut Recorder, run: u64, check_ms: u64, rss: impl Fn(u64) -> u64) {
        for t in 0..run {
            rec.ok(at(t), 0, Duration::from_millis(check_ms));
            rec.ok(at(t), 1, Duration::from_millis(200));
            if t % 10 == 0 {
                rec.rss(at(t), rss(t));
            }
        }
    }

    fn passed(v: &[Criterion], name: &str) -> bool {
        v.iter().find(|c| c.name == name).expect("criterion").passed
    }

    #[test]
    fn one_error_fails_the_run() {
        let w = Windows::for_run(20 * 60 * S);
        let mut rec = Recorder::new(vec!["check", "login"]);
        steady(&mut rec, 1200, 2, |_| 100_000);
        // In the warm-up: still counts.
        rec.error(10 * S, 1, ErrorKind::Status(429));
        let v = verdict(&rec, &w);
        assert!(!passed(&v, "0 errors"));
        assert!(v[0].detail.contains("login HTTP 429: 1"), "{}", v[0].detail);
        assert!(passed(&v, "RSS flat") && passed(&v, "p99 stable"));
    }

    #[test]
    fn growing_rss_fails_and_flat_rss_passes() {
        let w = Windows::for_run(20 * 60 * S);
        let mut rec = Recorder::new(vec!["check", "login"]);
        // 100 MiB growing by 20% over the run.
        steady(&mut rec, 1200, 2, |t| 100_000 + t * 20_000 / 1200);
        assert!(!passed(&verdict(&rec, &w), "RSS flat"));

        let mut rec = Recorder::new(vec!["check", "login"]);
        // A big warm-up growth is excluded; afterwards ±2%.
        steady(&mut rec, 1200, 2, |t| {
            if t < 60 {
                50_000
            } else {
                100_000 + (t % 3) * 1_000
            }
        });
        let v = verdict(&rec, &w);
        assert!(passed(&v, "RSS flat"), "{v:?}");
        assert!(passed(&v, "0 errors") && passed(&v, "p99 stable"));

        let mut none = Recorder::new(vec!["check"]);
        none.ok(S, 0, Duration::from_millis(1));
        assert!(!passed(&verdict(&none, &w), "RSS flat"));
    }

    #[test]
    fn a_rising_p99_fails_and_jitter_under_the_slack_passes() {
        let w = Windows::for_run(20 * 60 * S);
        let mut rec = Recorder::new(vec!["check", "login"]);
        steady(&mut rec, 1200, 4, |_| 100_000);
        // The last five minutes: checks at 10 ms (×2.5).
        for t in 900..1200 {
            for _ in 0..10 {
                rec.ok(at(t), 0, Duration::from_millis(10));
            }
        }
        let v = verdict(&rec, &w);
        assert!(!passed(&v, "p99 stable"));
        assert!(v[2].detail.contains("check") && v[2].detail.contains("unstable"));

        // 0.3 ms → 0.9 ms is ×3 but within the generator's 1 ms timer slack.
        let mut rec = Recorder::new(vec!["check"]);
        for t in 0..1200 {
            let us = if t >= 900 { 900 } else { 300 };
            rec.ok(at(t), 0, Duration::from_micros(us));
            rec.rss(at(t), 1000);
        }
        assert!(passed(&verdict(&rec, &w), "p99 stable"));

        // An operation that stopped answering successfully is not "stable".
        let mut rec = Recorder::new(vec!["check", "grant"]);
        for t in 0..1200 {
            rec.ok(at(t), 0, Duration::from_millis(1));
            if t < 600 {
                rec.ok(at(t), 1, Duration::from_millis(1));
            }
            rec.rss(at(t), 1000);
        }
        assert!(!passed(&verdict(&rec, &w), "p99 stable"));
    }

    #[test]
    fn minute_rows_count_and_show_errors() {
        let mut rec = Recorder::new(vec!["check"]);
        for t in 0..120 {
            rec.ok(at(t), 0, Duration::from_millis(2));
        }
        rec.error(61 * S, 0, ErrorKind::Transport);
        rec.rss(119 * S, 2048);
        assert!(rec.minute_row(0).ends_with(" 0"), "{}", rec.minute_row(0));
        let second = rec.minute_row(1);
        assert!(second.contains(" 61 "), "{second}");
        assert!(second.contains("check transport: 1"), "{second}");
        assert!(second.contains("2.0"), "{second}");
        // A slice keeps its minute and nothing else.
        let slice = rec.slice(60 * S, 120 * S);
        assert_eq!(slice.minute_row(1), second);
        assert_eq!(slice.summary(Duration::ZERO, 60 * S)[0].requests, 0);
    }
}
