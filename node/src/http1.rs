//! A bare HTTP/1.1 keep-alive connection for the load generators of the benchmarks: one
//! request at a time, written with one `write`, its answer read up to its `Content-Length`.
//!
//! `bench holds --http` measures the API tier. Through reqwest the load generator took
//! 15–17 % of the process's CPU (a pool, a connection task and a channel between them per
//! request), which the tier's figure then paid for; a load generator should cost what
//! `wrk` costs. Only what those benches need: no chunked bodies, no redirects, no TLS.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most header lines an answer may have.
const MAX_HEADERS: usize = 32;
/// Largest answer (head and body) read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// One keep-alive connection to `addr`, opened on first use and again after any error.
pub struct Http1Conn {
    addr: String,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    answer: Vec<u8>,
}

impl Http1Conn {
    /// A connection to `addr` (`host:port`), not opened yet.
    pub fn new(addr: &str) -> Http1Conn {
        Http1Conn {
            addr: addr.to_owned(),
            stream: None,
            out: Vec::with_capacity(1024),
            answer: Vec::with_capacity(4096),
        }
    }

    /// Opens the connection now unless it is open.
    pub async fn open(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            self.stream = Some(connect(&self.addr).await?);
        }
        Ok(())
    }

    /// Sends `method path` with `headers` (`(name, value)`, Host and Content-Length added)
    /// and `body`; answers the status code once the whole answer is read. The connection
    /// is kept only once an answer was read whole and did not close it: after an error, or
    /// a request dropped midway (a timeout), the next request opens a new one.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<u16> {
        self.out.clear();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        self.out.extend_from_slice(head.as_bytes());
        for (name, value) in headers {
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                self.out.extend_from_slice(part);
            }
        }
        let length = format!("Content-Length: {}\r\n\r\n", body.len());
        self.out.extend_from_slice(length.as_bytes());
        self.out.extend_from_slice(body);
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => connect(&self.addr).await?,
        };
        stream.write_all(&self.out).await?;
        self.answer.clear();
        loop {
            if let Some((status, keep_alive)) = parse_answer(&self.answer)? {
                if keep_alive {
                    self.stream = Some(stream);
                }
                return Ok(status);
            }
            if self.answer.len() >= MAX_ANSWER_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "answer too long",
                ));
            }
            self.answer.reserve(4096);
            if stream.read_buf(&mut self.answer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

async fn connect(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `Some((status, keep_alive))` once `bytes` hold a whole answer; `None` while more is due.
fn parse_answer(bytes: &[u8]) -> io::Result<Option<(u16, bool)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let head_len = match answer.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("unreadable answer: {e}"))),
    };
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("transfer-encoding").is_some() {
        return Err(invalid("chunked answers are not read here"));
    }
    let body_len: usize = match header("content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| invalid("bad Content-Length"))?,
        None => return Err(invalid("an answer without Content-Length")),
    };
    if bytes.len() < head_len + body_len {
        return Ok(None);
    }
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
    let status = answer.code.ok_or_else(|| invalid("no status"))?;
    Ok(Some((status, !close)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_to_their_length_and_refused_when_unreadable() {
        let whole = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(whole).unwrap(), Some((201, true)));
        assert_eq!(parse_answer(&whole[..whole.len() - 1]).unwrap(), None);
        assert_eq!(parse_answer(b"HTTP/1.1 201 Cre").unwrap(), None);
        let closing =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_answer(closing).unwrap(), Some((503, false)));
        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn a_connection_carries_requests_and_reopens_after_a_close() {
        use axum::routing::post;
        let app = axum::Router::new().route(
            "/echo",
            post(|headers: axum::http::HeaderMap, body: String| async move {
                let key = headers["x-key"].to_str().unwrap().to_owned();
                (axum::http::StatusCode::CREATED, format!("{key}:{body}"))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut conn = Http1Conn::new(&addr);
        conn.open().await.unwrap();
        for i in 0..3 {
            let key = i.to_string();
            let status = conn
                .request("POST", "/echo", &[("x-key", &key)], b"body")
                .await
                .unwrap();
            assert_eq!(status, 201);
            assert_eq!(
                &conn.answer[conn.answer.len() - 6..],
                format!("{i}:body").as_bytes()
            );
        }
        // A connection that cannot carry the request fails it, and the next request opens
        // a new one.
        conn.stream = Some(TcpStream::connect(&addr).await.unwrap());
        conn.stream.as_mut().unwrap().shutdown().await.unwrap();
        assert!(conn.request("GET", "/missing", &[], b"").await.is_err());
        assert!(conn.stream.is_none());
        let status = conn.request("GET", "/missing", &[], b"").await.unwrap();
        assert_eq!(status, 404);
    }
}
