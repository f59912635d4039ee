use fhirop::prelude::*;

#[operation(name = "$lookup", resource = "CodeSystem")]
async fn lookup(#[op_param(name = "code")] code: Code, #[op_param(name = "code")] other: Option<String>) -> String {
    let _ = other;
    code.to_string()
}

fn main() {}
