use fhirop::prelude::*;

#[operation(name = "$tag")]
async fn tag(#[op_param(max = "x")] tags: Vec<Code>) {
    let _ = tags;
}

fn main() {}
