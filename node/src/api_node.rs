//! `boxoffice api`: a stateless API node in front of a storage cluster, and the serving code
//! `boxoffice dev` shares with it (building the API state, the embedded payment sandbox,
//! binding the listener, graceful shutdown).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use boxoffice_api::admission::AdmissionKey;
use boxoffice_api::payments::sandbox::SandboxConfig;
use boxoffice_api::payments::{sandbox_routes, Sandbox, WebhookWorker};
use boxoffice_api::ratelimit::{
    PER_IP_BURST, PER_IP_PER_SECOND, PER_USER_BURST, PER_USER_PER_SECOND,
};
use boxoffice_api::{Api, ApiConfig, ApiDeps, Auth, Clock, RateLimitConfig, SystemClock};
use boxoffice_raft::transport::{TcpConnector, Transport};
use boxoffice_raft::{ClusterAuth, ClusterKey, InventoryClient};

use crate::cluster_key::KeyArgs;

/// How long shutdown waits for open connections before closing them.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Rate limits, shared by `api` and `dev`; the defaults are the API crate's named
/// constants (`boxoffice_api::ratelimit`).
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Sustained requests per second per client IP.
    #[arg(long, env = "BOXOFFICE_RATE_IP_PER_SECOND", default_value_t = PER_IP_PER_SECOND.get())]
    pub rate_ip_per_second: u32,
    #[arg(long, env = "BOXOFFICE_RATE_IP_BURST", default_value_t = PER_IP_BURST.get())]
    pub rate_ip_burst: u32,
    /// Sustained requests per second per user (bearer token).
    #[arg(long, env = "BOXOFFICE_RATE_USER_PER_SECOND", default_value_t = PER_USER_PER_SECOND.get())]
    pub rate_user_per_second: u32,
    #[arg(long, env = "BOXOFFICE_RATE_USER_BURST", default_value_t = PER_USER_BURST.get())]
    pub rate_user_burst: u32,
    /// Take client IPs from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "BOXOFFICE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let config = RateLimitConfig::default();
        LimitArgs {
            rate_ip_per_second: config.per_ip_per_second.get(),
            rate_ip_burst: config.per_ip_burst.get(),
            rate_user_per_second: config.per_user_per_second.get(),
            rate_user_burst: config.per_user_burst.get(),
            trust_forwarded_for: config.trust_forwarded_for,
        }
    }
}

impl LimitArgs {
    pub fn config(&self) -> anyhow::Result<RateLimitConfig> {
        let nz = |n: u32, name: &str| {
            std::num::NonZeroU32::new(n).with_context(|| format!("{name} must be at least 1"))
        };
        Ok(RateLimitConfig {
            per_ip_per_second: nz(self.rate_ip_per_second, "--rate-ip-per-second")?,
            per_ip_burst: nz(self.rate_ip_burst, "--rate-ip-burst")?,
            per_user_per_second: nz(self.rate_user_per_second, "--rate-user-per-second")?,
            per_user_burst: nz(self.rate_user_burst, "--rate-user-burst")?,
            trust_forwarded_for: self.trust_forwarded_for,
            ..RateLimitConfig::default()
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    /// Storage nodes to start from (`host:port,…`); the rest is learned from the cluster.
    #[arg(long, env = "BOXOFFICE_CLUSTER")]
    pub cluster: String,
    #[arg(long, env = "BOXOFFICE_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Base URL clients reach this node at (for checkout links and webhooks).
    #[arg(long, env = "BOXOFFICE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// HS256 secret (at least 32 bytes) that verifies bearer tokens.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Secret that verifies the payment processor's webhook signatures.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
    /// Secret (at least 32 bytes, the same on every API node) that signs and verifies
    /// waiting-room admission tokens.
    #[arg(long, env = "BOXOFFICE_ADMISSION_SECRET")]
    pub admission_secret: Option<String>,
    /// Serve `POST /v1/auth/token`, which issues tokens to anyone. Never in production.
    #[arg(long, env = "BOXOFFICE_DEV_TOKENS")]
    pub dev_tokens: bool,
    /// Keep the search index in this directory, so a restart resumes it from the catalog
    /// position it committed instead of rebuilding it; without it the index lives in RAM.
    #[arg(long, env = "BOXOFFICE_SEARCH_DIR")]
    pub search_dir: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Everything one API node needs to serve.
pub struct ApiSetup {
    pub listen: String,
    /// Empty: `http://` plus the bound address.
    pub public_url: String,
    pub jwt_secret: Vec<u8>,
    pub webhook_secret: Vec<u8>,
    pub admission_secret: Vec<u8>,
    pub dev_mode: bool,
    pub limits: RateLimitConfig,
    pub seeds: Vec<String>,
    /// The search index's directory (`None`: in RAM).
    pub search_dir: Option<PathBuf>,
    /// Signs the calls to storage nodes (`None`: `--insecure`).
    pub cluster_key: Option<ClusterKey>,
}

/// A started API node: its state (for dev's seeding), its bound listener, and what must
/// live as long as it serves.
pub struct ApiNode {
    pub api: Api,
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
    router: axum::Router,
    webhooks: WebhookWorker,
}

impl ApiNode {
    pub async fn start(setup: ApiSetup) -> anyhow::Result<ApiNode> {
        let listener = tokio::net::TcpListener::bind(&setup.listen)
            .await
            .with_context(|| format!("binding {}", setup.listen))?;
        let addr = listener.local_addr()?;
        let public_url = if setup.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            setup.public_url.clone()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let auth = Arc::new(
            Auth::new(&setup.jwt_secret, clock.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let cluster_auth = ClusterAuth::from_key(setup.cluster_key, clock.clone());
        let inventory = InventoryClient::new(
            Arc::new(Transport::new(TcpConnector, cluster_auth)),
            setup.seeds.clone(),
        );
        let sandbox_config = SandboxConfig::new(
            public_url.clone(),
            format!("{}/v1/webhooks/payments", public_url.trim_end_matches('/')),
            setup.webhook_secret.clone(),
        );
        let (sandbox, webhooks) =
            Sandbox::start(sandbox_config, clock.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let config = ApiConfig {
            dev_mode: setup.dev_mode,
            rate_limits: setup.limits,
            search_dir: setup.search_dir,
            ..ApiConfig::default()
        };
        let deps = ApiDeps {
            inventory,
            clock,
            auth,
            payments: Arc::new(sandbox.processor()),
            webhook_secret: setup.webhook_secret,
            admission: AdmissionKey::new(&setup.admission_secret).context("--admission-secret")?,
        };
        let api = Api::start(config, deps);
        let router = api.router_with(sandbox_routes(sandbox));
        Ok(ApiNode {
            api,
            listener,
            addr,
            router,
            webhooks,
        })
    }

    /// Serves until `shutdown` resolves, lets requests in flight finish (live streams, which
    /// never finish, are cut after [`SHUTDOWN_GRACE_MS`]), then stops the background tasks.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        // Small writes go out at once: a seat feed's events are a few hundred bytes each,
        // and with Nagle's algorithm the second of two small writes waits for the peer's
        // (possibly delayed) acknowledgement of the first. A whole response is one write
        // either way.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY on an accepted connection");
            }
        });
        let server = axum::serve(listener, service).with_graceful_shutdown(signal);
        let grace_over = async move {
            match stopping_rx.await {
                Ok(()) => {
                    tokio::time::sleep(std::time::Duration::from_millis(SHUTDOWN_GRACE_MS)).await
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            served = server => served?,
            _ = grace_over => tracing::info!("closing the connections still open (live seat maps)"),
        }
        self.webhooks.shutdown().await;
        self.api.shutdown().await;
        Ok(())
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let seeds: Vec<String> = args
        .cluster
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if seeds.is_empty() {
        bail!("--cluster needs at least one storage node address");
    }
    let cluster_key = args.key.resolve()?;
    if cluster_key.is_none() {
        tracing::warn!("--insecure: calls to storage nodes are not signed");
    }
    let (jwt_secret, webhook_secret) = match (args.jwt_secret, args.webhook_secret, args.dev_tokens)
    {
        (Some(j), Some(w), _) => (j.into_bytes(), w.into_bytes()),
        (j, w, true) => (
            j.map(String::into_bytes)
                .unwrap_or_else(|| boxoffice_api::ids::random_hex(32).into_bytes()),
            w.map(String::into_bytes)
                .unwrap_or_else(|| boxoffice_api::ids::random_hex(32).into_bytes()),
        ),
        _ => bail!("set --jwt-secret and --webhook-secret (or --dev-tokens for a throwaway node)"),
    };
    let admission_secret = match (args.admission_secret, args.dev_tokens) {
        (Some(secret), _) => secret.into_bytes(),
        (None, true) => boxoffice_api::ids::random_hex(32).into_bytes(),
        (None, false) => bail!("set --admission-secret (or --dev-tokens for a throwaway node)"),
    };
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let setup = ApiSetup {
        listen: args.listen,
        public_url,
        jwt_secret,
        webhook_secret,
        admission_secret,
        dev_mode: args.dev_tokens,
        limits: args.limits.config()?,
        seeds,
        search_dir: args.search_dir,
        cluster_key,
    };
    let node = ApiNode::start(setup).await?;
    println!("ready api={}", node.addr);
    node.serve(shutdown_signal()).await
}

/// An API node serving in this process for the benchmarks (`bench holds --http`,
/// `bench flash-sale`): dev tokens, no rate limits (every simulated client comes from one
/// address, so a per-IP limit would measure itself), fresh secrets.
pub struct BenchApi {
    pub base: String,
    pub jwt_secret: Vec<u8>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BenchApi {
    pub async fn start(
        seeds: Vec<String>,
        cluster_key: Option<ClusterKey>,
    ) -> anyhow::Result<BenchApi> {
        let jwt_secret = boxoffice_api::ids::random_hex(32).into_bytes();
        let unlimited = std::num::NonZeroU32::MAX;
        let api = ApiNode::start(ApiSetup {
            listen: "127.0.0.1:0".into(),
            public_url: String::new(),
            jwt_secret: jwt_secret.clone(),
            webhook_secret: boxoffice_api::ids::random_hex(32).into_bytes(),
            admission_secret: boxoffice_api::ids::random_hex(32).into_bytes(),
            dev_mode: true,
            limits: RateLimitConfig {
                per_ip_per_second: unlimited,
                per_ip_burst: unlimited,
                per_user_per_second: unlimited,
                per_user_burst: unlimited,
                ..RateLimitConfig::default()
            },
            seeds,
            search_dir: None,
            cluster_key,
        })
        .await?;
        let base = format!("http://{}", api.addr);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api.serve(async move {
            let _ = stop_rx.await;
        }));
        Ok(BenchApi {
            base,
            jwt_secret,
            stop,
            server,
        })
    }

    /// Stops serving and waits for the server's tasks to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Seats per row and rows per section of [`bench_venue`].
const BENCH_SEATS_PER_ROW: u64 = 100;
const BENCH_ROWS_PER_SECTION: u64 = 50;

/// The `POST /admin/v1/venues` body of a benchmark venue of `seats` seats: sections of 50
/// rows of 100 seats, the front sections dearer.
pub fn bench_venue(name: &str, seats: u64) -> serde_json::Value {
    let per_section = BENCH_SEATS_PER_ROW * BENCH_ROWS_PER_SECTION;
    let sections: Vec<serde_json::Value> = (0..seats.div_ceil(per_section))
        .map(|s| {
            let in_section = (seats - s * per_section).min(per_section);
            let rows: Vec<serde_json::Value> = (0..in_section.div_ceil(BENCH_SEATS_PER_ROW))
                .map(|r| {
                    let n = (in_section - r * BENCH_SEATS_PER_ROW).min(BENCH_SEATS_PER_ROW);
                    serde_json::json!({"name": (r + 1).to_string(), "seats": n})
                })
                .collect();
            serde_json::json!({
                "name": format!("Section {}", s + 1),
                "price": {"amount": 20_000 - 1_000 * (s % 10), "currency": "USD"},
                "rows": rows,
            })
        })
        .collect();
    serde_json::json!({"name": name, "city": "Chicago", "country": "US",
                       "address": "1 Bench Way", "sections": sections})
}

/// The catalog's id of seat number `seat` (0-based) of a [`bench_venue`].
pub fn bench_seat_id(seat: u64) -> String {
    let per_section = BENCH_SEATS_PER_ROW * BENCH_ROWS_PER_SECTION;
    let (section, in_section) = (seat / per_section, seat % per_section);
    format!(
        "s{}-{}-{}",
        section + 1,
        in_section / BENCH_SEATS_PER_ROW + 1,
        in_section % BENCH_SEATS_PER_ROW + 1
    )
}
