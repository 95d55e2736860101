//! The crate's error type and its one mapping to HTTP: every error answer is an RFC 9457
//! `application/problem+json` [`Problem`], the same type the OpenAPI document describes.
//! Also the fallbacks for unknown routes and methods. The extractors that turn malformed
//! input into these errors are in [`crate::extract`].

use axum::extract::DefaultBodyLimit;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::MAX_BODY_BYTES;

/// Prefix of every problem `type` URI; the slug after it names the problem.
pub const PROBLEM_TYPE_BASE: &str = "https://boxoffice.dev/problems/";

/// Content type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem, the body of every 4xx/5xx answer. Extension members are present
/// only for the problems that carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `https://boxoffice.dev/problems/<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending field, when one is known (`seat_ids[2]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 409 seat-unavailable: the seats that were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_seats: Option<Vec<String>>,
    /// 409 not-enough-seats: the most seats a best-available hold like this one could get
    /// now (free seats matching it; with `adjacent`, the longest block of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// 429 and 503: how long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// 413: the body limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// 400 malformed-json: where parsing stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: String) -> Self {
        Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            field: None,
            unavailable_seats: None,
            available: None,
            retry_after_seconds: None,
            limit_bytes: None,
            line: None,
            column: None,
        }
    }
}

/// Every way a request can fail, one variant per problem a client can tell apart.
/// [`IntoResponse`] is the only place a variant becomes a status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON (syntax error, truncated, trailing data).
    #[error("malformed json: {detail}")]
    MalformedJson {
        detail: String,
        line: usize,
        column: usize,
    },
    /// 400: well-formed but wrong: unknown or missing field, wrong type, bad value.
    /// `field` is the path of the offending field (`seat_ids[2]`) when one is known.
    #[error("invalid request: {detail}")]
    InvalidRequest {
        detail: String,
        field: Option<String>,
    },
    /// 401: no token, or a token that is malformed, badly signed or expired.
    #[error("unauthorized: {detail}")]
    Unauthorized { detail: String },
    /// 403: a valid token without the role the endpoint needs.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// 404: unknown route, event, hold, booking or intent.
    #[error("not found: {detail}")]
    NotFound { detail: String },
    /// 405: the route exists but not for this method (axum adds the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: some of the requested seats are held or sold.
    #[error("seats unavailable: {}", unavailable_seats.join(", "))]
    SeatUnavailable { unavailable_seats: Vec<String> },
    /// 409: a best-available hold found fewer matching seats than it asked for.
    #[error("not enough seats: {available} available")]
    NotEnoughSeats { available: u32 },
    /// 409: an `Idempotency-Key` was reused with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// 409: any other state conflict (hold expired or not yours, intent already failed).
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// 410: the hold has expired.
    #[error("gone: {detail}")]
    Gone { detail: String },
    /// 413: the body is larger than `limit_bytes`.
    #[error("payload too large: more than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// 415: the body is not declared as JSON.
    #[error("unsupported media type: {detail}")]
    UnsupportedMediaType { detail: String },
    /// 422: understood but cannot be done as asked (a rule of the domain, not the syntax).
    #[error("unprocessable: {detail}")]
    Unprocessable {
        detail: String,
        field: Option<String>,
    },
    /// 429: over a rate limit.
    #[error("rate limited: retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: cannot serve now (the owning shard has no leader, a queue is full); nothing
    /// was changed.
    #[error("unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
    },
    /// 500: a bug or a broken dependency. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about the named field.
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            detail: detail.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            detail: detail.into(),
        }
    }
}

impl ApiError {
    /// The one mapping from an error to its status and problem document.
    pub fn to_problem(self) -> (StatusCode, Problem) {
        use StatusCode as S;
        let problem = match self {
            ApiError::MalformedJson {
                detail,
                line,
                column,
            } => Problem {
                line: Some(line as u64),
                column: Some(column as u64),
                ..Problem::new(S::BAD_REQUEST, "malformed-json", "Malformed JSON", detail)
            },
            ApiError::InvalidRequest { detail, field } => Problem {
                field,
                ..Problem::new(S::BAD_REQUEST, "invalid-request", "Invalid request", detail)
            },
            ApiError::Unauthorized { detail } => {
                Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
            }
            ApiError::Forbidden { detail } => {
                Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            ApiError::NotFound { detail } => {
                Problem::new(S::NOT_FOUND, "not-found", "Not found", detail)
            }
            ApiError::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept this method".to_owned(),
            ),
            ApiError::SeatUnavailable { unavailable_seats } => Problem {
                unavailable_seats: Some(unavailable_seats.clone()),
                ..Problem::new(
                    S::CONFLICT,
                    "seat-unavailable",
                    "Seat unavailable",
                    format!("seats not available: {}", unavailable_seats.join(", ")),
                )
            },
            ApiError::NotEnoughSeats { available } => Problem {
                available: Some(available),
                ..Problem::new(
                    S::CONFLICT,
                    "not-enough-seats",
                    "Not enough seats",
                    format!("not enough matching seats are free: at most {available} now"),
                )
            },
            ApiError::IdempotencyKeyReused => Problem::new(
                S::CONFLICT,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this idempotency key was used with a different request".to_owned(),
            ),
            ApiError::Conflict { detail } => {
                Problem::new(S::CONFLICT, "conflict", "Conflict", detail)
            }
            ApiError::Gone { detail } => Problem::new(S::GONE, "gone", "Gone", detail),
            ApiError::PayloadTooLarge { limit_bytes } => Problem {
                limit_bytes: Some(limit_bytes as u64),
                ..Problem::new(
                    S::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!("the body is larger than {limit_bytes} bytes"),
                )
            },
            ApiError::UnsupportedMediaType { detail } => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            ApiError::Unprocessable { detail, field } => Problem {
                field,
                ..Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    "Unprocessable request",
                    detail,
                )
            },
            ApiError::RateLimited { retry_after_secs } => Problem {
                retry_after_seconds: Some(retry_after_secs),
                ..Problem::new(
                    S::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!("rate limit exceeded, retry in {retry_after_secs} s"),
                )
            },
            ApiError::Unavailable {
                detail,
                retry_after_secs,
            } => Problem {
                retry_after_seconds: Some(retry_after_secs),
                ..Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    detail,
                )
            },
            ApiError::Internal(message) => {
                tracing::error!(%message, "internal error answered with 500");
                Problem::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                    "an internal error occurred".to_owned(),
                )
            }
        };
        let status = StatusCode::from_u16(problem.status).unwrap_or(S::INTERNAL_SERVER_ERROR);
        (status, problem)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, problem) = self.to_problem();
        // A struct of strings, numbers and options always serializes.
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(secs) = problem.retry_after_seconds {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"boxoffice\""),
            );
        }
        response
    }
}

/// Fallback for routes that do not exist: a 404 problem.
pub async fn not_found_fallback(uri: Uri) -> ApiError {
    ApiError::NotFound {
        detail: format!("no route for {}", uri.path()),
    }
}

/// Fallback for a known route called with a method it lacks: a 405 problem (axum adds
/// the `Allow` header).
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Finishes a router so that everything it answers on its own is problem+json too:
/// unknown routes (404), wrong methods (405) and, as a second line behind the
/// extractors, axum's own body limit. Call it after every route has been added or
/// merged: the 405 fallback only reaches routes that exist when it is called.
pub fn with_problem_fallbacks<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Helpers for the tests of this module and of [`crate::extract`]: one request through a
/// router, and the problem+json shape every error answer must have.
#[cfg(test)]
pub(crate) mod testing {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{header, HeaderMap, Method, StatusCode};
    use axum::Router;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::{PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE};

    pub async fn call(router: Router, request: Request) -> (StatusCode, HeaderMap, Value) {
        let response = router.oneshot(request).await.expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    pub fn post_json(uri: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("request")
    }

    pub fn get_req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    }

    /// Asserts the problem+json shape: status, content type, `type`, `title`, `detail`.
    pub fn assert_problem(
        status: StatusCode,
        headers: &HeaderMap,
        body: &Value,
        want: u16,
        slug: &str,
    ) {
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(body["type"], format!("{PROBLEM_TYPE_BASE}{slug}"));
        assert_eq!(body["status"], want);
        assert!(body["title"].is_string());
        assert!(body["detail"].is_string());
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_problem, call, get_req};
    use super::*;
    use axum::http::header;
    use axum::routing::{get, post};
    use serde_json::json;

    use crate::extract::ApiPath;

    fn app() -> Router {
        let router =
            Router::new()
                .route("/echo", post(|| async { "posted" }))
                .route(
                    "/error/{which}",
                    get(|ApiPath(which): ApiPath<String>| async move {
                        Err::<(), _>(sample_error(&which))
                    }),
                );
        with_problem_fallbacks(router)
    }

    fn sample_error(which: &str) -> ApiError {
        match which {
            "seats" => ApiError::SeatUnavailable {
                unavailable_seats: vec!["s1".into(), "s2".into()],
            },
            "not-enough" => ApiError::NotEnoughSeats { available: 2 },
            "rate" => ApiError::RateLimited {
                retry_after_secs: 3,
            },
            "unavailable" => ApiError::Unavailable {
                detail: "no leader for shard 4".into(),
                retry_after_secs: 1,
            },
            "internal" => ApiError::Internal("sled said no at /var/secret/path".into()),
            "unauthorized" => ApiError::Unauthorized {
                detail: "missing bearer token".into(),
            },
            "forbidden" => ApiError::Forbidden {
                detail: "needs role admin".into(),
            },
            "idempotency" => ApiError::IdempotencyKeyReused,
            "conflict" => ApiError::Conflict {
                detail: "hold is not yours".into(),
            },
            "gone" => ApiError::Gone {
                detail: "hold expired".into(),
            },
            "unprocessable" => ApiError::Unprocessable {
                detail: "hold_ttl_seconds must be in 1..3600".into(),
                field: Some("hold_ttl_seconds".into()),
            },
            _ => ApiError::not_found(format!("no sample error {which}")),
        }
    }

    #[tokio::test]
    async fn unknown_route_is_404_problem() {
        let (status, headers, body) = call(app(), get_req("/nope/nothing")).await;
        assert_problem(status, &headers, &body, 404, "not-found");
        assert_eq!(body["detail"], "no route for /nope/nothing");
    }

    #[tokio::test]
    async fn wrong_method_is_405_problem_with_allow() {
        let (status, headers, body) = call(app(), get_req("/echo")).await;
        assert_problem(status, &headers, &body, 405, "method-not-allowed");
        assert_eq!(headers[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn each_variant_maps_to_its_status_and_type() {
        let cases = [
            ("seats", 409, "seat-unavailable"),
            ("rate", 429, "rate-limited"),
            ("unavailable", 503, "unavailable"),
            ("internal", 500, "internal"),
            ("unauthorized", 401, "unauthorized"),
            ("forbidden", 403, "forbidden"),
            ("idempotency", 409, "idempotency-key-reused"),
            ("conflict", 409, "conflict"),
            ("gone", 410, "gone"),
            ("unprocessable", 422, "unprocessable"),
            ("other", 404, "not-found"),
        ];
        for (which, want, slug) in cases {
            let (status, headers, body) = call(app(), get_req(&format!("/error/{which}"))).await;
            assert_problem(status, &headers, &body, want, slug);
        }
    }

    #[tokio::test]
    async fn extension_fields_and_headers() {
        let (_, _, body) = call(app(), get_req("/error/seats")).await;
        assert_eq!(body["unavailable_seats"], json!(["s1", "s2"]));

        let (status, _, body) = call(app(), get_req("/error/not-enough")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["available"], 2);
        assert_eq!(
            body["type"],
            "https://boxoffice.dev/problems/not-enough-seats"
        );

        let (_, headers, body) = call(app(), get_req("/error/rate")).await;
        assert_eq!(headers[RETRY_AFTER], "3");
        assert_eq!(body["retry_after_seconds"], 3);

        let (_, headers, _) = call(app(), get_req("/error/unavailable")).await;
        assert_eq!(headers[RETRY_AFTER], "1");

        let (_, headers, _) = call(app(), get_req("/error/unauthorized")).await;
        assert!(headers.contains_key(WWW_AUTHENTICATE));

        let (_, _, body) = call(app(), get_req("/error/unprocessable")).await;
        assert_eq!(body["field"], "hold_ttl_seconds");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_message() {
        let (_, _, body) = call(app(), get_req("/error/internal")).await;
        assert_eq!(body["detail"], "an internal error occurred");
        assert!(!body.to_string().contains("secret"));
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_punctuation() {
        let errors = [
            ApiError::MethodNotAllowed,
            ApiError::IdempotencyKeyReused,
            ApiError::PayloadTooLarge { limit_bytes: 1 },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::SeatUnavailable {
                unavailable_seats: vec!["a".into()],
            },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                message.starts_with(|c: char| c.is_ascii_lowercase()),
                "{message}"
            );
            assert!(!message.ends_with(['.', '!']), "{message}");
        }
    }

    #[test]
    fn a_problem_omits_the_members_it_does_not_carry() {
        let (_, problem) = ApiError::not_found("no event e1").to_problem();
        let body = serde_json::to_value(&problem).expect("serializes");
        assert_eq!(
            body,
            json!({"type": format!("{PROBLEM_TYPE_BASE}not-found"), "title": "Not found",
                   "status": 404, "detail": "no event e1"})
        );
        let back: Problem = serde_json::from_value(body).expect("round trip");
        assert_eq!(back, problem);
    }
}
