//! The per-client request rate: a token bucket per caller (per address before the caller is
//! known), refilled continuously; an empty bucket answers 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::StatusCode;
use fhirop::outcome::{IssueType, OperationError};

/// How many idle clients the limiter remembers before it forgets the ones whose buckets
/// are full again.
const REMEMBERED_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Requests per second per client, with a burst of one second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter of `per_second` requests per client; `None` for 0 (no limit).
    pub fn new(per_second: u32) -> Option<RateLimiter> {
        (per_second > 0).then(|| RateLimiter {
            per_second: f64::from(per_second),
            buckets: Mutex::default(),
        })
    }

    /// Takes one request from `client`'s bucket, or says when to retry.
    pub fn check(&self, client: &str) -> Result<(), OperationError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > REMEMBERED_CLIENTS {
            let per_second = self.per_second;
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second < per_second
            });
        }
        // Look up before inserting: the key is allocated only for a client not seen yet, and a
        // known client (every request but its first) costs one lookup.
        let bucket = match buckets.get_mut(client) {
            Some(bucket) => bucket,
            None => buckets.entry(client.to_owned()).or_insert(Bucket {
                tokens: self.per_second,
                updated: now,
            }),
        };
        let refilled = bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = refilled.min(self.per_second);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.per_second).ceil().max(1.0);
        Err(OperationError::new(
            StatusCode::TOO_MANY_REQUESTS,
            IssueType::Throttled,
            format!("more than {} requests per second from this client", self.per_second),
        )
        .with_header("Retry-After", format!("{wait}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_429_and_others_are_unaffected() {
        let limiter = RateLimiter::new(3).unwrap();
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let refused = limiter.check("a").unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers, [("Retry-After", "1".to_owned())]);
        assert!(limiter.check("b").is_ok());
        assert!(RateLimiter::new(0).is_none());
    }
}
