//! `limits.publish_rate_per_token`: a token bucket per holder, in
//! integer nano-units so that refills and waits are exact.
//!
//! A bucket holds `per_sec` units (one second's burst), starts full and
//! refills continuously at `per_sec` units per second. A request of `n`
//! units goes through when the bucket holds `min(n, per_sec)`, and then
//! takes all `n`: a batch larger than the burst is admitted from a full
//! bucket and leaves it in debt, so the average rate still holds.
//! Publishes are few next to deliveries, so one mutex over a map does.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most holders tracked at once.
pub(crate) const MAX_HOLDERS: usize = 100_000;

/// Nano-units per unit: refilling `per_sec` units per second is
/// `per_sec` nano-units per nanosecond.
const NANO: i128 = 1_000_000_000;

/// What the publish rate says to a request of `n` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Taken from the holder's bucket.
    Allowed,
    /// Not enough in the bucket: retry after this long.
    Limited(Duration),
}

/// `limits.publish_rate_per_token`: a token bucket per holder.
#[derive(Debug)]
pub(crate) struct PublishRate {
    /// Units per second and per holder; 0 turns the limit off.
    per_sec: u64,
    /// Buckets beyond this many are evicted (full ones first, then the
    /// least recently used).
    max_holders: usize,
    buckets: Mutex<HashMap<Box<str>, Bucket>>,
}

/// One holder's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Nano-units held at `at`; negative while in debt.
    level: i128,
    /// When `level` was last brought up to date: the holder's last request.
    at: Instant,
}

impl PublishRate {
    /// `per_sec` events per second per holder (0 = no limit).
    pub(crate) fn new(per_sec: u64) -> Self {
        Self::with_max_holders(per_sec, MAX_HOLDERS)
    }

    /// As `new`, tracking at most `max_holders` holders.
    pub(crate) fn with_max_holders(per_sec: u64, max_holders: usize) -> Self {
        PublishRate {
            per_sec,
            max_holders: max_holders.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` units from `holder`'s bucket at `now`.
    pub(crate) fn take(&self, holder: &str, n: u64, now: Instant) -> RateVerdict {
        if self.per_sec == 0 {
            return RateVerdict::Allowed;
        }
        let capacity = self.capacity();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(holder) && buckets.len() >= self.max_holders {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(holder.into()).or_insert(Bucket {
            level: capacity,
            at: now,
        });
        let level = self.level_at(bucket, now);
        let at = now.max(bucket.at);
        let needed = i128::from(n).min(i128::from(self.per_sec)) * NANO;
        if level >= needed {
            *bucket = Bucket {
                level: level - i128::from(n) * NANO,
                at,
            };
            return RateVerdict::Allowed;
        }
        *bucket = Bucket { level, at };
        let per_ns = i128::from(self.per_sec);
        let wait_ns = (needed - level + per_ns - 1) / per_ns;
        let secs = u64::try_from(wait_ns / NANO).unwrap_or(u64::MAX);
        // In 0..NANO, so it fits.
        let nanos = (wait_ns % NANO) as u32;
        RateVerdict::Limited(Duration::new(secs, nanos))
    }

    /// How many holders have a bucket.
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A full bucket, in nano-units.
    fn capacity(&self) -> i128 {
        i128::from(self.per_sec) * NANO
    }

    /// The bucket's level at `now`, refilled up to capacity.
    fn level_at(&self, bucket: &Bucket, now: Instant) -> i128 {
        let elapsed_ns = now.saturating_duration_since(bucket.at).as_nanos();
        let refill = i128::try_from(elapsed_ns)
            .unwrap_or(i128::MAX)
            .saturating_mul(i128::from(self.per_sec));
        bucket.level.saturating_add(refill).min(self.capacity())
    }

    /// Makes room for one more holder: first drop every bucket that has
    /// refilled (it behaves as an absent one); if none has, drop the least
    /// recently used. One pass over the map, only when it is full.
    fn evict(&self, buckets: &mut HashMap<Box<str>, Bucket>, now: Instant) {
        let capacity = self.capacity();
        buckets.retain(|_, b| self.level_at(b, now) < capacity);
        if buckets.len() >= self.max_holders {
            let oldest = buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(holder, _)| holder.clone());
            if let Some(holder) = oldest {
                buckets.remove(&holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_means_no_limit() {
        let rate = PublishRate::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(rate.take("h", u64::MAX, t), RateVerdict::Allowed);
        }
        assert_eq!(rate.holders(), 0);
    }

    #[test]
    fn a_full_bucket_gives_one_seconds_burst_then_refills() {
        let rate = PublishRate::new(10);
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(rate.take("h", 1, t), RateVerdict::Allowed);
        }
        assert_eq!(rate.take("h", 1, t), RateVerdict::Limited(100 * MS));
        assert_eq!(rate.take("h", 1, t + 99 * MS), RateVerdict::Limited(MS));
        assert_eq!(rate.take("h", 1, t + 100 * MS), RateVerdict::Allowed);
        assert_eq!(
            rate.take("h", 1, t + 100 * MS),
            RateVerdict::Limited(100 * MS)
        );
        // Other holders have their own buckets.
        assert_eq!(rate.take("other", 10, t), RateVerdict::Allowed);
    }

    #[test]
    fn refill_stops_at_capacity() {
        let rate = PublishRate::new(5);
        let t = Instant::now();
        assert_eq!(rate.take("h", 1, t), RateVerdict::Allowed);
        let later = t + Duration::from_secs(3600);
        assert_eq!(rate.take("h", 5, later), RateVerdict::Allowed);
        assert_eq!(rate.take("h", 1, later), RateVerdict::Limited(200 * MS));
    }

    #[test]
    fn a_batch_larger_than_the_burst_goes_into_debt() {
        let rate = PublishRate::new(10);
        let t = Instant::now();
        assert_eq!(rate.take("h", 25, t), RateVerdict::Allowed);
        // 15 units of debt, then one unit needed: 1.6 s.
        assert_eq!(rate.take("h", 1, t), RateVerdict::Limited(1600 * MS));
        // Another large batch needs a full bucket: 2.5 s from the debt.
        assert_eq!(rate.take("h", 25, t), RateVerdict::Limited(2500 * MS));
        assert_eq!(rate.take("h", 25, t + 2500 * MS), RateVerdict::Allowed);
        // The average holds: 50 units over 2.5 s at 10/s plus one burst.
    }

    #[test]
    fn a_partial_bucket_refuses_a_batch_it_cannot_cover() {
        let rate = PublishRate::new(10);
        let t = Instant::now();
        assert_eq!(rate.take("h", 4, t), RateVerdict::Allowed);
        assert_eq!(rate.take("h", 7, t), RateVerdict::Limited(100 * MS));
        assert_eq!(rate.take("h", 20, t), RateVerdict::Limited(400 * MS));
        assert_eq!(rate.take("h", 6, t), RateVerdict::Allowed);
    }

    #[test]
    fn waits_round_up_to_the_nanosecond() {
        let rate = PublishRate::new(3);
        let t = Instant::now();
        assert_eq!(rate.take("h", 3, t), RateVerdict::Allowed);
        // One unit at 3/s is 333,333,333.3 ns: wait the whole last ns.
        assert_eq!(
            rate.take("h", 1, t),
            RateVerdict::Limited(Duration::from_nanos(333_333_334))
        );
        let after = t + Duration::from_nanos(333_333_334);
        assert_eq!(rate.take("h", 1, after), RateVerdict::Allowed);
    }

    #[test]
    fn extreme_rates_and_sizes_do_not_overflow() {
        let t = Instant::now();
        let rate = PublishRate::new(u64::MAX);
        assert_eq!(rate.take("h", u64::MAX, t), RateVerdict::Allowed);
        assert!(matches!(
            rate.take("h", u64::MAX, t),
            RateVerdict::Limited(_)
        ));
        let later = t + Duration::from_secs(10);
        assert_eq!(rate.take("h", u64::MAX, later), RateVerdict::Allowed);
        let slow = PublishRate::new(1);
        assert_eq!(slow.take("h", u64::MAX, t), RateVerdict::Allowed);
        assert_eq!(
            slow.take("h", 1, t),
            RateVerdict::Limited(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn an_earlier_instant_than_the_last_use_refills_nothing() {
        let rate = PublishRate::new(1);
        let t = Instant::now() + Duration::from_secs(1);
        assert_eq!(rate.take("h", 1, t), RateVerdict::Allowed);
        assert_eq!(
            rate.take("h", 1, t - Duration::from_secs(1)),
            RateVerdict::Limited(Duration::from_secs(1))
        );
    }

    #[test]
    fn full_buckets_are_evicted_first_then_the_least_recently_used() {
        let rate = PublishRate::with_max_holders(10, 3);
        let t = Instant::now();
        assert_eq!(rate.take("a", 10, t), RateVerdict::Allowed);
        assert_eq!(rate.take("b", 1, t + MS), RateVerdict::Allowed);
        assert_eq!(rate.take("c", 10, t + 2 * MS), RateVerdict::Allowed);
        assert_eq!(rate.holders(), 3);
        // At t + 200 ms, b has refilled (it equals an absent bucket): only
        // b goes, a and c keep their debt.
        let t2 = t + 200 * MS;
        assert_eq!(rate.take("d", 10, t2), RateVerdict::Allowed);
        assert_eq!(rate.holders(), 3);
        // None has refilled now: the least recently used (a) goes.
        assert_eq!(rate.take("e", 10, t2 + MS), RateVerdict::Allowed);
        assert_eq!(rate.holders(), 3);
        // c kept its debt (and this request makes it recent).
        assert_eq!(
            rate.take("c", 10, t2 + 2 * MS),
            RateVerdict::Limited(800 * MS)
        );
        // a comes back with a full bucket, evicting d, now the least recent.
        assert_eq!(rate.take("a", 10, t2 + 3 * MS), RateVerdict::Allowed);
        assert_eq!(rate.holders(), 3);
        assert_eq!(rate.take("d", 10, t2 + 4 * MS), RateVerdict::Allowed);
    }

    #[test]
    fn shared_between_threads() {
        let rate = PublishRate::new(1000);
        let t = Instant::now();
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        (0..1000)
                            .filter(|_| rate.take("h", 1, t) == RateVerdict::Allowed)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 1000);
    }
}
