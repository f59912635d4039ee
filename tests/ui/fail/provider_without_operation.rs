use fhirop::prelude::*;

struct Helpers;

#[provider]
impl Helpers {
    async fn ping(&self) -> String {
        "pong".to_owned()
    }
}

fn main() {}
