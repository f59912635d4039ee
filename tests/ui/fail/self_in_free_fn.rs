use fhirop::prelude::*;

#[operation(name = "$reindex")]
async fn reindex(&self) {}

fn main() {}
