use fhirop::prelude::*;

#[op_param]
async fn echo(text: String) -> String {
    text
}

fn main() {}
