use fhirop::prelude::*;

#[operation(name = "$bad code")]
async fn bad() {}

fn main() {}
