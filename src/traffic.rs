//! What nginx counted of each app's requests, and the last minute of it. berth.lua counts
//! in its log phase, into a shared dictionary (no disk write, no reload): per app, the
//! requests of each status class, the latency histogram (one count per bucket, not
//! cumulative) and the seconds spent. GET /metrics on the control socket lists the
//! dictionary as `KEY VALUE` lines, read here. The daemon samples it every few seconds
//! (`Window`) so that reports show the last minute: rate, p50/p99, errors. Pure.

use std::collections::{BTreeMap, VecDeque};

/// The latency histogram's upper bounds, in seconds (berth.lua has the same list); a last
/// bucket counts what is over the highest.
pub const BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Status classes, as Prometheus labels (`1xx`…`5xx`).
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One app's counts since nginx started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Requests by status class (index 0 is 1xx).
    pub classes: [u64; 5],
    /// Requests by latency bucket (`BOUNDS`, then the rest), not cumulative.
    pub buckets: [u64; BOUNDS.len() + 1],
    /// Seconds spent answering them, in all.
    pub seconds: f64,
}

/// Every app's counts, by app.
pub type Traffic = BTreeMap<String, Counts>;

impl Counts {
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }

    /// What was counted after `earlier`. A counter that went down means nginx started
    /// again (its dictionary is new): what it counted since then is all there is.
    pub fn since(&self, earlier: &Counts) -> Counts {
        if self.requests() < earlier.requests() || self.classes.iter().zip(&earlier.classes).any(|(now, then)| now < then) {
            return self.clone();
        }
        let mut out = self.clone();
        for (slot, then) in out.classes.iter_mut().zip(&earlier.classes) {
            *slot -= then;
        }
        for (slot, then) in out.buckets.iter_mut().zip(&earlier.buckets) {
            *slot = slot.saturating_sub(*then);
        }
        out.seconds = (self.seconds - earlier.seconds).max(0.0);
        out
    }

    /// The latency under which a `q` share of the requests were answered (0 < q ≤ 1),
    /// interpolated inside its bucket as Prometheus' `histogram_quantile` does; None
    /// without requests. Past the highest bound it says the highest bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, count) in self.buckets.iter().enumerate() {
            let upto = below + count;
            if (upto as f64) >= rank && *count > 0 {
                let Some(upper) = BOUNDS.get(i) else { return Some(BOUNDS[BOUNDS.len() - 1]) };
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                return Some(lower + (upper - lower) * ((rank - below as f64) / *count as f64));
            }
            below = upto;
        }
        Some(BOUNDS[BOUNDS.len() - 1])
    }
}

/// Reads GET /metrics's lines: `c|APP|CLASS N` (CLASS 1–5), `b|APP|BUCKET N` (1-based, as
/// Lua counts), `s|APP SECONDS`. A line of another shape is skipped (a newer berth.lua may
/// count more).
pub fn parse(text: &str) -> Traffic {
    let mut traffic = Traffic::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let mut parts = key.split('|');
        let (Some(kind), Some(app)) = (parts.next(), parts.next()) else { continue };
        let which = parts.next().and_then(|w| w.parse::<usize>().ok());
        if app.is_empty() || parts.next().is_some() {
            continue;
        }
        match (kind, which) {
            ("c", Some(class @ 1..=5)) => {
                let Ok(n) = value.trim().parse::<u64>() else { continue };
                traffic.entry(app.to_string()).or_default().classes[class - 1] = n;
            }
            ("b", Some(bucket @ 1..=12)) => {
                let Ok(n) = value.trim().parse::<u64>() else { continue };
                traffic.entry(app.to_string()).or_default().buckets[bucket - 1] = n;
            }
            ("s", None) => {
                let Ok(seconds) = value.trim().parse::<f64>() else { continue };
                traffic.entry(app.to_string()).or_default().seconds = seconds;
            }
            _ => {}
        }
    }
    traffic
}

/// What a report shows of an app's last minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// The seconds the figures cover (up to a minute: less just after the daemon started).
    pub span: f64,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Minute {
    pub fn rate(&self) -> f64 {
        if self.span > 0.0 { self.requests as f64 / self.span } else { 0.0 }
    }
}

/// How long a report looks back.
pub const MINUTE: f64 = 60.0;

/// Samples of the counts, each at a time in seconds (monotonic), the oldest at most a
/// minute before the newest but one.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<(f64, Traffic)>,
}

impl Window {
    /// Adds a sample taken at `at`; samples a newer one makes more than a minute old go.
    pub fn push(&mut self, at: f64, traffic: Traffic) {
        self.samples.push_back((at, traffic));
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|(t, _)| at - t >= MINUTE) {
            self.samples.pop_front();
        }
    }

    /// The app's last minute as of `now` (counts taken at `at`): against the oldest sample
    /// at most a minute before it. None before there is any sample that old.
    pub fn minute(&self, app: &str, at: f64, now: &Traffic) -> Option<Minute> {
        let (then, earlier) = self.samples.iter().find(|(t, _)| at - t <= MINUTE && at > *t)?;
        let zero = Counts::default();
        let counts = now.get(app).unwrap_or(&zero).since(earlier.get(app).unwrap_or(&zero));
        Some(Minute { span: at - then, requests: counts.requests(), errors: counts.classes[4], p50: counts.quantile(0.5), p99: counts.quantile(0.99) })
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&(f64, Traffic)> {
        self.samples.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(classes: [u64; 5], buckets: &[(usize, u64)]) -> Counts {
        let mut c = Counts { classes, ..Default::default() };
        for (i, n) in buckets {
            c.buckets[*i] = *n;
        }
        c
    }

    #[test]
    fn reads_what_the_lua_lists() {
        let text = "c|web|2 10\nc|web|5 2\nb|web|1 11\nb|web|12 1\ns|web 0.25\nc|api|4 3\nnonsense\nc|x|9 1\nc||2 4\nb|web|13 1\nc|web|2|x 1\n";
        let t = parse(text);
        assert_eq!(t.len(), 2);
        let web = &t["web"];
        assert_eq!(web.classes, [0, 10, 0, 0, 2]);
        assert_eq!(web.buckets[0], 11);
        assert_eq!(web.buckets[11], 1);
        assert_eq!(web.seconds, 0.25);
        assert_eq!(web.requests(), 12);
        assert_eq!(t["api"].classes[3], 3);
    }

    #[test]
    fn counts_since_an_earlier_sample_and_after_a_restart() {
        let then = counts([0, 5, 0, 0, 1], &[(0, 6)]);
        let now = counts([0, 9, 0, 0, 2], &[(0, 8), (3, 3)]);
        let d = now.since(&then);
        assert_eq!(d.classes, [0, 4, 0, 0, 1]);
        assert_eq!(d.buckets[0], 2);
        assert_eq!(d.buckets[3], 3);
        // nginx started again: fewer than before, so all of it is new.
        let restarted = counts([0, 1, 0, 0, 0], &[(0, 1)]);
        assert_eq!(restarted.since(&then), restarted);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        assert_eq!(Counts::default().quantile(0.5), None);
        // 100 requests, all in (0.01, 0.025]: the median is half-way through.
        let c = counts([0, 100, 0, 0, 0], &[(2, 100)]);
        let p50 = c.quantile(0.5).unwrap();
        assert!((p50 - 0.0175).abs() < 1e-9, "{p50}");
        // 99 fast, 1 over ten seconds: p99 is still fast, p100 the highest bound.
        let c = counts([0, 100, 0, 0, 0], &[(0, 99), (11, 1)]);
        assert!(c.quantile(0.99).unwrap() <= 0.005);
        assert_eq!(c.quantile(1.0), Some(10.0));
    }

    #[test]
    fn the_window_keeps_a_minute_and_reports_against_its_oldest_sample() {
        let mut w = Window::default();
        let at = |n: u64| Traffic::from([("web".to_string(), counts([0, n, 0, 0, 0], &[(0, n)]))]);
        assert_eq!(w.minute("web", 0.0, &at(0)), None);
        for (i, t) in [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0].iter().enumerate() {
            w.push(*t, at(i as u64 * 10));
        }
        // Samples from 10 s on stay (70 - 10 = 60); a report at 75 s compares with the one at 20 s.
        assert_eq!(w.samples.front().unwrap().0, 10.0);
        let m = w.minute("web", 75.0, &at(100)).unwrap();
        assert_eq!(m.span, 55.0);
        assert_eq!(m.requests, 80);
        assert_eq!(m.errors, 0);
        assert!((m.rate() - 80.0 / 55.0).abs() < 1e-9);
        // An app nginx never saw: nothing in the minute.
        assert_eq!(w.minute("other", 75.0, &at(100)).unwrap().requests, 0);
    }
}
