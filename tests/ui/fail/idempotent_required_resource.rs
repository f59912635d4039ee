use fhirop::prelude::*;

#[operation(name = "$summarize", idempotent = true, resource = "Patient")]
async fn summarize(#[op_param] patient: Resource) -> String {
    patient.resource_type().to_owned()
}

fn main() {}
