//! REST test support: a `boxoffice dev` process on free loopback ports (rate limits
//! raised; the demo catalog only when asked for), and a small JSON client for its public
//! API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{binary, eventually, free_addr, free_ports};

/// A running `boxoffice dev` with its own data dir; killed on drop.
pub struct DevServer {
    pub base: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl DevServer {
    /// Starts `boxoffice dev` without the demo catalog and waits until `/readyz` answers 200.
    pub async fn start() -> DevServer {
        DevServer::launch(false).await
    }

    /// Starts `boxoffice dev` exactly as the README's quick start does, demo catalog
    /// included, and waits until it is seeded and `/readyz` answers 200.
    pub async fn start_with_demo() -> DevServer {
        DevServer::launch(true).await
    }

    async fn launch(demo: bool) -> DevServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("dev");
        let addr = free_addr();
        let raft_port = free_ports(3);
        let log = std::fs::File::create(tmp.path().join("dev.log")).expect("log file");
        let child = Command::new(binary())
            .arg("dev")
            .args(if demo { &[][..] } else { &["--no-demo"][..] })
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--raft-port", &raft_port.to_string(), "--listen", &addr])
            .args(NO_RATE_LIMITS)
            .env("BOXOFFICE_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning boxoffice dev");
        let server = DevServer {
            base: format!("http://{addr}"),
            data_dir,
            child: Some(child),
            _tmp: tmp,
        };
        // Seeding the demo takes about a minute in a debug build on a busy machine.
        let patience = Duration::from_secs(if demo { 300 } else { 60 });
        if !wait_ready(&server.base, patience).await {
            let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
            panic!(
                "boxoffice dev did not become ready; log:\n{}",
                &log[log.len().saturating_sub(4000)..]
            );
        }
        server
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("dev.log")
    }

    /// The webhook secret dev generated (to sign events as the processor would).
    pub fn webhook_secret(&self) -> Vec<u8> {
        self.dev_secret("webhook_secret")
    }

    /// The admission secret dev generated (to sign tokens as an API node would).
    pub fn admission_secret(&self) -> Vec<u8> {
        self.dev_secret("admission_secret")
    }

    fn dev_secret(&self, name: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(self.data_dir.join("dev.json")).expect("dev.json");
        let file: Value = serde_json::from_str(&text).expect("dev.json parses");
        file[name].as_str().expect(name).as_bytes().to_vec()
    }

    pub fn client(&self) -> Rest {
        Rest {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// The cluster key dev generated and keeps in its data dir.
    pub fn cluster_key(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("cluster.key"))
            .expect("dev keeps its cluster key in cluster.key")
            .trim()
            .to_owned()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `boxoffice api` (a bare API node in front of a cluster); killed on drop.
pub struct ApiProc {
    pub base: String,
    child: Option<Child>,
}

/// The secrets every test API node shares, as a fleet behind one load balancer would.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-of-at-least-thirty-two-bytes";
pub const TEST_WEBHOOK_SECRET: &str = "test-webhook-secret";
/// Every API node of a test signs admission tokens with this, so any of them verifies them.
pub const TEST_ADMISSION_SECRET: &str = "test-admission-secret-of-at-least-32-bytes";

/// Rate limits far above anything a test sends, as `boxoffice dev`/`api` flags.
pub const NO_RATE_LIMITS: [&str; 8] = [
    "--rate-ip-per-second",
    "100000",
    "--rate-ip-burst",
    "100000",
    "--rate-user-per-second",
    "100000",
    "--rate-user-burst",
    "100000",
];

impl ApiProc {
    /// Starts an API node against `cluster` (`host:port,…`) logging to `log`, and waits
    /// until it is ready.
    pub async fn start(cluster: &str, log: &Path) -> ApiProc {
        ApiProc::start_with(cluster, log, &[]).await
    }

    /// [`ApiProc::start`] with `extra` flags (e.g. `--search-dir`); the log is appended to.
    pub async fn start_with(cluster: &str, log: &Path, extra: &[&str]) -> ApiProc {
        let addr = free_addr();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(binary())
            .args([
                "api",
                "--cluster",
                cluster,
                "--listen",
                &addr,
                "--dev-tokens",
                "--jwt-secret",
                TEST_JWT_SECRET,
                "--webhook-secret",
                TEST_WEBHOOK_SECRET,
                "--admission-secret",
                TEST_ADMISSION_SECRET,
            ])
            .args(NO_RATE_LIMITS)
            .args(extra)
            .env("BOXOFFICE_LOG", "info,openraft=warn")
            .env("BOXOFFICE_CLUSTER_KEY", crate::TEST_CLUSTER_KEY)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawning boxoffice api");
        let node = ApiProc {
            base: format!("http://{addr}"),
            child: Some(child),
        };
        let ready = wait_ready(&node.base, Duration::from_secs(60)).await;
        assert!(
            ready,
            "boxoffice api did not become ready: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        node
    }

    pub fn client(&self) -> Rest {
        Rest {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ApiProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An answer: status, headers and the body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Asserts an RFC 9457 problem with `status` and type slug `slug`.
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status, "{}", self.text);
        assert_eq!(
            self.body["type"],
            format!("https://boxoffice.dev/problems/{slug}"),
            "{}",
            self.text
        );
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.text
        );
    }

    pub fn str(&self, pointer: &str) -> String {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// A client of the public API, optionally with a bearer token.
#[derive(Clone)]
pub struct Rest {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Rest {
    /// A client holding a dev token for `user` with `role`.
    pub async fn as_user(&self, user: &str, role: &str) -> Rest {
        let answer = self
            .call(
                Method::POST,
                "/v1/auth/token",
                Some(json!({"user": user, "role": role})),
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        Rest {
            token: Some(answer.str("/token")),
            ..self.clone()
        }
    }

    /// Sends a request with an optional JSON body and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        Self::finish(request).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::finish(request).await
    }

    /// Like [`Self::raw`], but `None` when the connection broke before an answer was read
    /// (a server may answer 413 early and close while a large body is still being sent).
    /// Sent on a connection of its own: one the server closes after refusing a body must not
    /// go back to the shared pool, where the next request would race the close.
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Option<Answer> {
        let own = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .ok()?;
        let mut request = own
            .request(method, format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.ok()?;
        Some(Self::read(response).await)
    }

    async fn finish(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request sent");
        Self::read(response).await
    }

    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    /// POST with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[("idempotency-key", key)])
            .await
    }

    /// Creates a one-section venue of `rows` × `seats_per_row` seats at `price` minor USD.
    pub async fn venue(&self, rows: u32, seats_per_row: u32, price: u64) -> String {
        let rows: Vec<Value> = (1..=rows)
            .map(|r| json!({"name": r.to_string(), "seats": seats_per_row}))
            .collect();
        let body = json!({"name": "Test Hall", "city": "Chicago", "country": "US", "address": "1 Main St",
                          "sections": [{"name": "Floor", "price": {"amount": price, "currency": "USD"}, "rows": rows}]});
        let answer = self
            .call(Method::POST, "/admin/v1/venues", Some(body), &[])
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.str("/venue_id")
    }

    /// Creates an event at `venue_id` starting in 30 days, with `hold_ttl_seconds`.
    pub async fn event(&self, venue_id: &str, name: &str, hold_ttl_seconds: u64) -> String {
        let starts_at_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 30 * 86_400;
        let body = json!({"name": name, "category": "concert", "venue_id": venue_id, "performer_ids": [],
                          "starts_at": rfc3339(starts_at_secs), "hold_ttl_seconds": hold_ttl_seconds});
        let answer = self
            .call(Method::POST, "/admin/v1/events", Some(body), &[])
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.str("/event_id")
    }

    /// Holds `seat_ids` under a fresh key; returns the answer.
    pub async fn hold(&self, event_id: &str, seat_ids: &[&str]) -> Answer {
        let key = format!("hold-{}", unique());
        self.post_keyed(
            "/v1/holds",
            &key,
            json!({"event_id": event_id, "seat_ids": seat_ids}),
        )
        .await
    }

    /// Books a hold under a fresh key (asserting `201 pending_payment`); returns the answer.
    pub async fn book(&self, hold_id: &str) -> Answer {
        let booking = self
            .post_keyed(
                "/v1/bookings",
                &format!("book-{}", unique()),
                json!({"hold_id": hold_id}),
            )
            .await;
        assert_eq!(booking.status, StatusCode::CREATED, "{}", booking.text);
        assert_eq!(booking.body["status"], "pending_payment");
        booking
    }

    /// Pays a payment intent with `card` at the sandbox (asserting 200).
    pub async fn pay(&self, intent_id: &str, card: &str) -> Answer {
        let paid = self
            .call(
                Method::POST,
                &format!("/sandbox/v1/payment_intents/{intent_id}/confirm"),
                Some(json!({"card_number": card})),
                &[],
            )
            .await;
        assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
        paid
    }

    /// The status of one seat in the seat map.
    pub async fn seat_status(&self, event_id: &str, seat_id: &str) -> String {
        let map = self.get(&format!("/v1/events/{event_id}/seats")).await;
        map.body["seats"]
            .as_array()
            .and_then(|seats| seats.iter().find(|s| s["id"] == seat_id))
            .and_then(|s| s["status"].as_str())
            .unwrap_or("missing")
            .to_owned()
    }
}

/// Whether `base`'s `/readyz` answers 200 within `patience`.
async fn wait_ready(base: &str, patience: Duration) -> bool {
    let client = reqwest::Client::new();
    let url = format!("{base}/readyz");
    eventually(patience, || {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == StatusCode::OK)
                .map(|_| ())
        }
    })
    .await
    .is_some()
}

/// A process-unique string for idempotency keys.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).expect("a time the tests use");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("a time the tests use")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time RFC 3339 can write")
}

/// `Boxoffice-Signature` for `body` at `timestamp_secs` under `secret`.
pub fn sign(secret: &[u8], timestamp_secs: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("hmac takes any key");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
