use fhirop::prelude::*;

#[operation(name = "$touch", instance = true)]
async fn touch(#[id_param] id: IdParam) {
    let _ = id;
}

fn main() {}
