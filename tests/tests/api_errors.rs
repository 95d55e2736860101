//! A table of malformed and refused requests against a real `boxoffice dev`: each gets its
//! proper 4xx as `application/problem+json`, never a 5xx.

use boxoffice_tests::rest::{DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Who sends a request in the table.
#[derive(Clone, Copy)]
enum As {
    Nobody,
    User,
    Admin,
    BadToken,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    what: &'static str,
    who: As,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Body,
    status: u16,
    slug: &'static str,
    /// The `field` the problem must name, if any.
    field: Option<&'static str>,
}

fn case(
    what: &'static str,
    who: As,
    method: Method,
    path: &str,
    body: Body,
    status: u16,
    slug: &'static str,
) -> Case {
    Case {
        what,
        who,
        method,
        path: path.to_owned(),
        headers: vec![("idempotency-key", format!("key-{what}"))],
        body,
        status,
        slug,
        field: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_right_problem() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;
    let user = anon.as_user("mallory", "user").await;
    let bad = Rest {
        token: Some("eyJhbGciOiJIUzI1NiJ9.e30.forged".into()),
        ..anon.clone()
    };
    let venue = admin.venue(1, 5, 1_000).await;
    let event = admin.event(&venue, "Errors", 600).await;
    let held = user.hold(&event, &["s1-1-1"]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let hold_id = held.str("/hold_id");

    let hold_body = json!({"event_id": event, "seat_ids": ["s1-1-2"]});
    let mut cases = vec![
        case(
            "no token",
            As::Nobody,
            Method::POST,
            "/v1/holds",
            Body::Json(hold_body.clone()),
            401,
            "unauthorized",
        ),
        case(
            "forged token",
            As::BadToken,
            Method::POST,
            "/v1/holds",
            Body::Json(hold_body.clone()),
            401,
            "unauthorized",
        ),
        case(
            "user on admin api",
            As::User,
            Method::POST,
            "/admin/v1/performers",
            Body::Json(json!({"name": "x"})),
            403,
            "forbidden",
        ),
        case(
            "truncated json",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Raw("application/json", b"{\"event_id\": ".to_vec()),
            400,
            "malformed-json",
        ),
        case(
            "not json",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Raw("application/json", b"seats please".to_vec()),
            400,
            "malformed-json",
        ),
        case(
            "unknown field",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Json(json!({"event_id": event, "seat_ids": ["s1-1-2"], "price": 0})),
            400,
            "invalid-request",
        ),
        Case {
            field: Some("seat_ids"),
            ..case(
                "wrong type",
                As::User,
                Method::POST,
                "/v1/holds",
                Body::Json(json!({"event_id": event, "seat_ids": "s1-1-2"})),
                400,
                "invalid-request",
            )
        },
        case(
            "missing field",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Json(json!({"event_id": event})),
            400,
            "invalid-request",
        ),
        Case {
            field: Some("seat_ids"),
            ..case(
                "no seats",
                As::User,
                Method::POST,
                "/v1/holds",
                Body::Json(json!({"event_id": event, "seat_ids": []})),
                400,
                "invalid-request",
            )
        },
        Case {
            field: Some("seat_ids"),
            ..case(
                "unknown seat",
                As::User,
                Method::POST,
                "/v1/holds",
                Body::Json(json!({"event_id": event, "seat_ids": ["s9-9-9"]})),
                400,
                "invalid-request",
            )
        },
        Case {
            field: Some("seat_ids"),
            ..case(
                "seat twice",
                As::User,
                Method::POST,
                "/v1/holds",
                Body::Json(json!({"event_id": event, "seat_ids": ["s1-1-3", "s1-1-3"]})),
                400,
                "invalid-request",
            )
        },
        case(
            "text body",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Raw("text/plain", b"{}".to_vec()),
            415,
            "unsupported-media-type",
        ),
        case(
            "oversized body",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Raw("application/json", vec![b' '; 70 * 1024]),
            413,
            "payload-too-large",
        ),
        case(
            "unknown event",
            As::Nobody,
            Method::GET,
            "/v1/events/ev_nope",
            Body::None,
            404,
            "not-found",
        ),
        case(
            "unknown event seats",
            As::Nobody,
            Method::GET,
            "/v1/events/ev_nope/seats",
            Body::None,
            404,
            "not-found",
        ),
        case(
            "hold on unknown event",
            As::User,
            Method::POST,
            "/v1/holds",
            Body::Json(json!({"event_id": "ev_nope", "seat_ids": ["a"]})),
            404,
            "not-found",
        ),
        case(
            "garbage hold id",
            As::User,
            Method::GET,
            "/v1/holds/../../etc",
            Body::None,
            404,
            "not-found",
        ),
        case(
            "unknown hold",
            As::User,
            Method::GET,
            &format!("/v1/holds/ho_0123456789abcdef.{event}"),
            Body::None,
            404,
            "not-found",
        ),
        case(
            "someone else's hold",
            As::Admin,
            Method::DELETE,
            &format!("/v1/holds/{hold_id}"),
            Body::None,
            409,
            "conflict",
        ),
        case(
            "unknown booking",
            As::User,
            Method::GET,
            "/v1/bookings/bk_0123456789abcdef.ev_nope",
            Body::None,
            404,
            "not-found",
        ),
        case(
            "booking an unknown hold",
            As::User,
            Method::POST,
            "/v1/bookings",
            Body::Json(json!({"hold_id": "nope"})),
            404,
            "not-found",
        ),
        case(
            "unknown route",
            As::Nobody,
            Method::GET,
            "/v2/everything",
            Body::None,
            404,
            "not-found",
        ),
        case(
            "wrong method",
            As::Nobody,
            Method::DELETE,
            &format!("/v1/events/{event}"),
            Body::None,
            405,
            "method-not-allowed",
        ),
        Case {
            field: Some("country"),
            ..case(
                "bad venue",
                As::Admin,
                Method::POST,
                "/admin/v1/venues",
                Body::Json(json!({"name": "x", "city": "y", "country": "USA", "sections": []})),
                400,
                "invalid-request",
            )
        },
        Case {
            field: Some("venue_id"),
            ..case(
                "event at unknown venue",
                As::Admin,
                Method::POST,
                "/admin/v1/events",
                Body::Json(
                    json!({"name": "x", "category": "concert", "venue_id": "ve_nope", "starts_at": "2030-01-01T00:00:00Z"}),
                ),
                422,
                "unprocessable",
            )
        },
        Case {
            field: Some("starts_at"),
            ..case(
                "bad date",
                As::Admin,
                Method::POST,
                "/admin/v1/events",
                Body::Json(
                    json!({"name": "x", "category": "concert", "venue_id": venue, "starts_at": "next friday"}),
                ),
                400,
                "invalid-request",
            )
        },
        Case {
            field: Some("hold_ttl_seconds"),
            ..case(
                "ttl out of bounds",
                As::Admin,
                Method::PATCH,
                &format!("/admin/v1/events/{event}"),
                Body::Json(json!({"hold_ttl_seconds": 0})),
                400,
                "invalid-request",
            )
        },
        case(
            "unsigned webhook",
            As::Nobody,
            Method::POST,
            "/v1/webhooks/payments",
            Body::Json(json!({"id": "evt_1"})),
            400,
            "invalid-request",
        ),
        case(
            "dev token without user",
            As::Nobody,
            Method::POST,
            "/v1/auth/token",
            Body::Json(json!({"role": "admin"})),
            400,
            "invalid-request",
        ),
    ];
    let mut no_key = case(
        "no idempotency key",
        As::User,
        Method::POST,
        "/v1/holds",
        Body::Json(hold_body.clone()),
        400,
        "invalid-request",
    );
    no_key.headers.clear();
    no_key.field = Some("Idempotency-Key");
    cases.push(no_key);

    for case in &cases {
        let client = match case.who {
            As::Nobody => &anon,
            As::User => &user,
            As::Admin => &admin,
            As::BadToken => &bad,
        };
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = match &case.body {
            Body::None => {
                client
                    .call(case.method.clone(), &case.path, None, &headers)
                    .await
            }
            Body::Json(value) => {
                client
                    .call(
                        case.method.clone(),
                        &case.path,
                        Some(value.clone()),
                        &headers,
                    )
                    .await
            }
            Body::Raw(content_type, bytes) => client
                .try_raw(
                    case.method.clone(),
                    &case.path,
                    content_type,
                    bytes.clone(),
                    &headers,
                )
                .await
                .unwrap_or_else(|| panic!("{}: the request could not be sent", case.what)),
        };
        assert_eq!(
            answer.status.as_u16(),
            case.status,
            "{}: {}",
            case.what,
            answer.text
        );
        answer.assert_problem(case.status, case.slug);
        if let Some(field) = case.field {
            assert_eq!(
                answer.body["field"], field,
                "{}: {}",
                case.what, answer.text
            );
        }
    }

    // The same idempotency key with a different body is a conflict; with the same body it
    // replays the first answer.
    let first = user
        .post_keyed(
            "/v1/holds",
            "reused",
            json!({"event_id": event, "seat_ids": ["s1-1-4"]}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let replay = user
        .post_keyed(
            "/v1/holds",
            "reused",
            json!({"event_id": event, "seat_ids": ["s1-1-4"]}),
        )
        .await;
    assert_eq!(
        (replay.status, replay.str("/hold_id")),
        (StatusCode::CREATED, first.str("/hold_id"))
    );
    user.post_keyed(
        "/v1/holds",
        "reused",
        json!({"event_id": event, "seat_ids": ["s1-1-5"]}),
    )
    .await
    .assert_problem(409, "idempotency-key-reused");
    // Booking the same hold twice under two keys: the second is a conflict.
    let booked = user
        .post_keyed(
            "/v1/bookings",
            "b1",
            json!({"hold_id": first.str("/hold_id")}),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.text);
    user.post_keyed(
        "/v1/bookings",
        "b2",
        json!({"hold_id": first.str("/hold_id")}),
    )
    .await
    .assert_problem(409, "conflict");
    // Admin creates replay under their key, and refuse another body under it.
    let body = json!({"name": "Keyed performer"});
    let p1 = admin
        .call(
            Method::POST,
            "/admin/v1/performers",
            Some(body.clone()),
            &[("idempotency-key", "perf-1")],
        )
        .await;
    let p2 = admin
        .call(
            Method::POST,
            "/admin/v1/performers",
            Some(body),
            &[("idempotency-key", "perf-1")],
        )
        .await;
    assert_eq!(
        (p1.status, p2.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(p1.str("/performer_id"), p2.str("/performer_id"));
    admin
        .call(
            Method::POST,
            "/admin/v1/performers",
            Some(json!({"name": "Other"})),
            &[("idempotency-key", "perf-1")],
        )
        .await
        .assert_problem(409, "idempotency-key-reused");
}

/// Sends `head` and then all of `body` on one connection before reading anything, as
/// Python's urllib and many other clients do, and returns everything the server answered.
async fn write_everything_then_read(base: &str, head: String, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(body)
        .await
        .expect("the server stopped reading the body before it answered");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("the server reset the connection instead of answering");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A 1 MiB body, declared or chunked, is answered 413 problem+json even by a client that
/// writes all of it before reading: the server reads and discards the rest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_written_in_full_still_gets_its_413() {
    let server = DevServer::start().await;
    let user = server.client().as_user("bulky", "user").await;
    let token = user.token.clone().expect("token");
    let body = vec![b' '; 1024 * 1024];

    let declared = format!(
        "POST /v1/holds HTTP/1.1\r\nhost: boxoffice\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\nidempotency-key: bulky-1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = write_everything_then_read(&server.base, declared, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("problems/payload-too-large"), "{answer}");

    // Undeclared: chunked, so the limit is only found while reading.
    let mut chunked = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/holds HTTP/1.1\r\nhost: boxoffice\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\nidempotency-key: bulky-2\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let answer = write_everything_then_read(&server.base, head, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("problems/payload-too-large"), "{answer}");
}
