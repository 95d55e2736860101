//! The REST front tier of boxoffice.
//!
//! # Layout
//!
//! * [`problem`]: the crate's one error type, [`ApiError`], and the one function that
//!   turns it into an RFC 9457 `application/problem+json` answer; the request extractors
//!   ([`ApiJson`], [`ApiBytes`], [`ApiQuery`], [`ApiPath`]) that turn bad input into those
//!   problems; the 404/405 fallbacks ([`with_problem_fallbacks`]).
//! * [`clock`]: wall-clock time as an injected [`Clock`], so tests and the simulator
//!   control token expiry, rate limits and webhook timestamps.
//! * [`auth`]: HS256 bearer tokens, the [`User`] and [`Admin`] extractors, and the dev-mode
//!   issuer behind [`auth_routes`].
//! * [`ratelimit`]: per-IP and per-user limits (governor) as a middleware answering 429.
//! * [`payments`]: the [`PaymentProcessor`] trait; the local sandbox processor (HTTP
//!   routes, checkout page, signed webhooks with retries); webhook signature verification
//!   and event parsing for the receiving side.
//!
//! Routers are built here and served by `node/`: nothing in this crate binds a socket
//! outside tests.

pub mod auth;
pub mod clock;
pub mod payments;
pub mod problem;
pub mod ratelimit;

pub use auth::{auth_routes, Admin, Auth, Claims, Role, User};
pub use clock::{Clock, ManualClock, SystemClock};
pub use payments::{PaymentProcessor, Sandbox, SandboxProcessor};
pub use problem::{with_problem_fallbacks, ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery};
pub use ratelimit::{with_rate_limits, RateLimitConfig, RateLimits};
