//! The simulated network seen through production's traits: a [`Connector`] that opens
//! turmoil streams for `raft::transport`, and a server for the node's router on a turmoil socket.
//! Everything above these two types is the code a real node runs.

use std::time::Duration;

use boxoffice_raft::transport::{BoxIo, ConnectFuture, Connector};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

/// Pause after a failed accept (a simulated host whose listener errs must not spin).
const ACCEPT_RETRY_MS: u64 = 10;

/// Opens turmoil TCP streams; partitions, holds and crashes act on them.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimConnector;

impl Connector for SimConnector {
    fn connect(&self, addr: &str) -> ConnectFuture {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr.as_str()).await?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// Serves `router` on a turmoil listener as `axum::serve` does (HTTP/1), except that each
/// connection runs on the host's `LocalSet` rather than the runtime: a crashed host then
/// drops its connections, and sends their FINs, in an order the seed decides (see
/// `boxoffice_raft::spawn`).
pub async fn serve(listener: turmoil::net::TcpListener, router: axum::Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "simulated accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "simulated connection ended");
            }
        });
    }
}
