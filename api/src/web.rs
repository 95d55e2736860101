//! The fan's web page: one HTML shell, a stylesheet and a script (in `api/web/`, embedded in
//! the binary) served at `/` and at every page path the script routes on the client. The
//! script talks only to the public REST API and its SSE stream, from the same origin.
//!
//! | path | page |
//! |---|---|
//! | `/` | search with type-ahead, filters and cursor paging |
//! | `/events/{event_id}` | event details, live seat map, hold with countdown, checkout |
//! | `/bookings/{booking_id}` | one booking, re-read until payment settles it |
//! | `/bookings` | the signed-in user's bookings |
//! | `/signin` | development sign-in through `POST /v1/auth/token` |
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's script,
//! style and connections (the script adds no inline handlers or style attributes).

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");
const FAVICON_SVG: &str = include_str!("../web/favicon.svg");

/// Same-origin everything; `form-action` also allows the sandbox's checkout form, which the
/// pages link to on this origin.
const CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
);
/// Assets change with the binary; browsers revalidate instead of guessing.
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// Page paths and assets, for any router state (none is used).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/signin", get(page))
        .route("/bookings", get(page))
        .route("/bookings/{booking_id}", get(page))
        .route("/events/{event_id}", get(page))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// The shell every page path answers; the script renders the page the path names.
async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, CSP);
    headers.insert(CACHE_CONTROL, NO_CACHE);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn fetch(path: &str) -> (StatusCode, String, String, String) {
        let response = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (status, content_type, csp) = (
            response.status(),
            header(CONTENT_TYPE),
            header(CONTENT_SECURITY_POLICY),
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            csp,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_page_path_answers_the_shell_under_a_same_origin_policy() {
        for path in [
            "/",
            "/signin",
            "/bookings",
            "/bookings/bk_1.ev_1",
            "/events/ev_demo_00001",
        ] {
            let (status, content_type, csp, body) = fetch(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(content_type.starts_with("text/html"), "{path}");
            assert!(csp.contains("script-src 'self'"), "{path}");
            assert!(body.contains("<script type=\"module\" src=\"/assets/app.js\">"));
        }
    }

    #[tokio::test]
    async fn assets_have_their_types() {
        assert!(fetch("/assets/app.js")
            .await
            .1
            .starts_with("text/javascript"));
        assert!(fetch("/assets/app.css").await.1.starts_with("text/css"));
        assert_eq!(fetch("/favicon.svg").await.1, "image/svg+xml");
    }

    #[test]
    fn the_markup_has_no_inline_handlers_or_styles() {
        for (name, text) in [("index.html", INDEX_HTML), ("app.js", APP_JS)] {
            for banned in [" onclick=", " onload=", " style=\"", "<script>"] {
                assert!(!text.contains(banned), "{name} contains {banned}");
            }
        }
    }
}
