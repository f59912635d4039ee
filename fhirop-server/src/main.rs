use clap::Parser;
use fhirop_server::{Config, start};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fhirop=info,fhirop_server=info,warn")),
        )
        .init();
    let running = start(&config).await?;
    println!("fhirop listening on {}", running.base_url);
    println!("try: curl {}/metadata", running.base_url);
    running.server.await
}
