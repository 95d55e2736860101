//! Node-to-node HTTP/1 over a swappable connector: bincode bodies, pooled connections,
//! a timeout on every call.
//!
//! Production connects with Tokio TCP; the simulator plugs in turmoil's streams (reqwest does
//! real DNS and cannot run there). Errors say whether the request certainly never left
//! ([`TransportError::Connect`]) or may have been delivered (everything else), which is what
//! decides whether a caller may retry a non-idempotent call. Every call carries the
//! cluster credential ([`crate::auth`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{ClusterAuth, CREDENTIAL_HEADER};

/// Idle connections kept per peer address.
pub const MAX_IDLE_CONNS_PER_PEER: usize = 32;
/// Largest response body accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A byte stream a connector hands out.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;

/// Opens a stream to `addr` (`host:port`).
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, addr: &str) -> ConnectFuture;
}

/// Real TCP (with `TCP_NODELAY`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, addr: &str) -> ConnectFuture {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made: the request was not sent.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The call did not finish in time: it may or may not have been processed.
    #[error("call to {addr}{path} timed out after {timeout:?}")]
    Timeout {
        addr: String,
        path: String,
        timeout: Duration,
    },
    /// The connection failed mid-call: it may or may not have been processed.
    #[error("call to {addr} failed: {reason}")]
    Broken { addr: String, reason: String },
    /// The peer answered with an error status.
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
}

impl TransportError {
    /// Whether the request certainly did not reach the peer.
    pub fn not_sent(&self) -> bool {
        matches!(self, TransportError::Connect { .. })
    }
}

/// What a fresh connection attempt to an address found ([`Transport::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Something accepted the connection.
    Listening,
    /// The connection was refused: no process listens at the address.
    Refused,
    /// Neither, in time (a partition, a lost packet, an overloaded peer).
    Unknown,
}

/// A pooled HTTP/1 client shared by every group on a node.
pub struct Transport {
    connector: Box<dyn Connector>,
    auth: ClusterAuth,
    /// A `BTreeMap`, not a `HashMap`: dropping the pool closes its connections in map order,
    /// and a simulation must see them close in the same order every time it runs a seed.
    idle: Mutex<BTreeMap<String, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Transport {
    /// A transport that signs every call with `auth`.
    pub fn new(connector: impl Connector, auth: ClusterAuth) -> Transport {
        Transport {
            connector: Box::new(connector),
            auth,
            idle: Mutex::new(BTreeMap::new()),
        }
    }

    fn take_idle(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(addr)?;
        while let Some(conn) = conns.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, conn: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(addr.to_owned()).or_default();
        if conns.len() < MAX_IDLE_CONNS_PER_PEER {
            conns.push(conn);
        }
    }

    async fn connect(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let connect_err = |source| TransportError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = self.connector.connect(addr).await.map_err(connect_err)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_err(io::Error::other(e)))?;
        // The connection task ends when the last sender drops or the peer closes.
        crate::spawn::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Opens (and drops) a fresh connection to `addr`: whether anything listens there.
    pub async fn probe(&self, addr: &str, timeout: Duration) -> Probe {
        match tokio::time::timeout(timeout, self.connector.connect(addr)).await {
            Ok(Ok(_stream)) => Probe::Listening,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Probe::Refused,
            Ok(Err(_)) | Err(_) => Probe::Unknown,
        }
    }

    /// POSTs `body` to `http://addr{path}` and returns the 2xx response body.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        self.call(Method::POST, addr, path, Bytes::from(body), timeout)
            .await
    }

    pub async fn get(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        self.call(Method::GET, addr, path, Bytes::new(), timeout)
            .await
    }

    async fn call(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let credential = self.auth.credential(method.as_str(), path, &body);
        let work = async {
            // A pooled connection the peer closed while idle fails before the request is
            // processed; try a fresh connection once in that case.
            for attempt in 0..2 {
                let reused = attempt == 0;
                let mut conn = match if reused { self.take_idle(addr) } else { None } {
                    Some(conn) => conn,
                    None => self.connect(addr).await?,
                };
                let broken = |e: hyper::Error| TransportError::Broken {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                };
                if let Err(e) = conn.ready().await {
                    if reused {
                        continue;
                    }
                    return Err(broken(e));
                }
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header(hyper::header::HOST, addr)
                    .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
                if let Some(credential) = &credential {
                    request = request.header(CREDENTIAL_HEADER, credential.as_str());
                }
                let request =
                    request
                        .body(Full::new(body.clone()))
                        .map_err(|e| TransportError::Broken {
                            addr: addr.to_owned(),
                            reason: e.to_string(),
                        })?;
                let response = match conn.send_request(request).await {
                    Ok(r) => r,
                    Err(e) if reused && (e.is_canceled() || e.is_closed()) => continue,
                    Err(e) => return Err(broken(e)),
                };
                let status = response.status();
                let bytes = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| TransportError::Broken {
                        addr: addr.to_owned(),
                        reason: e.to_string(),
                    })?
                    .to_bytes();
                self.put_idle(addr, conn);
                if status != StatusCode::OK {
                    let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                    return Err(TransportError::Status {
                        addr: addr.to_owned(),
                        status: status.as_u16(),
                        body,
                    });
                }
                return Ok(bytes);
            }
            Err(TransportError::Broken {
                addr: addr.to_owned(),
                reason: "connection closed".into(),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                addr: addr.to_owned(),
                path: path.to_owned(),
                timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_tells_a_listener_from_a_closed_port() {
        let transport = Transport::new(TcpConnector, ClusterAuth::insecure());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let timeout = Duration::from_secs(2);
        assert_eq!(transport.probe(&addr, timeout).await, Probe::Listening);
        drop(listener);
        assert_eq!(
            transport.probe(&addr, timeout).await,
            Probe::Refused,
            "nothing listens on {addr} any more"
        );
    }
}
