use fhirop::prelude::*;

struct Admin;

impl Admin {
    #[operation(name = "$reindex")]
    async fn reindex(&self) {}
}

fn main() {}
