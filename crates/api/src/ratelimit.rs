//! Per-key rate limits: a sliding window of one minute and a burst window of
//! one second, by the key's tier (test 60/min and 10/s; live standard 300/min
//! and 50/s; live elevated 1,200/min and 100/s).
//!
//! The limiter lives in each API replica's memory, and each replica enforces
//! its share of a key's limit (`rate_limit.replicas`): counting in Postgres
//! would add a write to every request and make the API as slow as the
//! database's slowest moment, while a load balancer spreads a key's requests
//! across replicas evenly enough that the shares add up to the limit. Set the
//! setting to the number of replicas (the maximum, with an autoscaler).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth::Tier;
use uuid::Uuid;

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

/// Time as the limiter sees it, so tests can move it by hand.
pub trait Clock: Send + Sync {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
    }
}

/// A clock tests set and advance.
#[derive(Default)]
pub struct ManualClock(Mutex<Duration>);

impl ManualClock {
    pub fn new(start: Duration) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().expect("clock lock")
    }
}

/// The documented limits of a tier: requests per minute, per second.
pub fn tier_limits(tier: Tier) -> (u32, u32) {
    match tier {
        Tier::Test => (60, 10),
        Tier::Standard => (300, 50),
        Tier::Elevated => (1200, 100),
    }
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// This replica's per-minute limit for the key.
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds when the minute window next frees a slot.
    pub reset: u64,
    /// Whole seconds to wait before retrying (when refused).
    pub retry_after: u64,
}

pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    replicas: u32,
    /// Times of each key's requests in the last minute, oldest first.
    windows: Mutex<HashMap<Uuid, VecDeque<Duration>>>,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>, replicas: u32) -> Self {
        Self {
            clock,
            replicas: replicas.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `key` if its limits allow it.
    pub fn check(&self, key: Uuid, tier: Tier) -> Decision {
        let (per_minute, per_second) = tier_limits(tier);
        let per_minute = (per_minute / self.replicas).max(1);
        let per_second = (per_second / self.replicas).max(1);
        let now = self.clock.now();
        let mut windows = self.windows.lock().expect("limiter lock");
        // Keys idle for a minute are forgotten, so memory follows active keys.
        if windows.len() > 10_000 {
            windows.retain(|_, w| w.back().is_some_and(|t| now.saturating_sub(*t) < MINUTE));
        }
        let window = windows.entry(key).or_default();
        while window
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= MINUTE)
        {
            window.pop_front();
        }
        let in_last_second = window
            .iter()
            .rev()
            .take_while(|t| now.saturating_sub(**t) < SECOND)
            .count();
        let minute_full = window.len() >= per_minute as usize;
        let second_full = in_last_second >= per_second as usize;
        let allowed = !minute_full && !second_full;
        if allowed {
            window.push_back(now);
        }
        let frees_at = |window_len: Duration, oldest: Option<&Duration>| {
            oldest.map_or(now, |t| *t + window_len)
        };
        let minute_reset = frees_at(MINUTE, window.front());
        let retry_at = if minute_full {
            minute_reset
        } else if second_full {
            frees_at(SECOND, window.iter().rev().nth(in_last_second - 1))
        } else {
            now
        };
        Decision {
            allowed,
            limit: per_minute,
            // A refused request has nothing left to spend, whichever window
            // refused it (the vendor's concepts/rate-limits shows 0 on a 429).
            remaining: if allowed {
                per_minute.saturating_sub(window.len() as u32)
            } else {
                0
            },
            reset: minute_reset.as_secs_f64().ceil() as u64,
            retry_after: retry_at.saturating_sub(now).as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_limiter(replicas: u32) -> (Arc<ManualClock>, RateLimiter) {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
        (clock.clone(), RateLimiter::new(clock, replicas))
    }

    #[test]
    fn a_burst_is_cut_at_the_per_second_limit_and_resumes_a_second_later() {
        let (clock, limiter) = new_limiter(1);
        let key = Uuid::new_v4();
        for _ in 0..10 {
            assert!(limiter.check(key, Tier::Test).allowed);
        }
        let refused = limiter.check(key, Tier::Test);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
        assert_eq!(refused.remaining, 0, "nothing to spend while refused");
        clock.advance(SECOND);
        assert!(limiter.check(key, Tier::Test).allowed);
    }

    #[test]
    fn the_minute_window_slides() {
        let (clock, limiter) = new_limiter(1);
        let key = Uuid::new_v4();
        // 60 requests spread over 6 seconds fill the minute.
        for _ in 0..6 {
            for _ in 0..10 {
                assert!(limiter.check(key, Tier::Test).allowed);
            }
            clock.advance(SECOND);
        }
        let refused = limiter.check(key, Tier::Test);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(
            refused.retry_after, 54,
            "the first second's requests leave at 60 s"
        );
        clock.advance(Duration::from_secs(54));
        let allowed = limiter.check(key, Tier::Test);
        assert!(allowed.allowed);
        assert_eq!(
            allowed.remaining, 9,
            "the first ten left and this one took a slot"
        );
    }

    #[test]
    fn tiers_and_replicas_set_the_limits() {
        let (_, limiter) = new_limiter(1);
        assert_eq!(limiter.check(Uuid::new_v4(), Tier::Standard).limit, 300);
        assert_eq!(limiter.check(Uuid::new_v4(), Tier::Elevated).limit, 1200);
        let (_, shared) = new_limiter(3);
        assert_eq!(shared.check(Uuid::new_v4(), Tier::Test).limit, 20);
    }

    #[test]
    fn keys_are_limited_apart() {
        let (_, limiter) = new_limiter(1);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..10 {
            limiter.check(a, Tier::Test);
        }
        assert!(!limiter.check(a, Tier::Test).allowed);
        assert!(limiter.check(b, Tier::Test).allowed);
    }
}
