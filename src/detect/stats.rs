//! The statistics detection needs: how surprising a count is under a rate, and whether two sets of visits keep
//! different times of day.

/// The chance of at least `k` successes in `n` trials of chance `p` (the upper tail of the binomial distribution),
/// written out here rather than pulled from a statistics crate (it is the only distribution detection uses) and
/// summed in log space so that long histories do not overflow.
pub fn binomial_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    // ln C(n, i) built up term by term from ln C(n, k).
    let mut ln_c: f64 = (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum();
    let mut total = 0.0;
    for i in k..=n {
        total += (ln_c + i as f64 * lp + (n - i) as f64 * lq).exp();
        ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    total.min(1.0)
}

/// Rates learned from a history are kept this far from 0 and 1 before they are tested against: someone seen never
/// to read one way may still do so.
pub const MIN_RATE: f64 = 0.05;

/// [`binomial_tail`] with the rate kept within [`MIN_RATE`] of 0 and 1.
pub fn surprise(n: usize, k: usize, learned_rate: f64) -> f64 {
    binomial_tail(n, k, learned_rate.clamp(MIN_RATE, 1.0 - MIN_RATE))
}

/// The chance of at least `k` successes in independent trials of the given `chances` (the upper tail of the Poisson
/// binomial distribution), by the usual recurrence over the trials.
pub fn poisson_binomial_tail(chances: impl Iterator<Item = f64>, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // at[j]: the chance of exactly j successes so far (j < k), and at[k] of k or more.
    let mut at = vec![0.0; k + 1];
    at[0] = 1.0;
    for p in chances {
        let p = p.clamp(0.0, 1.0);
        at[k] += at[k - 1] * p;
        for j in (1..k).rev() {
            at[j] = at[j] * (1.0 - p) + at[j - 1] * p;
        }
        at[0] *= 1.0 - p;
    }
    at[k].min(1.0)
}

/// The chance that `draws` items taken at random from `total`, of which `marked` are marked, hold at most `k` marked
/// ones (the lower tail of the hypergeometric distribution: Fisher's exact test of a part against the whole).
pub fn hypergeometric_lower_tail(total: usize, marked: usize, draws: usize, k: usize) -> f64 {
    if marked > total || draws > total {
        return 1.0;
    }
    let ln_choose = |n: usize, r: usize| -> f64 {
        let r = r.min(n - r);
        (0..r)
            .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
            .sum()
    };
    let unmarked = total - marked;
    // The fewest marked a draw can hold, and its chance; each further term from the one before, as in
    // [`binomial_tail`]: P(x + 1) / P(x) = (marked - x)(draws - x) / ((x + 1)(unmarked - draws + x + 1)).
    let lowest = draws.saturating_sub(unmarked);
    let highest = k.min(marked).min(draws);
    if lowest > highest {
        return 0.0;
    }
    let mut ln_p =
        ln_choose(marked, lowest) + ln_choose(unmarked, draws - lowest) - ln_choose(total, draws);
    let mut sum = 0.0;
    for x in lowest..=highest {
        sum += ln_p.exp();
        if x < highest {
            ln_p += ((marked - x) as f64).ln() + ((draws - x) as f64).ln()
                - ((x + 1) as f64).ln()
                - ((unmarked + x + 1 - draws) as f64).ln();
        }
    }
    sum.min(1.0)
}

/// The chance that `draws` items taken at random from `total`, of which `marked` are marked, hold at least `k` marked
/// ones (the upper tail: at most `draws - k` of the unmarked).
pub fn hypergeometric_upper_tail(total: usize, marked: usize, draws: usize, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if marked > total || draws > total || k > draws {
        return if k > draws { 0.0 } else { 1.0 };
    }
    hypergeometric_lower_tail(total, total - marked, draws, draws - k)
}

/// Permutations [`different_hours`] draws.
const PERMUTATIONS: usize = 999;

/// Whether two sets of visits keep different times of day: a permutation test of the distance between their mean
/// directions on the 24-hour clock (minutes since local midnight), so that 23:30 and 00:30 are an hour apart. Returns
/// the chance that the visits, shuffled between the two sets at random, lie at least as far apart (with a fixed seed:
/// the same visits always give the same answer); 1 when their mean times of day are less than `min_shift` minutes
/// apart, since a tight habit makes a small shift significant without making it someone else's. People keep their
/// rhythm when they change phones; someone else does not keep theirs.
pub fn different_hours(a: &[u32], b: &[u32], min_shift: u32) -> f64 {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let unit: Vec<(f64, f64)> = a
        .iter()
        .chain(b)
        .map(|m| {
            let angle = f64::from(*m % 1440) / 1440.0 * std::f64::consts::TAU;
            (angle.cos(), angle.sin())
        })
        .collect();
    let sum = |part: &[(f64, f64)]| {
        part.iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1))
    };
    let (na, nb) = (a.len() as f64, b.len() as f64);
    // Between the two sets' mean vectors.
    let distance = |v: &[(f64, f64)]| {
        let (x, y) = (sum(&v[..a.len()]), sum(&v[a.len()..]));
        (x.0 / na - y.0 / nb).hypot(x.1 / na - y.1 / nb)
    };
    let direction = |part: &[(f64, f64)]| {
        let (x, y) = sum(part);
        y.atan2(x)
    };
    let apart = (direction(&unit[..a.len()]) - direction(&unit[a.len()..])).abs();
    let apart_minutes = apart.min(std::f64::consts::TAU - apart) / std::f64::consts::TAU * 1440.0;
    if apart_minutes < f64::from(min_shift) {
        return 1.0;
    }
    let observed = distance(&unit);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let mut shuffled = unit.clone();
    let as_far = (0..PERMUTATIONS)
        .filter(|_| {
            shuffled.shuffle(&mut rng);
            distance(&shuffled) >= observed - 1e-12
        })
        .count();
    (1 + as_far) as f64 / (1 + PERMUTATIONS) as f64
}

#[cfg(test)]
mod tests {
    use super::{binomial_tail, different_hours};

    #[test]
    fn different_hours_wraps_midnight_and_needs_a_real_shift() {
        let evenings: Vec<u32> = (0..8).map(|i| 19 * 60 + i * 5).collect();
        let small_hours: Vec<u32> = (0..6).map(|i| 3 * 60 + i * 7).collect();
        let p = different_hours(&evenings, &small_hours, 180);
        assert!(p <= 0.01, "{p}");
        // The same answer every time (a fixed seed).
        assert_eq!(p, different_hours(&evenings, &small_hours, 180));
        // Either side of midnight, 23:20 and 00:20 are an hour apart, not 23 hours: under a 70-minute shift, however
        // tight the two habits.
        let before: Vec<u32> = (0..8).map(|i| 23 * 60 + 20 + i).collect();
        let after: Vec<u32> = (0..6).map(|i| 20 + i).collect();
        assert_eq!(different_hours(&before, &after, 70), 1.0);
        assert!(different_hours(&before, &after, 50) <= 0.01);
        // The same either side of noon, where the clock's angle wraps: 11:40 and 12:20 are 40 minutes apart.
        let morning: Vec<u32> = (0..8).map(|i| 11 * 60 + 40 + i).collect();
        let noon: Vec<u32> = (0..6).map(|i| 12 * 60 + 20 + i).collect();
        assert_eq!(different_hours(&morning, &noon, 60), 1.0);
        // Mixed the same way on both sides: no difference.
        let mixed: Vec<u32> = evenings.iter().chain(&small_hours).copied().collect();
        assert!(different_hours(&mixed, &mixed, 0) > 0.5);
    }

    #[test]
    fn binomial_tail_matches_hand_worked_values() {
        // P(X >= 8 | n = 9, p = 1/2) = (9 + 1) / 512.
        assert!((binomial_tail(9, 8, 0.5) - 10.0 / 512.0).abs() < 1e-12);
        // P(X >= 1 | n = 3, p = 0.1) = 1 - 0.9^3.
        assert!((binomial_tail(3, 1, 0.1) - (1.0 - 0.729)).abs() < 1e-12);
        assert_eq!(binomial_tail(5, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(5, 6, 0.3), 0.0);
        // A long history neither overflows nor underflows to nonsense.
        let t = binomial_tail(2_000, 400, 0.05);
        assert!(t > 0.0 && t < 1e-50, "{t}");
    }

    #[test]
    fn hypergeometric_lower_tail_matches_hand_worked_values() {
        use super::hypergeometric_lower_tail as h;
        // 7 drawn from 13 of which 7 are marked: P(X <= 2) = (C(7,1) C(6,6) + C(7,2) C(6,5)) / C(13,7) = 133 / 1716.
        assert!((h(13, 7, 7, 2) - 133.0 / 1716.0).abs() < 1e-12);
        // Fisher's tea-tasting: 4 of 8 cups marked, 4 drawn, none marked: 1 / 70.
        assert!((h(8, 4, 4, 0) - 1.0 / 70.0).abs() < 1e-12);
        assert_eq!(h(8, 4, 4, 4), 1.0);
        // A long history: 7 marked among 62 drawn from 98 of which 27 are marked is far below chance.
        assert!(h(98, 27, 62, 7) < 1e-4);
    }

    #[test]
    fn poisson_binomial_tail_matches_hand_worked_values_and_the_binomial() {
        use super::poisson_binomial_tail as t;
        // Chances 0.5 and 0.2: both 0.1; at least one 1 - 0.5 * 0.8 = 0.6.
        assert!((t([0.5, 0.2].into_iter(), 2) - 0.1).abs() < 1e-12);
        assert!((t([0.5, 0.2].into_iter(), 1) - 0.6).abs() < 1e-12);
        assert_eq!(t([0.5].into_iter(), 2), 0.0);
        assert_eq!(t(std::iter::empty(), 0), 1.0);
        // Equal chances are the binomial.
        let same = t(std::iter::repeat_n(0.3, 12), 6);
        assert!(
            (same - super::binomial_tail(12, 6, 0.3)).abs() < 1e-12,
            "{same}"
        );
    }

    #[test]
    fn hypergeometric_upper_tail_matches_hand_worked_values() {
        use super::hypergeometric_upper_tail as u;
        // 3 drawn from 10 of which 3 are marked: all three marked 1 / C(10,3) = 1 / 120; at least one
        // 1 - C(7,3) / C(10,3) = 85 / 120.
        assert!((u(10, 3, 3, 3) - 1.0 / 120.0).abs() < 1e-12);
        assert!((u(10, 3, 3, 1) - 85.0 / 120.0).abs() < 1e-12);
        // Fisher's tea-tasting: all four marked cups picked, 1 / 70.
        assert!((u(8, 4, 4, 4) - 1.0 / 70.0).abs() < 1e-12);
        assert_eq!(u(8, 4, 4, 0), 1.0);
        assert_eq!(u(8, 4, 4, 5), 0.0);
    }
}
