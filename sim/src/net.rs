//! The simulated network seen through production's traits: a [`Connector`] that opens
//! turmoil streams for `raft::transport`, and an `axum::serve` listener on a turmoil socket.
//! Everything above these two types is the code a real node runs.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use boxoffice_raft::transport::{BoxIo, ConnectFuture, Connector};

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

/// A turmoil listener for `axum::serve`.
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "simulated accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
