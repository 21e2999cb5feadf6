//! Per-image quality search for perceptual targets (`quality = "auto"`): the smallest encoder
//! quality whose output reaches a target score, in a bounded number of trial encodes.
//!
//! The search is generic over one trial (`encode at q ⇒ bytes and score`), so it knows nothing of
//! formats or metrics. It assumes the score grows with the quality, which holds for JPEG and WebP
//! on average but not at every step; it never relies on it for correctness: the answer is always a
//! trial it made, the passing trial with the fewest bytes, or, when none passed, the best-scoring one.
//!
//! Steps: start at a predicted quality; then step towards the target by linear interpolation
//! between the two nearest trials on either side (secant), or by the learned slope while the
//! target is not yet bracketed; once bracketed, stop when the bracket is one quality step wide, or
//! earlier when a passing trial is within `tolerance` of the target.
//! Each trial after the first narrows the bracket, so the count is bounded by `max_trials`.

/// What a search aims for and how far it may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSpec {
    /// The score to reach (e.g. SSIMULACRA2 80).
    pub target: f64,
    /// The first quality tried (from a model of the format, or the last image's answer).
    pub start: u8,
    /// The lowest and highest quality the search may use.
    pub min: u8,
    /// See `min`.
    pub max: u8,
    /// At most this many trial encodes (≥ 1).
    pub max_trials: u8,
    /// Score points per quality step assumed until two trials give a measured slope.
    pub slope_guess: f64,
    /// A passing trial at most this many points above the target ends the search: one more
    /// encode would buy too few bytes (0 = search to the lowest passing quality).
    pub tolerance: f64,
}

/// One trial encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial<T> {
    /// The quality it was encoded at.
    pub quality: u8,
    /// Its perceptual score.
    pub score: f64,
    /// Its size.
    pub bytes: usize,
    /// The encoded output (kept for the one chosen).
    pub output: T,
}

/// The search's answer: the chosen trial and how many encodes it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Searched<T> {
    /// The output used: the smallest that reached the target, or the best-scoring if none did.
    pub chosen: Trial<T>,
    /// Whether `chosen` reached the target.
    pub reached: bool,
    /// Trial encodes made.
    pub trials: u8,
}

/// Searches the quality for `spec.target`; `encode(q)` returns `(output, bytes, score)`.
pub fn search<T, E>(
    spec: &SearchSpec,
    mut encode: impl FnMut(u8) -> Result<(T, usize, f64), E>,
) -> Result<Searched<T>, E> {
    let (min, max) = (spec.min.min(spec.max), spec.max.max(spec.min));
    let mut tried: Vec<Trial<T>> = Vec::new();
    let mut next = spec.start.clamp(min, max);
    while tried.len() < usize::from(spec.max_trials.max(1)) {
        let (output, bytes, score) = encode(next)?;
        tried.push(Trial {
            quality: next,
            score,
            bytes,
            output,
        });
        match next_quality(spec, min, max, &tried) {
            Some(q) => next = q,
            None => break,
        }
    }
    let trials = tried.len() as u8;
    let passing = tried
        .iter()
        .enumerate()
        .filter(|(_, t)| t.score >= spec.target)
        .min_by_key(|(_, t)| (t.bytes, t.quality))
        .map(|(i, _)| i);
    let (index, reached) = match passing {
        Some(i) => (i, true),
        None => {
            let best = tried
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    a.score.total_cmp(&b.score).then(b.quality.cmp(&a.quality))
                })
                .map(|(i, _)| i)
                .expect("at least one trial");
            (best, false)
        }
    };
    Ok(Searched {
        chosen: tried.swap_remove(index),
        reached,
        trials,
    })
}

/// The next quality to try, or `None` when the answer is known: the lowest passing quality sits
/// right above the highest failing one, or the range's end was reached on the side it needs.
fn next_quality<T>(spec: &SearchSpec, min: u8, max: u8, tried: &[Trial<T>]) -> Option<u8> {
    if tried
        .iter()
        .any(|t| t.score >= spec.target && t.score - spec.target <= spec.tolerance)
    {
        return None;
    }
    let pass = tried
        .iter()
        .filter(|t| t.score >= spec.target)
        .min_by_key(|t| t.quality);
    let fail = tried
        .iter()
        .filter(|t| t.score < spec.target)
        .max_by_key(|t| t.quality);
    let candidate = match (fail, pass) {
        (Some(f), Some(p)) => {
            if p.quality <= f.quality + 1 {
                return None;
            }
            // Secant between the bracket's ends, kept strictly inside it.
            let slope = (p.score - f.score) / f64::from(p.quality - f.quality);
            let step = if slope > 0.0 {
                ((spec.target - f.score) / slope).ceil()
            } else {
                f64::from(p.quality - f.quality) / 2.0
            };
            (f64::from(f.quality) + step)
                .clamp(f64::from(f.quality) + 1.0, f64::from(p.quality) - 1.0)
        }
        (None, Some(p)) => {
            if p.quality <= min {
                return None;
            }
            let slope = measured_slope(tried).unwrap_or(spec.slope_guess).max(1e-3);
            let down = ((p.score - spec.target) / slope).floor().max(1.0);
            (f64::from(p.quality) - down).max(f64::from(min))
        }
        (Some(f), None) => {
            if f.quality >= max {
                return None;
            }
            let slope = measured_slope(tried).unwrap_or(spec.slope_guess).max(1e-3);
            let up = ((spec.target - f.score) / slope).ceil().max(1.0);
            (f64::from(f.quality) + up).min(f64::from(max))
        }
        (None, None) => unreachable!("called after a trial"),
    };
    let q = candidate.round() as u8;
    // A quality tried before adds nothing: the bracket logic above never returns one, but a flat
    // or falling score between two trials on one side could; stop then.
    (!tried.iter().any(|t| t.quality == q)).then_some(q)
}

/// Score points per quality step between the two trials furthest apart, when positive.
fn measured_slope<T>(tried: &[Trial<T>]) -> Option<f64> {
    let lo = tried.iter().min_by_key(|t| t.quality)?;
    let hi = tried.iter().max_by_key(|t| t.quality)?;
    (hi.quality > lo.quality)
        .then(|| (hi.score - lo.score) / f64::from(hi.quality - lo.quality))
        .filter(|s| *s > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up encoder: the score rises like a saturating curve with the quality, bytes grow
    /// steeply; `wobble` adds a non-monotone ripple.
    fn encoder(wobble: f64) -> impl FnMut(u8) -> Result<((), usize, f64), ()> {
        move |q| {
            let x = f64::from(q);
            let score = 95.0 - 70.0 * (-x / 30.0).exp() + wobble * (x * 1.7).sin();
            let bytes = (2_000.0 * (x / 18.0).exp()) as usize;
            Ok(((), bytes, score))
        }
    }

    fn spec(target: f64) -> SearchSpec {
        SearchSpec {
            target,
            start: 75,
            min: 30,
            max: 95,
            max_trials: 6,
            slope_guess: 0.5,
            tolerance: 0.0,
        }
    }

    /// The lowest quality whose score reaches `target`, found by trying every quality.
    fn exhaustive(target: f64, wobble: f64) -> Option<u8> {
        let mut e = encoder(wobble);
        (30..=95).find(|&q| e(q).unwrap().2 >= target)
    }

    #[test]
    fn finds_the_lowest_quality_that_reaches_the_target() {
        for target in [60.0, 70.0, 75.0, 80.0, 85.0, 88.0] {
            let mut calls = 0;
            let mut e = encoder(0.0);
            let got = search(&spec(target), |q| {
                calls += 1;
                e(q)
            })
            .unwrap();
            assert!(got.reached, "{target}");
            assert_eq!(
                Some(got.chosen.quality),
                exhaustive(target, 0.0),
                "{target}"
            );
            assert!(got.chosen.score >= target);
            assert_eq!(usize::from(got.trials), calls);
            assert!(got.trials <= 6, "{target}: {} trials", got.trials);
        }
    }

    #[test]
    fn from_any_start_and_a_poor_slope_guess_it_ends_on_the_lowest_passing_quality() {
        // A bad prediction: every start in the range, a slope guess 10× too low and 10× too high.
        // Given the trials, the bracket must close to one quality step, whatever the path.
        for slope_guess in [0.05, 5.0] {
            for start in 30..=95 {
                for target in [62.0, 74.5, 81.0, 86.0] {
                    let s = SearchSpec {
                        start,
                        slope_guess,
                        max_trials: 40,
                        ..spec(target)
                    };
                    let got = search(&s, encoder(0.0)).unwrap();
                    assert_eq!(
                        Some(got.chosen.quality),
                        exhaustive(target, 0.0),
                        "start {start}, slope {slope_guess}, target {target}: {} trials",
                        got.trials
                    );
                }
            }
        }
    }

    #[test]
    fn a_higher_target_never_chooses_a_lower_quality() {
        let mut last = 0;
        for tenth in 500..=900 {
            let target = f64::from(tenth) / 10.0;
            let got = search(&spec(target), encoder(0.0)).unwrap();
            assert!(
                got.chosen.quality >= last,
                "{target}: {} after {last}",
                got.chosen.quality
            );
            last = got.chosen.quality;
        }
    }

    #[test]
    fn never_more_trials_than_allowed_even_on_a_bumpy_curve() {
        for max_trials in 1..=5 {
            for tenth in (500..=900).step_by(7) {
                let target = f64::from(tenth) / 10.0;
                let mut calls = 0u8;
                let mut e = encoder(1.5);
                let s = SearchSpec {
                    max_trials,
                    ..spec(target)
                };
                let got = search(&s, |q| {
                    calls += 1;
                    e(q)
                })
                .unwrap();
                assert!(
                    calls <= max_trials && got.trials == calls,
                    "{target}: {calls}"
                );
                if got.reached {
                    assert!(got.chosen.score >= target);
                }
            }
        }
    }

    #[test]
    fn the_same_input_gives_the_same_answer() {
        let a = search(&spec(82.0), encoder(1.5)).unwrap();
        let b = search(&spec(82.0), encoder(1.5)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_unreachable_target_returns_the_best_trial_and_says_so() {
        let got = search(&spec(99.0), encoder(0.0)).unwrap();
        assert!(!got.reached);
        assert_eq!(
            got.chosen.quality, 95,
            "the top of the range is the best it can do"
        );
        // Already reached at the bottom of the range: no lower quality is tried.
        let easy = search(
            &SearchSpec {
                start: 30,
                ..spec(10.0)
            },
            encoder(0.0),
        )
        .unwrap();
        assert!(easy.reached);
        assert_eq!((easy.chosen.quality, easy.trials), (30, 1));
    }

    #[test]
    fn a_passing_trial_within_the_tolerance_ends_the_search_early() {
        for target in [60.0, 70.0, 80.0, 88.0] {
            let exact = search(&spec(target), encoder(0.0)).unwrap();
            let loose = search(
                &SearchSpec {
                    tolerance: 2.0,
                    ..spec(target)
                },
                encoder(0.0),
            )
            .unwrap();
            assert!(loose.reached, "{target}");
            assert!(
                loose.chosen.score - target <= 2.0 || loose.chosen.quality == exact.chosen.quality,
                "{target}: {loose:?}"
            );
            assert!(
                loose.trials <= exact.trials,
                "{target}: {loose:?} vs {exact:?}"
            );
        }
        // Starting on a trial that passes within the tolerance: one encode.
        let first = search(
            &SearchSpec {
                tolerance: 100.0,
                ..spec(50.0)
            },
            encoder(0.0),
        )
        .unwrap();
        assert_eq!((first.chosen.quality, first.trials), (75, 1));
    }

    #[test]
    fn an_encoder_error_stops_the_search() {
        let got = search(&spec(80.0), |q| {
            if q == 75 {
                Err("boom")
            } else {
                Ok(((), 1, 1.0))
            }
        });
        assert_eq!(got, Err("boom"));
    }
}
