use fhirop::prelude::*;

#[operation(name = "$wait")]
async fn wait(#[op_param] delay: std::time::Duration) {
    let _ = delay;
}

fn main() {}
