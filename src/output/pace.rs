//! Which frames an output takes: an even rate (`fps`) and the similarity skip.
//! Pure, so both are tested with made-up times and pictures.

use std::time::{Duration, Instant};

/// Takes frames at most `fps` times a second, evenly spaced on a grid, so a
/// 6 fps camera at `fps: 2` gives every third frame, not bursts.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(fps: Option<f64>) -> Self {
        Pacer { interval: fps.map(|f| Duration::from_secs_f64(1.0 / f)), next: None }
    }

    /// Whether the frame captured at `t` is taken.
    pub fn accept(&mut self, t: Instant) -> bool {
        let Some(iv) = self.interval else { return true };
        match self.next {
            // Jitter: a frame a little early for its grid point still takes it.
            Some(next) if t + iv / 4 < next => false,
            Some(next) => {
                self.next = Some(if t > next + iv { t + iv } else { next + iv });
                true
            }
            None => {
                self.next = Some(t + iv);
                true
            }
        }
    }
}

pub const THUMB_W: usize = 32;
pub const THUMB_H: usize = 18;

/// A tiny luma picture: each cell is the mean of 4x4 samples of its area.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb(pub Vec<u8>);

impl Thumb {
    pub fn from_luma(data: &[u8], stride: usize, width: usize, height: usize) -> Thumb {
        let mut out = Vec::with_capacity(THUMB_W * THUMB_H);
        for cy in 0..THUMB_H {
            for cx in 0..THUMB_W {
                let mut sum = 0u32;
                for sy in 0..4 {
                    let y = ((cy * 4 + sy) * height + height / 2) / (THUMB_H * 4);
                    for sx in 0..4 {
                        let x = ((cx * 4 + sx) * width + width / 2) / (THUMB_W * 4);
                        sum += u32::from(data[y.min(height - 1) * stride + x.min(width - 1)]);
                    }
                }
                out.push((sum / 16) as u8);
            }
        }
        Thumb(out)
    }

    /// Mean absolute difference as a fraction of full scale (0: identical, 1: opposite).
    pub fn distance(&self, other: &Thumb) -> f64 {
        let d: u32 = self.0.iter().zip(&other.0).map(|(a, b)| u32::from(a.abs_diff(*b))).sum();
        f64::from(d) / (255.0 * self.0.len().max(1) as f64)
    }
}

/// The similarity skip of one output: remembers the last published frame.
#[derive(Debug, Clone)]
pub struct SimilarSkip {
    threshold: f64,
    last: Option<(u64, Thumb)>,
}

/// What the similarity skip made of a frame, with the luma difference it measured
/// (`Thumb::distance` from the last published frame, 0..1), so that consumers
/// can tune `skip_similar` from data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Published: different enough from the last published frame (`Some(difference)`),
    /// or the first one (`None`: nothing to compare with).
    Publish(Option<f64>),
    /// The same picture as the published frame `of`, `difference` apart (under the threshold).
    Same { of: u64, difference: f64 },
}

impl SimilarSkip {
    pub fn new(threshold: f64) -> Self {
        SimilarSkip { threshold, last: None }
    }

    /// `Same` as the last published frame if `thumb` is the same picture for this
    /// output's purposes; otherwise `Publish`, and `thumb` becomes the reference.
    pub fn check(&mut self, frame_id: u64, thumb: &Thumb) -> Verdict {
        let difference = self.last.as_ref().map(|(id, last)| (*id, last.distance(thumb)));
        if let Some((of, difference)) = difference
            && difference < self.threshold
        {
            return Verdict::Same { of, difference };
        }
        self.last = Some((frame_id, thumb.clone()));
        Verdict::Publish(difference.map(|(_, d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(fps: f64, n: usize, jitter_ms: &[i64]) -> Vec<Instant> {
        let t0 = crate::clock::Clock::stepped().now();
        (0..n)
            .map(|i| {
                let j = jitter_ms[i % jitter_ms.len()];
                let base = t0 + Duration::from_secs_f64(i as f64 / fps) + Duration::from_millis(50);
                if j >= 0 { base + Duration::from_millis(j as u64) } else { base - Duration::from_millis((-j) as u64) }
            })
            .collect()
    }

    #[test]
    fn pacer_takes_every_third_frame_of_six_for_two_fps_despite_jitter() {
        let ts = times(6.0, 60, &[0, 7, -9, 3, -4, 8]);
        let mut p = Pacer::new(Some(2.0));
        let taken: Vec<usize> = (0..ts.len()).filter(|&i| p.accept(ts[i])).collect();
        assert_eq!(taken.len(), 20, "{taken:?}");
        assert!(taken.windows(2).all(|w| w[1] - w[0] == 3), "evenly spaced: {taken:?}");
    }

    #[test]
    fn pacer_without_rate_takes_all_and_restarts_after_a_gap() {
        let ts = times(10.0, 5, &[0]);
        let mut all = Pacer::new(None);
        assert!(ts.iter().all(|t| all.accept(*t)));
        let mut p = Pacer::new(Some(1.0));
        let t0 = crate::clock::Clock::stepped().now();
        assert!(p.accept(t0));
        assert!(!p.accept(t0 + Duration::from_millis(500)));
        // After a long gap (decoder paused) the next frame is taken at once, and the grid restarts there.
        assert!(p.accept(t0 + Duration::from_secs(30)));
        assert!(!p.accept(t0 + Duration::from_millis(30_500)));
        assert!(p.accept(t0 + Duration::from_millis(31_000)));
    }

    fn picture(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect()
    }

    #[test]
    fn similar_frames_are_skipped_and_changed_ones_are_not() {
        let (w, h) = (640, 360);
        let still = picture(w, h, |x, y| ((x + y) % 200) as u8);
        let noisy = picture(w, h, |x, y| (((x + y) % 200) as u8).saturating_add(((x * 7 + y * 13) % 3) as u8));
        let moved = picture(w, h, |x, y| ((x + y + 60) % 200) as u8);
        let mut s = SimilarSkip::new(0.02);
        let t = |p: &[u8]| Thumb::from_luma(p, w, w, h);
        assert_eq!(s.check(1, &t(&still)), Verdict::Publish(None), "the first frame is always published");
        let noise = t(&still).distance(&t(&noisy));
        assert!(noise > 0.0 && noise < 0.02, "{noise}");
        assert_eq!(s.check(2, &t(&noisy)), Verdict::Same { of: 1, difference: noise }, "sensor noise is the same");
        let moved_by = t(&still).distance(&t(&moved));
        assert!(moved_by > 0.05);
        assert_eq!(s.check(3, &t(&moved)), Verdict::Publish(Some(moved_by)), "a moved scene is published");
        assert_eq!(
            s.check(4, &t(&moved)),
            Verdict::Same { of: 3, difference: 0.0 },
            "compared with the last published frame"
        );
    }
}
