use fhirop::prelude::*;

#[operation(name = "$ping", idempotnet = true)]
async fn ping() {}

fn main() {}
