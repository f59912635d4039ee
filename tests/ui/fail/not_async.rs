use fhirop::prelude::*;

#[operation(name = "$ping")]
fn ping() -> String {
    "pong".to_owned()
}

fn main() {}
