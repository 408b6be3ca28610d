//! Request counters and latency histograms, rendered with the database's figures in the
//! Prometheus text format (`GET /metrics`).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// A gauge for [`Metrics::render`]: name, help text, and (labels, value) pairs.
pub(crate) type Gauge<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// What the guard records per request.
#[derive(Default)]
pub(crate) struct Metrics {
    /// (method, route, status) -> requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route -> latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock();
        let h = lat.entry(route.to_owned()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Prometheus text: requests, latency, then `gauges` (name, help, [(labels, value)]); a
    /// name ending in `_total` is typed as a counter.
    pub(crate) fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        out.push_str("# HELP quiver_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE quiver_http_requests_total counter\n");
        for ((m, r, s), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "quiver_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {n}",
                label(m),
                label(r)
            );
        }
        out.push_str("# HELP quiver_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE quiver_http_request_duration_seconds histogram\n");
        for (r, h) in self.latency.lock().iter() {
            let r = label(r);
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "quiver_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "quiver_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "quiver_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "quiver_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        for (name, help, values) in gauges {
            // Prometheus' convention: a name ending in `_total` is a counter.
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in values {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("GET", "/a", 200, 0.003);
        m.observe("GET", "/a", 404, 0.3);
        let t = m.render(&[]);
        assert!(
            t.contains("quiver_http_requests_total{method=\"GET\",route=\"/a\",status=\"200\"} 1")
        );
        assert!(t.contains("le=\"0.005\"} 1"));
        assert!(t.contains("le=\"0.5\"} 2"));
        assert!(t.contains("le=\"+Inf\"} 2"));
        assert!(t.contains("quiver_http_request_duration_seconds_count{route=\"/a\"} 2"));
    }
}
