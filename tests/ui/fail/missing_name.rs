use fhirop::prelude::*;

#[operation(idempotent = true)]
async fn nameless() {}

fn main() {}
