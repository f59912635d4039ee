use fhirop::prelude::*;

#[operation(name = "$translate", idempotent = true, resource = "ConceptMap")]
async fn translate(#[op_param] code: Code, #[op_param] coding: Coding) -> Option<Coding> {
    let _ = code;
    Some(coding)
}

fn main() {}
