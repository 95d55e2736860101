//! The OpenAPI document served at `/openapi.json`, generated from the handlers' and types'
//! annotations (utoipa): every schema is the type the server really reads or writes. A
//! modifier adds the problem+json answers every operation can give (bad input, missing
//! auth, rate limits, no leader, …) so the document lists every status the server really
//! sends. This module depends on the route handlers, never the other way round: it serves
//! its own document ([`serve`]), which `routes::router` mounts.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::problem::Problem;
use crate::routes::{admin, bookings, cluster, events, holds, ops, queue, search, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "A ticketing backend that never sells a seat twice. All errors are application/problem+json (RFC 9457); money is integer minor units plus an ISO 4217 currency; times are RFC 3339 UTC."),
    paths(
        search::search, search::suggest,
        events::view, events::seats, events::stream,
        queue::join, queue::get, queue::leave, queue::stream, queue::figures,
        holds::create, holds::get, holds::release,
        bookings::create, bookings::get, bookings::mine,
        webhooks::receive,
        admin::create_venue, admin::get_venue, admin::create_performer, admin::create_event, admin::get_event, admin::patch_event,
        cluster::view, cluster::move_leader, cluster::move_replica, cluster::add_node, cluster::drain_node,
        cluster::add_groups,
        ops::healthz, ops::readyz, ops::metrics, serve,
        crate::auth::issue_dev_token,
    ),
    components(schemas(Problem, crate::seats::SeatState, crate::views::SeatBatch, crate::views::SeatChange)),
    modifiers(&Security, &ProblemAnswers, &Links),
    tags(
        (name = "events", description = "Search, type-ahead, event views and seat maps (no token needed)"),
        (name = "queue", description = "The waiting room of a queue-enabled event: join, watch your place, get admitted"),
        (name = "holds", description = "Put seats on hold during checkout"),
        (name = "bookings", description = "Pay for a hold"),
        (name = "payments", description = "The payment processor's webhooks"),
        (name = "admin", description = "The catalog (role admin)"),
        (name = "cluster", description = "Operating the storage cluster (role admin)"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds the problem answers each operation can give, unless it documents its own.
struct ProblemAnswers;

const ALWAYS: [(u16, &str); 5] = [
    (
        400,
        "Malformed or invalid request; `detail` (and `field`) say what",
    ),
    (404, "Unknown route or object"),
    (405, "The route does not take this method"),
    (500, "A bug; nothing about it is disclosed"),
    (
        503,
        "The owning shard has no leader, or the request timed out; see Retry-After",
    ),
];
const WITH_AUTH: [(u16, &str); 2] = [
    (401, "No token, or an invalid or expired one"),
    (403, "The token lacks the role"),
];
const WITH_BODY: [(u16, &str); 4] = [
    (
        409,
        "Conflict with the current state, or the Idempotency-Key was used for another request",
    ),
    (413, "The body is larger than 64 KiB"),
    (415, "The body is not application/json"),
    (422, "Understood but not possible (e.g. an unknown venue)"),
];
const RATE_LIMITED: (u16, &str) = (429, "Rate limited; see Retry-After");

impl Modify for ProblemAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let mut answers: Vec<(u16, &str)> = ALWAYS.to_vec();
                if operation.security.is_some() {
                    answers.extend(WITH_AUTH);
                }
                if method != HttpMethod::Get {
                    answers.extend(WITH_BODY);
                }
                let open = path == "/v1/webhooks/payments"
                    || path.starts_with("/healthz")
                    || path.starts_with("/readyz")
                    || path.starts_with("/metrics")
                    || path.starts_with("/openapi");
                if !open {
                    answers.push(RATE_LIMITED);
                }
                for (status, description) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/problem+json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .into()
                        });
                }
            }
        }
    }
}

/// Links from what a create answers to the operations that use it, so clients (and
/// stateful fuzzers) can follow a hold to its booking, an event to its seat map.
struct Links;

/// (path, method, status, link name, target operation, parameter, value expression,
/// request body expression)
type LinkSpec = (
    &'static str,
    HttpMethod,
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    Option<&'static str>,
);

const LINKS: [LinkSpec; 10] = [
    (
        "/v1/holds",
        HttpMethod::Post,
        "201",
        "GetHold",
        "getHold",
        Some(("hold_id", "$response.body#/hold_id")),
        None,
    ),
    (
        "/v1/holds",
        HttpMethod::Post,
        "201",
        "ReleaseHold",
        "releaseHold",
        Some(("hold_id", "$response.body#/hold_id")),
        None,
    ),
    (
        "/v1/holds",
        HttpMethod::Post,
        "201",
        "BookHold",
        "createBooking",
        None,
        Some(r#"{"hold_id": "$response.body#/hold_id"}"#),
    ),
    (
        "/v1/bookings",
        HttpMethod::Post,
        "201",
        "GetBooking",
        "getBooking",
        Some(("booking_id", "$response.body#/booking_id")),
        None,
    ),
    (
        "/admin/v1/venues",
        HttpMethod::Post,
        "201",
        "GetVenue",
        "getVenue",
        Some(("venue_id", "$response.body#/venue_id")),
        None,
    ),
    (
        "/admin/v1/events",
        HttpMethod::Post,
        "201",
        "GetEvent",
        "getEvent",
        Some(("event_id", "$response.body#/event_id")),
        None,
    ),
    (
        "/admin/v1/events",
        HttpMethod::Post,
        "201",
        "GetSeats",
        "getSeats",
        Some(("event_id", "$response.body#/event_id")),
        None,
    ),
    (
        "/admin/v1/events",
        HttpMethod::Post,
        "201",
        "GetAdminEvent",
        "getAdminEvent",
        Some(("event_id", "$response.body#/event_id")),
        None,
    ),
    (
        "/admin/v1/events",
        HttpMethod::Post,
        "201",
        "PatchEvent",
        "patchEvent",
        Some(("event_id", "$response.body#/event_id")),
        None,
    ),
    (
        "/v1/bookings",
        HttpMethod::Post,
        "201",
        "GetBookedHold",
        "getHold",
        Some(("hold_id", "$response.body#/hold_id")),
        None,
    ),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, method, status, name, target, parameter, body) in LINKS {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                HttpMethod::Post => item.post.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else { continue };
            let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
                continue;
            };
            let mut link = LinkBuilder::new().operation_id(target);
            if let Some((name, value)) = parameter {
                link = link.parameter(name, value);
            }
            if let Some(body) = body {
                link = link.request_body(serde_json::from_str::<serde_json::Value>(body).ok());
            }
            response
                .links
                .insert(name.to_owned(), RefOr::T(link.build()));
        }
    }
}

/// `GET /openapi.json`: this document, rendered once per process.
#[utoipa::path(get, operation_id = "openapi", path = "/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn serve() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let text = DOC.get_or_init(|| document().to_string());
    let mut response = text.clone().into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The document as served: utoipa 5 writes Link objects' fields in snake case
/// (`operation_id`), which OpenAPI spells `operationId`; this fixes them.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for operation in item.values_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(|r| r.as_object_mut())
                else {
                    continue;
                };
                for response in responses.values_mut() {
                    let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut())
                    else {
                        continue;
                    };
                    for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                        for (from, to) in [
                            ("operation_id", "operationId"),
                            ("request_body", "requestBody"),
                            ("operation_ref", "operationRef"),
                        ] {
                            if let Some(value) = link.remove(from) {
                                link.insert(to.to_owned(), value);
                            }
                        }
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_problems() {
        let json = document();
        let paths = json["paths"].as_object().expect("paths");
        for path in [
            "/v1/events",
            "/v1/suggest",
            "/v1/events/{event_id}",
            "/v1/holds",
            "/v1/holds/{hold_id}",
            "/v1/bookings",
            "/v1/webhooks/payments",
            "/admin/v1/events/{event_id}",
            "/readyz",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let hold = &paths["/v1/holds"]["post"]["responses"];
        for status in ["201", "400", "401", "409", "413", "415", "429", "503"] {
            assert!(hold.get(status).is_some(), "POST /v1/holds lacks {status}");
        }
        assert!(paths["/healthz"]["get"]["responses"].get("429").is_none());
        assert!(paths["/v1/events/{event_id}"]["get"]["responses"]
            .get("401")
            .is_none());
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        // Operation ids are unique, and links point at real ones.
        let mut ids = std::collections::BTreeSet::new();
        for item in paths.values() {
            for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(id) = operation["operationId"].as_str() {
                    assert!(ids.insert(id.to_owned()), "operation id {id} twice");
                }
            }
        }
        for (.., target, _, _) in LINKS {
            assert!(ids.contains(target), "link to unknown operation {target}");
        }
        // The hold request's two forms: named seats, or the best ones.
        let body =
            &paths["/v1/holds"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let body = match body["$ref"].as_str() {
            Some(reference) => {
                &json["components"]["schemas"][reference.rsplit('/').next().unwrap_or_default()]
            }
            None => body,
        };
        let forms = body["oneOf"]
            .as_array()
            .expect("the hold request is oneOf its forms");
        let required: Vec<&serde_json::Value> = forms.iter().map(|f| &f["required"]).collect();
        assert_eq!(
            required,
            [
                &serde_json::json!(["event_id", "seat_ids"]),
                &serde_json::json!(["event_id", "quantity"])
            ],
            "{body}"
        );
        assert_eq!(forms[1]["properties"]["quantity"]["minimum"], 1, "{body}");
        assert_eq!(forms[1]["additionalProperties"], false, "{body}");
        assert_eq!(hold["201"]["links"]["GetHold"]["operationId"], "getHold");
        assert_eq!(
            hold["201"]["links"]["BookHold"]["requestBody"]["hold_id"],
            "$response.body#/hold_id"
        );
    }
}
