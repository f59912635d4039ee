use clap::Parser;
use fhirop_server::auth::AdminTokenOrigin;
use fhirop_server::{Config, start};

// mimalloc (why: fhirop_server::allocator).
#[global_allocator]
static ALLOCATOR: fhirop_server::allocator::Allocator = fhirop_server::allocator::Allocator;

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
    let (token, origin) = &running.admin_token;
    match origin {
        AdminTokenOrigin::Configured => println!("admin token: from FHIROP_ADMIN_TOKEN"),
        AdminTokenOrigin::Generated(path) => {
            println!("admin token (shown this once; kept in {}): {token}", path.display());
            println!(
                "try: curl -H 'Authorization: Bearer {token}' '{}/$healthcheck'",
                running.base_url
            );
        }
        AdminTokenOrigin::Stored(path) => println!("admin token: in {}", path.display()),
    }
    running.server.await
}
