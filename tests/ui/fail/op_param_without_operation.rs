use fhirop::prelude::*;

async fn echo(#[op_param] text: String) -> String {
    text
}

fn main() {}
