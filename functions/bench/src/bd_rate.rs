//! Bjøntegaard delta rate (BD-rate): the average difference in bytes between two encoders'
//! rate–quality curves at equal quality, over the quality range both cover.
//!
//! Each curve is a set of (bytes, score) points, one per quality setting. As in the current
//! video-coding practice (JVET CTC, libaom's `bd_rate`), log(bytes) is interpolated as a function of
//! the score with a monotone piecewise cubic (PCHIP, Fritsch–Carlson slopes, SciPy's end rule)
//! rather than the original cubic polynomial fit, which overshoots on curves with a knee. The two
//! interpolants are integrated exactly over the overlap (3-point Gauss–Legendre on every interval
//! between breakpoints of either curve, exact for cubics), and
//! `BD-rate = exp(mean(log test − log reference)) − 1`: −0.20 means the test encoder needs 20 %
//! fewer bytes for the same score.

/// One point of a rate–quality curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    /// Encoded size.
    pub bytes: f64,
    /// Perceptual score (higher is better, e.g. SSIMULACRA2).
    pub score: f64,
}

/// Why a BD-rate cannot be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum BdRateError {
    /// A curve has fewer than two distinct scores.
    TooFewPoints(&'static str),
    /// A point has bytes ≤ 0 or a score that is not finite.
    BadPoint(&'static str),
    /// The curves' score ranges do not overlap.
    NoOverlap {
        reference: (f64, f64),
        test: (f64, f64),
    },
}

impl std::fmt::Display for BdRateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BdRateError::TooFewPoints(which) => {
                write!(
                    f,
                    "the {which} curve needs at least two points with different scores"
                )
            }
            BdRateError::BadPoint(which) => {
                write!(
                    f,
                    "the {which} curve has a point with bytes <= 0 or a non-finite score"
                )
            }
            BdRateError::NoOverlap { reference, test } => write!(
                f,
                "the score ranges do not overlap (reference {:.2}..{:.2}, test {:.2}..{:.2})",
                reference.0, reference.1, test.0, test.1
            ),
        }
    }
}

impl std::error::Error for BdRateError {}

/// BD-rate of `test` against `reference`, as a fraction (−0.2 = 20 % fewer bytes).
pub fn bd_rate(reference: &[RatePoint], test: &[RatePoint]) -> Result<f64, BdRateError> {
    let r = Pchip::new(reference, "reference")?;
    let t = Pchip::new(test, "test")?;
    let lo = r.x[0].max(t.x[0]);
    let hi = r.x[r.x.len() - 1].min(t.x[t.x.len() - 1]);
    if hi <= lo {
        return Err(BdRateError::NoOverlap {
            reference: (r.x[0], r.x[r.x.len() - 1]),
            test: (t.x[0], t.x[t.x.len() - 1]),
        });
    }
    let mut breaks: Vec<f64> =
        r.x.iter()
            .chain(&t.x)
            .copied()
            .filter(|&x| x > lo && x < hi)
            .collect();
    breaks.push(lo);
    breaks.push(hi);
    breaks.sort_by(f64::total_cmp);
    breaks.dedup();
    let difference: f64 = breaks
        .windows(2)
        .map(|w| gauss3(w[0], w[1], |x| t.eval(x) - r.eval(x)))
        .sum();
    Ok((difference / (hi - lo)).exp() - 1.0)
}

/// ∫ f over [a, b] by 3-point Gauss–Legendre: exact for polynomials up to degree 5.
fn gauss3(a: f64, b: f64, f: impl Fn(f64) -> f64) -> f64 {
    let half = (b - a) / 2.0;
    let mid = (a + b) / 2.0;
    let node = half * (3.0f64 / 5.0).sqrt();
    half * (5.0 * f(mid - node) + 8.0 * f(mid) + 5.0 * f(mid + node)) / 9.0
}

/// log(bytes) as a monotone piecewise cubic in the score.
struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    slopes: Vec<f64>,
}

impl Pchip {
    fn new(points: &[RatePoint], which: &'static str) -> Result<Self, BdRateError> {
        if points
            .iter()
            .any(|p| !(p.bytes > 0.0 && p.bytes.is_finite() && p.score.is_finite()))
        {
            return Err(BdRateError::BadPoint(which));
        }
        let mut sorted: Vec<RatePoint> = points.to_vec();
        sorted.sort_by(|a, b| {
            a.score
                .total_cmp(&b.score)
                .then(a.bytes.total_cmp(&b.bytes))
        });
        // Two settings with the same score: the smaller output is the one an encoder would pick.
        sorted.dedup_by(|later, earlier| later.score == earlier.score);
        if sorted.len() < 2 {
            return Err(BdRateError::TooFewPoints(which));
        }
        let x: Vec<f64> = sorted.iter().map(|p| p.score).collect();
        let y: Vec<f64> = sorted.iter().map(|p| p.bytes.ln()).collect();
        let slopes = pchip_slopes(&x, &y);
        Ok(Pchip { x, y, slopes })
    }

    /// The interpolant at `at`, which lies within the curve's range.
    fn eval(&self, at: f64) -> f64 {
        let last = self.x.len() - 2;
        let k = self.x[..=last]
            .partition_point(|&x| x <= at)
            .saturating_sub(1)
            .min(last);
        let h = self.x[k + 1] - self.x[k];
        let t = (at - self.x[k]) / h;
        let (t2, t3) = (t * t, t * t * t);
        (2.0 * t3 - 3.0 * t2 + 1.0) * self.y[k]
            + (t3 - 2.0 * t2 + t) * h * self.slopes[k]
            + (-2.0 * t3 + 3.0 * t2) * self.y[k + 1]
            + (t3 - t2) * h * self.slopes[k + 1]
    }
}

/// Fritsch–Carlson derivatives at each point (SciPy's `PchipInterpolator`): zero at a local
/// extremum, a weighted harmonic mean of the neighbouring secants elsewhere, and the one-sided
/// three-point rule at the ends, clipped to keep the curve monotone.
fn pchip_slopes(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len();
    let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let delta: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
    if n == 2 {
        return vec![delta[0], delta[0]];
    }
    let mut d = vec![0.0; n];
    for k in 1..n - 1 {
        let (a, b) = (delta[k - 1], delta[k]);
        if a * b > 0.0 {
            let w1 = 2.0 * h[k] + h[k - 1];
            let w2 = h[k] + 2.0 * h[k - 1];
            d[k] = (w1 + w2) / (w1 / a + w2 / b);
        }
    }
    d[0] = edge_slope(h[0], h[1], delta[0], delta[1]);
    d[n - 1] = edge_slope(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
    d
}

fn edge_slope(h0: f64, h1: f64, delta0: f64, delta1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * delta0 - h0 * delta1) / (h0 + h1);
    if d.signum() != delta0.signum() || delta0 == 0.0 {
        0.0
    } else if delta0.signum() != delta1.signum() && d.abs() > 3.0 * delta0.abs() {
        3.0 * delta0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plausible JPEG curve: bytes grow exponentially-ish with the score, with a knee.
    fn curve() -> Vec<RatePoint> {
        points(&[
            (40_000.0, 55.0),
            (52_000.0, 65.0),
            (70_000.0, 72.0),
            (101_000.0, 80.0),
            (180_000.0, 88.0),
        ])
    }

    /// `(bytes, score)` pairs as points.
    fn points(pairs: &[(f64, f64)]) -> Vec<RatePoint> {
        pairs
            .iter()
            .map(|&(bytes, score)| RatePoint { bytes, score })
            .collect()
    }

    fn scaled(points: &[RatePoint], factor: f64) -> Vec<RatePoint> {
        points
            .iter()
            .map(|p| RatePoint {
                bytes: p.bytes * factor,
                score: p.score,
            })
            .collect()
    }

    #[test]
    fn the_same_curve_is_zero() {
        assert!(bd_rate(&curve(), &curve()).unwrap().abs() < 1e-12);
    }

    #[test]
    fn a_curve_with_every_size_times_k_is_k_minus_one() {
        for factor in [0.8, 0.65, 1.25] {
            let got = bd_rate(&curve(), &scaled(&curve(), factor)).unwrap();
            assert!((got - (factor - 1.0)).abs() < 1e-9, "{factor}: {got}");
        }
    }

    #[test]
    fn the_order_of_the_points_does_not_matter() {
        let mut shuffled = scaled(&curve(), 0.9);
        shuffled.reverse();
        shuffled.swap(0, 2);
        let got = bd_rate(&curve(), &shuffled).unwrap();
        assert!((got + 0.1).abs() < 1e-9, "{got}");
    }

    #[test]
    fn only_the_overlapping_scores_count() {
        // log(bytes) linear in the score: the reference ln b = 10 + 0.05 s on 50..90; the test is
        // 30 % smaller on 70..80, so on its own it is exactly −30 %. A fourth test point, far
        // larger at 99, widens the overlap to 70..90, and the expensive stretch 80..90 counts.
        let line = |s: f64, factor: f64| RatePoint {
            bytes: factor * (10.0 + 0.05 * s).exp(),
            score: s,
        };
        let reference: Vec<RatePoint> = [50.0, 60.0, 70.0, 80.0, 90.0]
            .map(|s| line(s, 1.0))
            .to_vec();
        let test: Vec<RatePoint> = vec![
            line(70.0, 0.7),
            line(75.0, 0.7),
            line(80.0, 0.7),
            line(99.0, 50.0),
        ];
        let got = bd_rate(&reference, &test).unwrap();
        let only_70_80 = bd_rate(&reference, &test[..3]).unwrap();
        assert!((only_70_80 + 0.3).abs() < 1e-9, "{only_70_80}");
        assert!(
            got > only_70_80,
            "the expensive tail between 80 and 90 raises it: {got}"
        );
    }

    #[test]
    fn a_knee_is_not_overshot() {
        // A flat stretch then a steep rise: the interpolant stays within the data's range.
        let knee = points(&[
            (100.0, 10.0),
            (101.0, 20.0),
            (102.0, 30.0),
            (10_000.0, 40.0),
        ]);
        let p = Pchip::new(&knee, "test").unwrap();
        let samples: Vec<(f64, f64)> = (0..=300)
            .map(|i| 10.0 + f64::from(i) / 10.0)
            .map(|s| (s, p.eval(s)))
            .collect();
        for &(s, v) in &samples {
            assert!(
                v >= 100f64.ln() - 1e-12 && v <= 10_000f64.ln() + 1e-12,
                "{s}: {v}"
            );
        }
        for w in samples.windows(2) {
            assert!(w[1].1 >= w[0].1 - 1e-12, "monotone");
        }
    }

    #[test]
    fn bad_curves_say_why() {
        let one = &curve()[..1];
        assert_eq!(
            bd_rate(one, &curve()),
            Err(BdRateError::TooFewPoints("reference"))
        );
        let same_score = points(&[(1.0, 5.0), (2.0, 5.0)]);
        assert_eq!(
            bd_rate(&curve(), &same_score),
            Err(BdRateError::TooFewPoints("test"))
        );
        let zero = points(&[(0.0, 5.0), (2.0, 6.0)]);
        assert_eq!(bd_rate(&curve(), &zero), Err(BdRateError::BadPoint("test")));
        let far: Vec<RatePoint> = curve()
            .iter()
            .map(|p| RatePoint {
                score: p.score + 100.0,
                ..*p
            })
            .collect();
        assert!(matches!(
            bd_rate(&curve(), &far),
            Err(BdRateError::NoOverlap { .. })
        ));
    }
}
