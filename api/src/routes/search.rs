//! Search: `GET /v1/events` (typo-tolerant text, filters, date range, cursor pages; with no
//! `q` it lists by date) and `GET /v1/suggest` (type-ahead performer and event names), both
//! answered from this node's index through the result cache (see [`crate::search`]).
//!
//! Parameters are read by hand rather than by a serde struct so that every bad one — an
//! unknown name, a repeat, a limit that is not `1..=max`, a date that is not RFC 3339 — is a
//! 400 whose `field` names it. The structs deriving `IntoParams` only document them.
//!
//! Over 600 lines, a third of them tests: every parameter is read by hand so that each bad
//! one is a 400 naming it, and those rules are tested here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use boxoffice_search::{
    EventHit, SearchQuery, SuggestionKind, DEFAULT_LIMIT, MAX_LIMIT, MAX_SUGGEST_LIMIT,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::catalog::Money;
use crate::clock::{parse_rfc3339_ms, rfc3339_from_ms};
use crate::problem::ApiError;
use crate::search::search_error;

/// Parameters `GET /v1/events` takes; any other is a 400.
pub const SEARCH_PARAMS: [&str; 8] = [
    "q",
    "city",
    "category",
    "performer",
    "from",
    "to",
    "limit",
    "cursor",
];
/// Parameters `GET /v1/suggest` takes.
pub const SUGGEST_PARAMS: [&str; 2] = ["q", "limit"];
/// Suggestions returned when the client names no limit.
pub const DEFAULT_SUGGEST_LIMIT: usize = 8;
/// Without `from`, results start at the current time rounded down to this step, so that the
/// default listing has one cache key per step rather than one per millisecond (an event that
/// started within the step may still show).
pub const DEFAULT_FROM_STEP_MS: u64 = 60_000;
/// Seconds a client waits while the index is still being built.
const INDEX_NOT_READY_RETRY_AFTER_SECS: u64 = 1;
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Query parameters of `GET /v1/events` as the OpenAPI document lists them;
/// [`search_query`] reads them one by one so that each bad one is a 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to find, typo-tolerant (one edit in words of 4–7 letters, two beyond), the last
    /// word also as a prefix. Matches performers and event names first, then category, venue,
    /// city, country, description. At most 256 characters and 8 words. Absent or blank: list
    /// by date.
    #[param(max_length = 256, example = "tayler swfit")]
    pub q: Option<String>,
    /// Exact city, case- and accent-insensitive.
    #[param(max_length = 128, example = "Chicago")]
    pub city: Option<String>,
    /// Exact category, case-insensitive.
    #[param(max_length = 128, example = "concert")]
    pub category: Option<String>,
    /// A performer id.
    #[param(max_length = 128)]
    pub performer: Option<String>,
    /// Earliest start time (inclusive), RFC 3339. Default: now (past events are hidden).
    #[param(value_type = Option<String>, format = DateTime, example = "2027-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// Latest start time (exclusive), RFC 3339; not before `from`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Page size, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page of the same query.
    #[param(max_length = 320)]
    pub cursor: Option<String>,
}

/// Query parameters of `GET /v1/suggest` as the OpenAPI document lists them; [`suggest`]
/// reads them one by one so that each bad one is a 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What the user typed so far; the last word is a prefix. At most 256 characters.
    #[param(max_length = 256, example = "tayl")]
    pub q: String,
    /// Most suggestions, 1..=20 (default 8).
    #[param(minimum = 1, maximum = 20)]
    pub limit: Option<u32>,
}

/// Where an event takes place, as a result card shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenueSummary {
    pub name: String,
    pub city: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerformerSummary {
    pub performer_id: String,
    pub name: String,
}

/// Cheapest and dearest seat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRange {
    pub min: Money,
    pub max: Money,
}

/// One search result: enough for a result card; `GET /v1/events/{event_id}` has the rest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSummary {
    #[schema(example = "ev_demo_00001")]
    pub event_id: String,
    pub name: String,
    pub category: String,
    /// RFC 3339 UTC.
    pub starts_at: String,
    pub venue: VenueSummary,
    pub performers: Vec<PerformerSummary>,
    pub price_range: PriceRange,
    /// Seats available when the index last saw this event's seats (refreshed about once a
    /// second; the event view has live counts).
    #[schema(minimum = 0)]
    pub available: u64,
    #[schema(minimum = 0)]
    pub total: u64,
    pub sold_out: bool,
    pub on_sale: bool,
    /// Relevance within this query (higher first); 0 without `q`.
    pub score: f32,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventList {
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// How many events match in all (as of this page).
    #[schema(minimum = 0)]
    pub total_estimate: u64,
}

/// One type-ahead entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestionOut {
    /// `performer` or `event`.
    #[schema(example = "performer")]
    pub kind: String,
    /// The name as the catalog spells it.
    pub text: String,
    /// For an event: the earliest best-matching event of that name.
    pub event_id: Option<String>,
    /// For a performer: usable as the `performer` filter of `GET /v1/events`.
    pub performer_id: Option<String>,
}

/// `GET /v1/suggest`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suggestions {
    pub suggestions: Vec<SuggestionOut>,
}

/// The query string as name → value; unknown or repeated names are a 400.
fn params(uri: &Uri, allowed: &[&'static str]) -> Result<BTreeMap<&'static str, String>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|rejection| {
        ApiError::InvalidRequest {
            detail: format!("invalid query string: {}", rejection.body_text()),
            field: None,
        }
    })?;
    let mut out = BTreeMap::new();
    for (name, value) in pairs {
        let Some(known) = allowed.iter().find(|a| **a == name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::invalid_field(
                shown,
                format!(
                    "unknown parameter; this endpoint takes {}",
                    allowed.join(", ")
                ),
            ));
        };
        if out.insert(*known, value).is_some() {
            return Err(ApiError::invalid_field(
                *known,
                format!("{known} is given more than once"),
            ));
        }
    }
    Ok(out)
}

fn limit(value: Option<&String>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let bad = || {
        ApiError::invalid_field(
            "limit",
            format!("limit must be an integer between 1 and {max}"),
        )
    };
    let n: i64 = value.trim().parse().map_err(|_| bad())?;
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(bad)
}

fn time(name: &'static str, value: Option<&String>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    parse_rfc3339_ms(value.trim())
        .and_then(|ms| i64::try_from(ms).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid_field(name, format!("{name} must be an RFC 3339 time such as 2027-06-01T19:00:00Z (years 1970 to 9999)")))
}

/// The search a query string asks for at `now_ms`. Errors the index would find (long `q`,
/// bad cursor, `from` after `to`) are left to it; both name the parameter.
pub fn search_query(uri: &Uri, now_ms: u64) -> Result<SearchQuery, ApiError> {
    let mut p = params(uri, &SEARCH_PARAMS)?;
    let limit = limit(p.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let from_ms = time("from", p.get("from"))?;
    let to_ms = time("to", p.get("to"))?;
    // Past events are hidden unless `from` says otherwise; with only an earlier `to` the
    // range is empty rather than backwards.
    let from_ms = from_ms.or_else(|| {
        let now = i64::try_from(now_ms - now_ms % DEFAULT_FROM_STEP_MS).unwrap_or(i64::MAX);
        Some(to_ms.map_or(now, |to| now.min(to)))
    });
    Ok(SearchQuery {
        q: p.remove("q"),
        city: p.remove("city"),
        category: p.remove("category"),
        performer: p.remove("performer"),
        from_ms,
        to_ms,
        limit,
        cursor: p.remove("cursor"),
    })
}

fn json(bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

fn index_not_ready() -> ApiError {
    ApiError::Unavailable {
        detail: "the search index of this node is still being built".into(),
        retry_after_secs: INDEX_NOT_READY_RETRY_AFTER_SECS,
    }
}

/// Hit and miss counters of the result cache, registered once.
fn result_cache_counters() -> &'static (metrics::Counter, metrics::Counter) {
    static COUNTERS: OnceLock<(metrics::Counter, metrics::Counter)> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        (
            metrics::counter!(crate::metrics::SEARCH_CACHE, "result" => "hit"),
            metrics::counter!(crate::metrics::SEARCH_CACHE, "result" => "miss"),
        )
    })
}

fn summary(hit: EventHit) -> EventSummary {
    let money = |amount: u64| Money {
        amount,
        currency: hit.currency.clone(),
    };
    EventSummary {
        starts_at: rfc3339_from_ms(u64::try_from(hit.starts_at_ms).unwrap_or(0)),
        venue: VenueSummary {
            name: hit.venue_name.clone(),
            city: hit.city.clone(),
            country: hit.country.clone(),
        },
        performers: hit
            .performer_ids
            .iter()
            .zip(&hit.performers)
            .map(|(id, name)| PerformerSummary {
                performer_id: id.clone(),
                name: name.clone(),
            })
            .collect(),
        price_range: PriceRange {
            min: money(hit.min_price_minor),
            max: money(hit.max_price_minor),
        },
        sold_out: hit.total > 0 && hit.available == 0,
        available: hit.available,
        total: hit.total,
        on_sale: hit.on_sale,
        score: if hit.score.is_finite() {
            hit.score
        } else {
            0.0
        },
        event_id: hit.event_id,
        name: hit.name,
        category: hit.category,
    }
}

/// Serves `key` from the result cache, or computes it on a blocking thread with `work` (given
/// the index) and caches it.
async fn cached_or<F>(state: &AppState, key: String, work: F) -> Result<Response, ApiError>
where
    F: FnOnce(&boxoffice_search::SearchIndex) -> Result<Bytes, ApiError> + Send + 'static,
{
    let (hits, misses) = result_cache_counters();
    if let Some(page) = state.search.cached(&key) {
        hits.increment(1);
        return Ok(json(page.bytes.clone()));
    }
    misses.increment(1);
    let index = state.search.index().ok_or_else(index_not_ready)?;
    let generation = state.search.generation();
    let bytes = tokio::task::spawn_blocking(move || work(&index))
        .await
        .map_err(|e| ApiError::Internal(format!("a search panicked: {e}")))??;
    state.search.remember(key, generation, bytes.clone());
    Ok(json(bytes))
}

/// Searches the catalog: typo-tolerant words (`q`), filters, a date range and cursor pages.
/// Without `q`, lists the matching events by start time. Past events are hidden unless
/// `from` is given.
#[utoipa::path(
    get, operation_id = "searchEvents", path = "/v1/events", tag = "events",
    params(SearchParams),
    responses((status = 200, description = "One page of matching events, best first (ties: earlier first)", body = EventList))
)]
pub async fn search(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let query = search_query(&uri, state.now_ms())?;
    let key = query.normalized_key();
    cached_or(&state, key, move |index| {
        let page = index.search(&query).map_err(search_error)?;
        let list = EventList {
            events: page.hits.into_iter().map(summary).collect(),
            next_cursor: page.next_cursor,
            total_estimate: page.total_estimate,
        };
        serde_json::to_vec(&list)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("rendering search results: {e}")))
    })
    .await
}

/// Type-ahead: performer and event names matching what was typed (the last word as a
/// prefix, typos tolerated as in search), best first.
#[utoipa::path(
    get, operation_id = "suggest", path = "/v1/suggest", tag = "events",
    params(SuggestParams),
    responses((status = 200, description = "Performer and event names, best first", body = Suggestions))
)]
pub async fn suggest(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let mut p = params(&uri, &SUGGEST_PARAMS)?;
    let limit = limit(p.get("limit"), DEFAULT_SUGGEST_LIMIT, MAX_SUGGEST_LIMIT)?;
    let q = p
        .remove("q")
        .ok_or_else(|| ApiError::invalid_field("q", "q is required"))?;
    // The same canonical words as a search key, under a prefix of its own.
    let key = format!(
        "suggest:{}",
        SearchQuery {
            q: Some(q.clone()),
            limit,
            ..SearchQuery::default()
        }
        .normalized_key()
    );
    cached_or(&state, key, move |index| {
        let found = index.suggest(&q, limit).map_err(search_error)?;
        let suggestions = found
            .into_iter()
            .map(|s| SuggestionOut {
                kind: match s.kind {
                    SuggestionKind::Performer => "performer".into(),
                    SuggestionKind::Event => "event".into(),
                },
                text: s.text,
                event_id: s.event_id,
                performer_id: s.performer_id,
            })
            .collect();
        serde_json::to_vec(&Suggestions { suggestions })
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("rendering suggestions: {e}")))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(query: &str) -> Uri {
        format!("/v1/events?{query}").parse().expect("uri")
    }

    fn field_of(result: Result<SearchQuery, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidRequest {
                field: Some(field), ..
            }) => field,
            other => panic!("expected a 400 naming a field, got {other:?}"),
        }
    }

    const NOW_MS: u64 = 1_800_000_123_456;

    #[test]
    fn parameters_become_a_query_with_past_events_hidden() {
        let query =
            search_query(&uri("q=tayler%20swfit&city=Chicago&limit=5"), NOW_MS).expect("valid");
        assert_eq!(query.q.as_deref(), Some("tayler swfit"));
        assert_eq!(query.city.as_deref(), Some("Chicago"));
        assert_eq!(query.limit, 5);
        // From the current minute on, so the default listing is cacheable.
        assert_eq!(query.from_ms, Some(1_800_000_120_000));
        assert_eq!(query.to_ms, None);
        let listing = search_query(&uri(""), NOW_MS).expect("valid");
        assert_eq!((listing.q, listing.limit), (None, DEFAULT_LIMIT));
        let explicit = search_query(
            &uri("from=2020-01-01T00:00:00Z&to=2021-01-01T00:00:00%2B02:00"),
            NOW_MS,
        )
        .expect("valid");
        assert_eq!(explicit.from_ms, Some(1_577_836_800_000));
        assert_eq!(explicit.to_ms, Some(1_609_452_000_000));
        // Only a past `to`: an empty range, not a backwards one.
        let past = search_query(&uri("to=2020-01-01T00:00:00Z"), NOW_MS).expect("valid");
        assert_eq!(past.from_ms, past.to_ms);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (query, field) in [
            ("limit=-1", "limit"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("limit=99999999999999999999999", "limit"),
            ("from=yesterday", "from"),
            ("to=2027-13-01T00:00:00Z", "to"),
            ("from=1969-12-31T23:59:59Z", "from"),
            ("sort=price", "sort"),
            ("q=a&q=b", "q"),
        ] {
            assert_eq!(
                field_of(search_query(&uri(query), NOW_MS)),
                field,
                "{query}"
            );
        }
    }

    mod through_the_router {
        use std::sync::Arc;

        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use boxoffice_raft::transport::{TcpConnector, Transport};
        use boxoffice_raft::{ClusterAuth, InventoryClient};
        use boxoffice_search::{EventDoc, SearchIndex};
        use http_body_util::BodyExt;
        use serde_json::Value;
        use tower::ServiceExt;

        use super::NOW_MS;
        use crate::payments::{Sandbox, SandboxConfig};
        use crate::{Api, ApiConfig, ApiDeps, Auth, Clock, ManualClock};

        /// An API node with no cluster to talk to (its feeds fail and retry; nothing leaves
        /// the process) and a search index the test writes itself.
        fn node() -> (Api, Arc<SearchIndex>) {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(NOW_MS));
            let auth = Arc::new(Auth::new(&[7u8; 32], clock.clone()).expect("auth"));
            let config = SandboxConfig::new(
                "http://127.0.0.1:9",
                "http://127.0.0.1:9/v1/webhooks/payments",
                b"secret".to_vec(),
            );
            let (sandbox, _worker) = Sandbox::start(config, clock.clone()).expect("sandbox");
            // No cluster to reach, so nothing to sign.
            let inventory = InventoryClient::new(
                Arc::new(Transport::new(TcpConnector, ClusterAuth::insecure())),
                Vec::new(),
            );
            let deps = ApiDeps {
                inventory,
                clock,
                auth,
                payments: Arc::new(sandbox.processor()),
                webhook_secret: b"secret".to_vec(),
                admission: crate::admission::AdmissionKey::new(&[1; 32]).expect("32 bytes"),
            };
            let api = Api::start(ApiConfig::default(), deps);
            let index = api
                .state()
                .search
                .install(Arc::new(SearchIndex::create_in_ram().expect("index")));
            (api, index)
        }

        async fn get(api: &Api, path: &str) -> (StatusCode, Value) {
            let response = api
                .router()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }

        fn doc(name: &str) -> EventDoc {
            EventDoc {
                event_id: "ev_1".into(),
                name: name.into(),
                category: "concert".into(),
                city: "Oslo".into(),
                starts_at_ms: NOW_MS as i64 + 86_400_000,
                currency: "NOK".into(),
                ..EventDoc::default()
            }
        }

        fn ids(body: &Value) -> Vec<&str> {
            body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["event_id"].as_str())
                .collect()
        }

        #[tokio::test]
        async fn bad_parameters_are_400_and_a_commit_invalidates_cached_pages() {
            let (api, index) = node();
            let search = api.state().search.clone();
            for (path, field) in [
                ("/v1/events?limit=-1", "limit"),
                ("/v1/events?from=soon", "from"),
                ("/v1/events?color=red", "color"),
                ("/v1/suggest?limit=3", "q"),
            ] {
                let (status, body) = get(&api, path).await;
                assert_eq!(
                    (status, body["field"].as_str()),
                    (StatusCode::BAD_REQUEST, Some(field)),
                    "{path}: {body}"
                );
                assert_eq!(
                    body["type"],
                    "https://boxoffice.dev/problems/invalid-request"
                );
            }
            // Nothing committed yet: the index is not ready, and says so.
            assert_eq!(
                get(&api, "/v1/events?q=aurora").await.0,
                StatusCode::SERVICE_UNAVAILABLE
            );

            index.upsert(&doc("Aurora Live")).expect("upsert");
            index.commit(1).expect("commit");
            search.committed(1);
            let (status, body) = get(&api, "/v1/events?q=auroa").await;
            assert_eq!(
                (status, ids(&body)),
                (StatusCode::OK, vec!["ev_1"]),
                "{body}"
            );
            let key = super::search_query(&"/v1/events?q=auroa".parse().expect("uri"), NOW_MS)
                .expect("query")
                .normalized_key();
            assert!(search.cached(&key).is_some(), "the page is cached");

            // A rename the index commits: the cached page is not served again.
            index.upsert(&doc("Sigrid Live")).expect("upsert");
            index.commit(2).expect("commit");
            assert_eq!(
                ids(&get(&api, "/v1/events?q=auroa").await.1),
                vec!["ev_1"],
                "until the node learns of the commit, the cache answers"
            );
            search.committed(2);
            assert!(search.cached(&key).is_none());
            assert_eq!(
                ids(&get(&api, "/v1/events?q=auroa").await.1),
                Vec::<&str>::new()
            );
            assert_eq!(ids(&get(&api, "/v1/events?q=sigrd").await.1), vec!["ev_1"]);
            let (status, body) = get(&api, "/v1/suggest?q=sig").await;
            assert_eq!(
                (status, body["suggestions"][0]["text"].as_str()),
                (StatusCode::OK, Some("Sigrid Live")),
                "{body}"
            );
            api.shutdown().await;
        }
    }

    #[test]
    fn the_cache_key_does_not_move_within_the_default_step() {
        let a = search_query(&uri("q=swift"), NOW_MS).expect("valid");
        let b = search_query(&uri("q=Swift"), NOW_MS + 1_000).expect("valid");
        assert_eq!(a.normalized_key(), b.normalized_key());
        let later = search_query(&uri("q=swift"), NOW_MS + DEFAULT_FROM_STEP_MS).expect("valid");
        assert_ne!(a.normalized_key(), later.normalized_key());
    }
}
