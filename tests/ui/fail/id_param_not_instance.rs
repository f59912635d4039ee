use fhirop::prelude::*;

#[operation(name = "$count", resource = "Patient", type_level = true)]
async fn count(#[id_param] id: IdParam) -> u32 {
    let _ = id;
    0
}

fn main() {}
