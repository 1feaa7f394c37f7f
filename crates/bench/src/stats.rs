//! Order statistics over duration samples.

use std::time::Duration;

/// Median and 95th percentile in milliseconds.
pub fn median_p95_ms(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let (m, p) = median_p95_ms(&mut v);
        assert!((m - 50.0).abs() <= 1.0, "{m}");
        assert!((p - 95.0).abs() <= 1.0, "{p}");
        assert_eq!(median_p95_ms(&mut []), (0.0, 0.0));
    }
}
