//! The benchmark baseline: a bare axum handler that answers `GET /v1/events/{id}` with fixed
//! bytes read from a file (a real event view saved from a running node), no state, no
//! middleware. `cargo run --release -p boxoffice-api --example bare_view -- VIEW.json 127.0.0.1:8282`

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(listen)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_view VIEW.json HOST:PORT");
        std::process::exit(2);
    };
    let bytes = Bytes::from(std::fs::read(&path)?);
    let app = Router::new().route(
        "/v1/events/{event_id}",
        get(move || {
            let bytes = bytes.clone();
            async move { ([(CONTENT_TYPE, "application/json")], bytes) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("bare view on {listen}");
    axum::serve(listener, app).await
}
