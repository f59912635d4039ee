use fhirop::prelude::*;

#[operation(name = "$upload", manual_request)]
async fn upload(body: RawBody, #[op_param] name: String) {
    let _ = (body, name);
}

fn main() {}
