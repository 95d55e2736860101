//! Request extractors that turn malformed input (bodies, queries, paths) into
//! [`ApiError`] problems instead of axum's plain-text rejections, with one body limit for
//! every endpoint. A body over the limit is answered 413 only after the rest of it has been
//! read and thrown away (within [`LINGER_MAX_BYTES`] and [`LINGER_MAX_MS`]), as nginx's
//! lingering close does: many clients write the whole body before they read, and a server
//! that closes early makes them see a broken pipe instead of the answer.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::problem::ApiError;

/// Largest request body any endpoint reads; a larger one answers 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most bytes of an oversized body read and discarded before the 413 goes out; past this
/// the connection is closed with the rest unread.
pub const LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Longest an oversized body is read and discarded before the 413 goes out.
pub const LINGER_MAX_MS: u64 = 5_000;

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

/// Reads the whole body, refusing it with 413 once it passes `limit_bytes` (or declares
/// more in `Content-Length`). Before that answer goes out, the rest of the body is read and
/// discarded, within [`LINGER_MAX_BYTES`] and [`LINGER_MAX_MS`], so a client that writes
/// everything before it reads still gets the problem instead of a reset connection.
async fn read_body(req: Request, limit_bytes: usize) -> Result<Bytes, ApiError> {
    let declared_bytes = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut body: Body = req.into_body();
    if declared_bytes.is_some_and(|declared| declared > limit_bytes as u64) {
        linger(body).await;
        return Err(ApiError::PayloadTooLarge { limit_bytes });
    }
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ApiError::InvalidRequest {
            detail: format!("failed to read the body: {error}"),
            field: None,
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing an endpoint reads
        };
        if buffer.len() + data.len() > limit_bytes {
            linger(body).await;
            return Err(ApiError::PayloadTooLarge { limit_bytes });
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer))
}

/// Reads and discards what is left of `body`, up to [`LINGER_MAX_BYTES`] or
/// [`LINGER_MAX_MS`], whichever comes first; a body that ends, or fails, ends it sooner.
async fn linger(mut body: Body) {
    let drain = async {
        let mut discarded = 0usize;
        while discarded < LINGER_MAX_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => discarded += frame.data_ref().map_or(0, |data| data.len()),
                Some(Err(_)) | None => break,
            }
        }
    };
    // Timing out is the expected end for a client that never stops sending.
    let _ = tokio::time::timeout(Duration::from_millis(LINGER_MAX_MS), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::testing::{assert_problem, call, get_req, post_json};
    use crate::problem::{with_problem_fallbacks, PROBLEM_CONTENT_TYPE};
    use axum::http::{header, HeaderValue, Method, StatusCode};
    use axum::routing::{get, post};
    use axum::Router;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct HoldBody {
        event_id: String,
        seat_ids: Vec<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Paging {
        limit: u32,
    }

    fn app() -> Router {
        let router = Router::new()
            .route(
                "/echo",
                post(|ApiJson(body): ApiJson<HoldBody>| async move { ApiJson(body) }),
            )
            .route(
                "/raw",
                post(|ApiBytes(bytes): ApiBytes| async move { bytes.len().to_string() }),
            )
            .route(
                "/page",
                get(|ApiQuery(paging): ApiQuery<Paging>| async move { paging.limit.to_string() }),
            )
            .route(
                "/n/{n}",
                get(|ApiPath(n): ApiPath<u32>| async move { n.to_string() }),
            );
        with_problem_fallbacks(router)
    }

    #[tokio::test]
    async fn valid_body_round_trips() {
        let (status, headers, body) = call(
            app(),
            post_json("/echo", r#"{"event_id":"e1","seat_ids":[1,2]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body, json!({"event_id": "e1", "seat_ids": [1, 2]}));
    }

    #[tokio::test]
    async fn malformed_json_is_400_with_position() {
        let (status, headers, body) =
            call(app(), post_json("/echo", "{\"event_id\": \"e1\",\n  ]")).await;
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
            let (status, headers, body) = call(app(), post_json("/echo", text)).await;
            assert_problem(status, &headers, &body, 400, "malformed-json");
        }
    }

    #[tokio::test]
    async fn wrong_type_names_the_field() {
        let (status, headers, body) = call(
            app(),
            post_json("/echo", r#"{"event_id":"e1","seat_ids":[1,"two"]}"#),
        )
        .await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        assert_eq!(body["field"], "seat_ids[1]");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("seat_ids[1]: invalid type"), "{detail}");
    }

    #[tokio::test]
    async fn unknown_field_is_named() {
        let (status, headers, body) = call(
            app(),
            post_json("/echo", r#"{"event_id":"e1","seat_ids":[],"price":0}"#),
        )
        .await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("unknown field `price`"), "{detail}");
    }

    #[tokio::test]
    async fn missing_field_is_named() {
        let (status, headers, body) = call(app(), post_json("/echo", r#"{"event_id":"e1"}"#)).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("missing field `seat_ids`"), "{detail}");
    }

    #[tokio::test]
    async fn deep_nesting_is_400_not_a_stack_overflow() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (status, headers, body) = call(app(), post_json("/echo", text)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn content_type_must_be_json() {
        let missing = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .body(Body::from(r#"{"event_id":"e1","seat_ids":[]}"#))
            .expect("request");
        let (status, headers, body) = call(app(), missing).await;
        assert_problem(status, &headers, &body, 415, "unsupported-media-type");

        let text = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .expect("request");
        let (status, _, _) = call(app(), text).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let with_charset = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")
            .body(Body::from(r#"{"event_id":"e1","seat_ids":[]}"#))
            .expect("request");
        let (status, _, _) = call(app(), with_charset).await;
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
        let (status, headers, body) = call(app(), declared).await;
        assert_problem(status, &headers, &body, 413, "payload-too-large");
        assert_eq!(body["limit_bytes"], MAX_BODY_BYTES);

        // Undeclared (or understated): refused while reading.
        let mut understated = post_json("/echo", big);
        understated
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(10));
        let (status, headers, body) = call(app(), understated).await;
        assert_problem(status, &headers, &body, 413, "payload-too-large");

        // The raw-bytes extractor has the same limit; exactly the limit passes.
        let (status, _, _) = call(app(), post_json("/raw", vec![b'a'; MAX_BODY_BYTES + 1])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _, body) = call(app(), post_json("/raw", vec![b'a'; MAX_BODY_BYTES])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!(MAX_BODY_BYTES));
    }

    #[tokio::test]
    async fn bad_query_and_path_are_400() {
        let (status, headers, body) = call(app(), get_req("/page?limit=lots")).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("limit"), "{detail}");

        let (status, _, body) = call(app(), get_req("/page?limit=5")).await;
        assert_eq!((status, body), (StatusCode::OK, json!(5)));

        let (status, headers, body) = call(app(), get_req("/n/minus-one")).await;
        assert_problem(status, &headers, &body, 400, "invalid-request");
    }
}
