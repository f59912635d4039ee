use fhirop::prelude::*;

#[operation(name = "$echo")]
async fn echo<T: Into<String>>(#[op_param] text: String) -> String {
    text
}

fn main() {}
