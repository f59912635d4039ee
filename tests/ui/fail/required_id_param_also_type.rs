use fhirop::prelude::*;

#[operation(name = "$everything", resource = "Patient", type_level = true, instance = true)]
async fn everything(#[id_param] id: IdParam) -> Bundle {
    let _ = id;
    Bundle::searchset()
}

fn main() {}
