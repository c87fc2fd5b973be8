//! Serves the Stripe stand-in (`tollgate::stripe_mock`) on `127.0.0.1:$PORT` (default: a free
//! port) and prints its base URL; for the client tests in scripts/test-clients.sh.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("http://{}", listener.local_addr()?);
    let mock = tollgate::stripe_mock::StripeMock::default();
    axum::serve(listener, mock.router()).await
}
