//! The crate's error type and its one mapping to HTTP: every error answer is an RFC 9457
//! `application/problem+json` document. Also the request extractors that turn malformed
//! input (bodies, queries, paths) into problems instead of axum's plain-text rejections,
//! and the fallbacks for unknown routes and methods.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Largest request body any endpoint reads; a larger one answers 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Prefix of every problem `type` URI; the slug after it names the problem.
pub const PROBLEM_TYPE_BASE: &str = "https://boxoffice.dev/problems/";

/// Content type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

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

impl IntoResponse for ApiError {
    /// The one mapping from an error to its HTTP answer.
    fn into_response(self) -> Response {
        let mut extensions = Map::new();
        let mut retry_after_secs = None;
        let (status, slug, title, detail) = match self {
            ApiError::MalformedJson {
                detail,
                line,
                column,
            } => {
                extensions.insert("line".into(), json!(line));
                extensions.insert("column".into(), json!(column));
                (
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Malformed JSON",
                    detail,
                )
            }
            ApiError::InvalidRequest { detail, field } => {
                if let Some(field) = field {
                    extensions.insert("field".into(), json!(field));
                }
                (
                    StatusCode::BAD_REQUEST,
                    "invalid-request",
                    "Invalid request",
                    detail,
                )
            }
            ApiError::Unauthorized { detail } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
            ),
            ApiError::Forbidden { detail } => {
                (StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            ApiError::NotFound { detail } => {
                (StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept this method".to_owned(),
            ),
            ApiError::SeatUnavailable { unavailable_seats } => {
                let detail = format!("seats not available: {}", unavailable_seats.join(", "));
                extensions.insert("unavailable_seats".into(), json!(unavailable_seats));
                (
                    StatusCode::CONFLICT,
                    "seat-unavailable",
                    "Seat unavailable",
                    detail,
                )
            }
            ApiError::IdempotencyKeyReused => (
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this idempotency key was used with a different request".to_owned(),
            ),
            ApiError::Conflict { detail } => (StatusCode::CONFLICT, "conflict", "Conflict", detail),
            ApiError::Gone { detail } => (StatusCode::GONE, "gone", "Gone", detail),
            ApiError::PayloadTooLarge { limit_bytes } => {
                extensions.insert("limit_bytes".into(), json!(limit_bytes));
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!("the body is larger than {limit_bytes} bytes"),
                )
            }
            ApiError::UnsupportedMediaType { detail } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            ApiError::Unprocessable { detail, field } => {
                if let Some(field) = field {
                    extensions.insert("field".into(), json!(field));
                }
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    "Unprocessable request",
                    detail,
                )
            }
            ApiError::RateLimited {
                retry_after_secs: secs,
            } => {
                retry_after_secs = Some(secs);
                extensions.insert("retry_after_seconds".into(), json!(secs));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!("rate limit exceeded, retry in {secs} s"),
                )
            }
            ApiError::Unavailable {
                detail,
                retry_after_secs: secs,
            } => {
                retry_after_secs = Some(secs);
                extensions.insert("retry_after_seconds".into(), json!(secs));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    detail,
                )
            }
            ApiError::Internal(message) => {
                tracing::error!(%message, "internal error answered with 500");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                    "an internal error occurred".to_owned(),
                )
            }
        };

        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{PROBLEM_TYPE_BASE}{slug}")));
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(detail));
        body.extend(extensions);
        let body = Value::Object(body).to_string();

        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(secs) = retry_after_secs {
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

/// A JSON request body (`application/json`, at most [`MAX_BODY_BYTES`]) deserialized
/// into `T`, or a 4xx problem naming what is wrong. Give `T` `#[serde(deny_unknown_fields)]`
/// to answer unknown fields with 400. As a response it serializes `T` as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                detail: "expected content type application/json".to_owned(),
            });
        }
        let bytes = read_body(req, MAX_BODY_BYTES).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The raw request body, at most [`MAX_BODY_BYTES`], whatever its content type; for
/// endpoints that must see the exact bytes (a signed webhook).
#[derive(Debug, Clone, Default)]
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_body(req, MAX_BODY_BYTES).await.map(ApiBytes)
    }
}

/// Query-string parameters deserialized into `T`; a bad parameter answers 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_problem(&rejection)),
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let reason = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::InvalidRequest {
        detail: format!("invalid query string: {reason}"),
        field: None,
    }
}

/// Path parameters deserialized into `T`; a parameter of the wrong shape answers 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::InvalidRequest {
                    detail: format!("invalid path parameter: {}", rejection.body_text()),
                    field: None,
                })
            }
            // The route and the extractor disagree: a bug, not the client's fault.
            Err(rejection) => Err(ApiError::Internal(rejection.body_text())),
        }
    }
}

/// Deserializes a JSON document into `T`, naming the failing field or position.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        json_problem(error.into_inner(), path)
    })?;
    // Anything but whitespace after the document is a syntax error.
    deserializer
        .end()
        .map_err(|error| json_problem(error, ".".to_owned()))?;
    Ok(value)
}

fn json_problem(error: serde_json::Error, path: String) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            // "." is the document itself: the message names the field (missing field `x`).
            let field = (path != ".").then_some(path);
            let detail = match &field {
                Some(field) => format!("{field}: {error}"),
                None => error.to_string(),
            };
            ApiError::InvalidRequest { detail, field }
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson {
            detail: error.to_string(),
            line: error.line(),
            column: error.column(),
        },
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the whole body, refusing it with 413 as soon as it passes `limit_bytes`.
async fn read_body(req: Request, limit_bytes: usize) -> Result<Bytes, ApiError> {
    let declared_bytes = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_bytes.is_some_and(|declared| declared > limit_bytes as u64) {
        return Err(ApiError::PayloadTooLarge { limit_bytes });
    }
    let body: Body = req.into_body();
    axum::body::to_bytes(body, limit_bytes)
        .await
        .map_err(|error| {
            if is_length_limit_error(&error) {
                ApiError::PayloadTooLarge { limit_bytes }
            } else {
                ApiError::InvalidRequest {
                    detail: format!("failed to read the body: {error}"),
                    field: None,
                }
            }
        })
}

fn is_length_limit_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, Method};
    use axum::routing::{get, post};
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct HoldBody {
        event_id: String,
        seat_ids: Vec<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Paging {
        #[allow(dead_code)]
        limit: u32,
    }

    fn app() -> Router {
        let router = Router::new()
            .route("/echo", post(|ApiJson(body): ApiJson<HoldBody>| async move { ApiJson(body) }))
            .route("/raw", post(|ApiBytes(bytes): ApiBytes| async move { bytes.len().to_string() }))
            .route("/page", get(|ApiQuery(paging): ApiQuery<Paging>| async move {
                paging.limit.to_string()
            }))
            .route("/n/{n}", get(|ApiPath(n): ApiPath<u32>| async move { n.to_string() }))
            .route("/error/{which}", get(|ApiPath(which): ApiPath<String>| async move {
                Err::<(), _>(sample_error(&which))
            }));
        with_problem_fallbacks(router)
    }

    fn sample_error(which: &str) -> ApiError {
        match which {
            "seats" => ApiError::SeatUnavailable {
                unavailable_seats: vec!["s1".into(), "s2".into()],
            },
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

    async fn call(request: Request) -> (StatusCode, HeaderMap, Value) {
        let response = app().oneshot(request).await.expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    fn post_json(uri: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("request")
    }

    fn get_req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    }

    /// Asserts the problem+json shape and returns the body.
    fn assert_problem(
        status: StatusCode,
        headers: &HeaderMap,
        body: &Value,
        want: u16,
        slug: &str,
    ) {
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(headers[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(body["type"], format!("{PROBLEM_TYPE_BASE}{slug}"));
        assert_eq!(body["status"], want);
        assert!(body["title"].is_string());
        assert!(body["detail"].is_string());
    }

    #[tokio::test]
    async fn valid_body_round_trips() {
        let (status, headers, body) =
            call(post_json("/echo", r#"{"event_id":"e1","seat_ids":[1,2]}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(body, json!({"event_id": "e1", "seat_ids": [1, 2]}));
    }

    #[tokio::test]
    async fn malformed_json_is_400_with_position() {
        let (status, headers, body) = call(post_json("/echo", "{\"event_id\": \"e1\",\n  ]")).await;
        assert_problem(status, &headers, &body, 400, "malformed-json");
        assert_eq!(body["line"], 2);
        assert_eq!(body["column"], 3);
    }

    #[tokio::test]
    async fn truncated_and_empty_and_trailing_bodies_are_malformed() {
        for text in [
            r#"{"event_id": "e1""#,
            "",
            r#"{"event_id":"e1","seat_ids":[]} x"#,
        ] {
            let (status, headers, body) = call(post_json("/echo", text)).await;
            assert_problem(status, &headers, &body, 400, "malformed-json");
        }
    }

    #[tokio::test]
    async fn wrong_type_names_the_field() {
        let (status, headers, body) = call(post_json(
            "/echo",
            r#"{"event_id":"e1","seat_ids":[1,"two"]}"#,
        ))
        .await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        assert_eq!(body["field"], "seat_ids[1]");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("seat_ids[1]: invalid type"), "{detail}");
    }

    #[tokio::test]
    async fn unknown_field_is_named() {
        let (status, headers, body) = call(post_json(
            "/echo",
            r#"{"event_id":"e1","seat_ids":[],"price":0}"#,
        ))
        .await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("unknown field `price`"), "{detail}");
    }

    #[tokio::test]
    async fn missing_field_is_named() {
        let (status, headers, body) = call(post_json("/echo", r#"{"event_id":"e1"}"#)).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("missing field `seat_ids`"), "{detail}");
    }

    #[tokio::test]
    async fn deep_nesting_is_400_not_a_stack_overflow() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (status, headers, body) = call(post_json("/echo", text)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn content_type_must_be_json() {
        let missing = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .body(Body::from(r#"{"event_id":"e1","seat_ids":[]}"#))
            .expect("request");
        let (status, headers, body) = call(missing).await;
        assert_problem(status, &headers, &body, 415, "unsupported-media-type");

        let text = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .expect("request");
        let (status, _, _) = call(text).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let with_charset = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")
            .body(Body::from(r#"{"event_id":"e1","seat_ids":[]}"#))
            .expect("request");
        let (status, _, _) = call(with_charset).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let big = format!(
            r#"{{"event_id":"{}","seat_ids":[]}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );

        // Declared by Content-Length: refused before reading.
        let mut declared = post_json("/echo", big.clone());
        declared
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(big.len()));
        let (status, headers, body) = call(declared).await;
        assert_problem(status, &headers, &body, 413, "payload-too-large");
        assert_eq!(body["limit_bytes"], MAX_BODY_BYTES);

        // Undeclared (or understated): refused while reading.
        let mut understated = post_json("/echo", big);
        understated
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(10));
        let (status, headers, body) = call(understated).await;
        assert_problem(status, &headers, &body, 413, "payload-too-large");

        // The raw-bytes extractor has the same limit; exactly the limit passes.
        let (status, _, _) = call(post_json("/raw", vec![b'a'; MAX_BODY_BYTES + 1])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _, body) = call(post_json("/raw", vec![b'a'; MAX_BODY_BYTES])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!(MAX_BODY_BYTES));
    }

    #[tokio::test]
    async fn bad_query_and_path_are_400() {
        let (status, headers, body) = call(get_req("/page?limit=lots")).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("limit"), "{detail}");

        let (status, _, body) = call(get_req("/page?limit=5")).await;
        assert_eq!((status, body), (StatusCode::OK, json!(5)));

        let (status, headers, body) = call(get_req("/n/minus-one")).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
    }

    #[tokio::test]
    async fn unknown_route_is_404_problem() {
        let (status, headers, body) = call(get_req("/nope/nothing")).await;
        assert_problem(status, &headers, &body, 404, "not-found");
        assert_eq!(body["detail"], "no route for /nope/nothing");
    }

    #[tokio::test]
    async fn wrong_method_is_405_problem_with_allow() {
        let (status, headers, body) = call(get_req("/echo")).await;
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
            let (status, headers, body) = call(get_req(&format!("/error/{which}"))).await;
            assert_problem(status, &headers, &body, want, slug);
        }
    }

    #[tokio::test]
    async fn extension_fields_and_headers() {
        let (_, _, body) = call(get_req("/error/seats")).await;
        assert_eq!(body["unavailable_seats"], json!(["s1", "s2"]));

        let (_, headers, body) = call(get_req("/error/rate")).await;
        assert_eq!(headers[RETRY_AFTER], "3");
        assert_eq!(body["retry_after_seconds"], 3);

        let (_, headers, _) = call(get_req("/error/unavailable")).await;
        assert_eq!(headers[RETRY_AFTER], "1");

        let (_, headers, _) = call(get_req("/error/unauthorized")).await;
        assert!(headers.contains_key(WWW_AUTHENTICATE));

        let (_, _, body) = call(get_req("/error/unprocessable")).await;
        assert_eq!(body["field"], "hold_ttl_seconds");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_message() {
        let (_, _, body) = call(get_req("/error/internal")).await;
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
}
