//! `demo-upstream [ADDR]`: the small API the README's run command puts behind Envoy.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("demo-upstream: listening on {addr}");
    tollgate_e2e::serve_demo(listener).await
}
