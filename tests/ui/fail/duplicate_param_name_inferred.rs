use fhirop::prelude::*;

#[operation(name = "$lookup", resource = "CodeSystem")]
async fn lookup(#[op_param(name = "system")] code: Code, #[op_param] system: Option<Uri>) -> String {
    let _ = system;
    code.to_string()
}

fn main() {}
