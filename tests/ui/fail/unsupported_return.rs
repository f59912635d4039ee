use fhirop::prelude::*;

#[operation(name = "$elapsed")]
async fn elapsed() -> std::time::Duration {
    std::time::Duration::ZERO
}

fn main() {}
