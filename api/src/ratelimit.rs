//! Per-IP and per-user rate limits (governor's keyed GCRA limiters on the injected clock)
//! as an axum middleware that answers 429 problem+json with `Retry-After`.
//!
//! Every request counts against its client IP; a request with a valid bearer token also
//! counts against its user, so users behind one NAT share the (generous) IP budget but
//! each has their own. A request with an invalid token is limited by IP only and left to
//! the handler's extractor to refuse.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota};

use crate::auth::Auth;
use crate::clock::Clock;
use crate::problem::ApiError;

/// Sustained requests per second one client IP may make.
pub const PER_IP_PER_SECOND: NonZeroU32 = nonzero(50);
/// Requests one client IP may make at once before the sustained rate applies.
pub const PER_IP_BURST: NonZeroU32 = nonzero(100);
/// Sustained requests per second one user may make.
pub const PER_USER_PER_SECOND: NonZeroU32 = nonzero(10);
/// Requests one user may make at once before the sustained rate applies.
pub const PER_USER_BURST: NonZeroU32 = nonzero(20);
/// Keys (IPs or users) a limiter tracks before it drops the idle ones.
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// Least time between two sweeps of idle keys, so a full table costs no sweep per request.
pub const SWEEP_INTERVAL_MS: u64 = 1_000;

const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// The limits; [`Default`] gives the named constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_ip_per_second: NonZeroU32,
    pub per_ip_burst: NonZeroU32,
    pub per_user_per_second: NonZeroU32,
    pub per_user_burst: NonZeroU32,
    pub max_tracked_keys: usize,
    /// Take the client IP from the last `X-Forwarded-For` entry (the one the proxy in front
    /// of us appended) instead of the peer address. Only behind a trusted proxy.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_second: PER_IP_PER_SECOND,
            per_ip_burst: PER_IP_BURST,
            per_user_per_second: PER_USER_PER_SECOND,
            per_user_burst: PER_USER_BURST,
            max_tracked_keys: MAX_TRACKED_KEYS,
            trust_forwarded_for: false,
        }
    }
}

/// The injected clock as a governor clock, in nanoseconds since the Unix epoch.
#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.now_ms().saturating_mul(1_000_000))
    }
}

type KeyedLimiter<K> =
    governor::RateLimiter<K, DashMapStateStore<K>, GovernorClock, NoOpMiddleware<Nanos>>;

/// The limiters and what they need to key a request.
pub struct RateLimits {
    per_ip: KeyedLimiter<IpAddr>,
    per_user: KeyedLimiter<String>,
    auth: Option<Arc<Auth>>,
    clock: Arc<dyn Clock>,
    config: RateLimitConfig,
    last_sweep_ms: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("config", &self.config)
            .field("tracked_ips", &self.per_ip.len())
            .field("tracked_users", &self.per_user.len())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limiters for `config`. Without `auth` only the per-IP limit applies.
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>, auth: Option<Arc<Auth>>) -> Self {
        let ip_quota = Quota::per_second(config.per_ip_per_second).allow_burst(config.per_ip_burst);
        let user_quota =
            Quota::per_second(config.per_user_per_second).allow_burst(config.per_user_burst);
        let governor_clock = GovernorClock(clock.clone());
        Self {
            per_ip: governor::RateLimiter::dashmap_with_clock(ip_quota, governor_clock.clone()),
            per_user: governor::RateLimiter::dashmap_with_clock(user_quota, governor_clock),
            auth,
            last_sweep_ms: AtomicU64::new(clock.now_ms()),
            clock,
            config,
        }
    }

    /// Counts one request from `peer` with `headers`; 429 if over either limit. The token's
    /// check is kept in `extensions` for the handler's extractor
    /// ([`Auth::authenticate_request`]).
    pub fn check(
        &self,
        headers: &HeaderMap,
        extensions: &mut Extensions,
        peer: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let ip = self.client_ip(headers, peer);
        if let Some(ip) = ip {
            self.per_ip
                .check_key(&ip)
                .map_err(|not_until| self.rate_limited(&not_until))?;
        }
        if let Some(auth) = &self.auth {
            if let Ok(claims) = auth.authenticate_request(headers, extensions) {
                self.per_user
                    .check_key(&claims.sub)
                    .map_err(|not_until| self.rate_limited(&not_until))?;
            }
        }
        self.sweep_if_full();
        Ok(())
    }

    /// The client's address: the peer, or behind a trusted proxy the address it reports.
    fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if self.config.trust_forwarded_for {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|last| last.trim().parse::<IpAddr>().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer
    }

    fn rate_limited(&self, not_until: &NotUntil<Nanos>) -> ApiError {
        let clock = GovernorClock(self.clock.clone());
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
        ApiError::RateLimited {
            retry_after_secs: ceil_secs(wait).max(1),
        }
    }

    /// Drops idle keys when a table is over its size, at most once per sweep interval.
    /// A key is idle once its bucket has refilled, so the tables hold only clients seen
    /// within the last burst/rate seconds.
    fn sweep_if_full(&self) {
        // Time first: counting a DashMap's keys locks every shard, too dear per request, so
        // one caller per interval looks, and sweeps if a table is over its size.
        let now_ms = self.clock.now_ms();
        let last_ms = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last_ms) < SWEEP_INTERVAL_MS {
            return;
        }
        if self
            .last_sweep_ms
            .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let over = self.per_ip.len() > self.config.max_tracked_keys
            || self.per_user.len() > self.config.max_tracked_keys;
        if over {
            self.per_ip.retain_recent();
            self.per_ip.shrink_to_fit();
            self.per_user.retain_recent();
            self.per_user.shrink_to_fit();
        }
    }

    /// Number of keys tracked (IPs, users).
    pub fn tracked_keys(&self) -> (usize, usize) {
        (self.per_ip.len(), self.per_user.len())
    }
}

fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// The middleware: counts the request and answers 429 when over a limit. The peer address
/// comes from `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`); without it, and without a trusted
/// `X-Forwarded-For`, the per-IP limit is skipped.
pub async fn rate_limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    match check_request(&limits, request) {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// [`RateLimits::check`] on a whole request, which it gives back when within the limits.
fn check_request(limits: &RateLimits, request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    limits.check(&parts.headers, &mut parts.extensions, peer)?;
    Ok(Request::from_parts(parts, body))
}

/// Puts the rate-limit middleware in front of every route of `router`.
pub fn with_rate_limits<S>(router: Router<S>, limits: Arc<RateLimits>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(RateLimitLayer { limits })
}

/// [`rate_limit`] as a plain tower layer: the same check, without the boxed future and the
/// clone of the inner service `from_fn` costs on every request of the hot read path.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimited<S> {
    inner: S,
    limits: Arc<RateLimits>,
}

impl<S> tower_service::Service<Request> for RateLimited<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match check_request(&self.limits, request) {
            Ok(request) => futures_util::future::Either::Right(self.inner.call(request)),
            Err(error) => {
                futures_util::future::Either::Left(std::future::ready(Ok(error.into_response())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::clock::ManualClock;
    use axum::body::Body;
    use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    const START_MS: u64 = 1_800_000_000_000;

    fn small_config() -> RateLimitConfig {
        RateLimitConfig {
            per_ip_per_second: nonzero(1),
            per_ip_burst: nonzero(2),
            per_user_per_second: nonzero(1),
            per_user_burst: nonzero(2),
            ..RateLimitConfig::default()
        }
    }

    fn setup(config: RateLimitConfig) -> (Arc<ManualClock>, Arc<Auth>, Router) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let auth =
            Arc::new(Auth::new(b"0123456789abcdef0123456789abcdef", clock.clone()).expect("auth"));
        let limits = Arc::new(RateLimits::new(config, clock.clone(), Some(auth.clone())));
        let router = with_rate_limits(Router::new().route("/", get(|| async { "ok" })), limits);
        (clock, auth, router)
    }

    fn from_ip(ip: [u8; 4], token: Option<&str>) -> Request {
        let mut request = Request::builder()
            .uri("/")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("header value");
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        request
    }

    async fn status(router: &Router, request: Request) -> Response {
        router
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible")
    }

    #[tokio::test]
    async fn ip_over_its_burst_gets_429_with_retry_after() {
        let (clock, _, router) = setup(small_config());
        let ip = [10, 0, 0, 1];
        assert_eq!(
            status(&router, from_ip(ip, None)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            status(&router, from_ip(ip, None)).await.status(),
            StatusCode::OK
        );

        let limited = status(&router, from_ip(ip, None)).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(limited.headers()[RETRY_AFTER], "1");
        let bytes = axum::body::to_bytes(limited.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["type"], "https://boxoffice.dev/problems/rate-limited");

        // Another IP is not affected.
        assert_eq!(
            status(&router, from_ip([10, 0, 0, 2], None)).await.status(),
            StatusCode::OK
        );

        // One cell comes back per second of the injected clock.
        clock.advance_ms(1_000);
        assert_eq!(
            status(&router, from_ip(ip, None)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            status(&router, from_ip(ip, None)).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn retry_after_rounds_the_wait_up() {
        let config = RateLimitConfig {
            per_ip_per_second: nonzero(1),
            per_ip_burst: nonzero(1),
            ..small_config()
        };
        let clock = Arc::new(ManualClock::new(START_MS));
        let limits = RateLimits::new(config, clock.clone(), None);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(limits
            .check(&HeaderMap::new(), &mut Extensions::new(), ip)
            .is_ok());
        clock.advance_ms(100);
        let error = limits
            .check(&HeaderMap::new(), &mut Extensions::new(), ip)
            .expect_err("limited");
        assert!(
            matches!(
                error,
                ApiError::RateLimited {
                    retry_after_secs: 1
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn each_user_has_their_own_budget() {
        let generous_ip = RateLimitConfig {
            per_ip_burst: nonzero(100),
            ..small_config()
        };
        let (_, auth, router) = setup(generous_ip);
        let alice = auth.issue("alice", Role::User).expect("issue").token;
        let bob = auth.issue("bob", Role::User).expect("issue").token;
        let ip = [10, 0, 0, 1];
        for _ in 0..2 {
            assert_eq!(
                status(&router, from_ip(ip, Some(&alice))).await.status(),
                StatusCode::OK
            );
        }
        assert_eq!(
            status(&router, from_ip(ip, Some(&alice))).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Same IP, another user.
        assert_eq!(
            status(&router, from_ip(ip, Some(&bob))).await.status(),
            StatusCode::OK
        );
        // A token that does not verify is limited by IP only.
        for _ in 0..5 {
            let response = status(&router, from_ip(ip, Some("forged"))).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn forwarded_for_is_used_only_when_trusted() {
        let ip = IpAddr::from([10, 0, 0, 9]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7".parse().expect("value"),
        );
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START_MS));

        let untrusted = RateLimits::new(small_config(), clock.clone(), None);
        assert_eq!(untrusted.client_ip(&headers, Some(ip)), Some(ip));

        let trusted = RateLimits::new(
            RateLimitConfig {
                trust_forwarded_for: true,
                ..small_config()
            },
            clock,
            None,
        );
        assert_eq!(
            trusted.client_ip(&headers, Some(ip)),
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        headers.insert("x-forwarded-for", "garbage".parse().expect("value"));
        assert_eq!(trusted.client_ip(&headers, Some(ip)), Some(ip));
    }

    #[tokio::test]
    async fn idle_keys_are_swept_when_the_table_is_full() {
        let config = RateLimitConfig {
            max_tracked_keys: 10,
            ..small_config()
        };
        let clock = Arc::new(ManualClock::new(START_MS));
        let limits = RateLimits::new(config, clock.clone(), None);
        for n in 0..20u8 {
            assert!(limits
                .check(
                    &HeaderMap::new(),
                    &mut Extensions::new(),
                    Some(IpAddr::from([10, 0, 1, n]))
                )
                .is_ok());
        }
        assert_eq!(limits.tracked_keys().0, 20);
        // Buckets refill after burst/rate = 2 s; the next request past the interval sweeps.
        clock.advance_ms(2_000);
        assert!(limits
            .check(
                &HeaderMap::new(),
                &mut Extensions::new(),
                Some(IpAddr::from([10, 0, 2, 1]))
            )
            .is_ok());
        assert_eq!(limits.tracked_keys().0, 1);
    }
}
