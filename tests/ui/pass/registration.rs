//! Registering operations: `operations![..]` with plain and module paths (including another
//! crate's operations), mixed with a provider, through `FhirServer::builder()...build()`.

use fhirop::prelude::*;

mod ops {
    use fhirop::prelude::*;

    /// A public operation in a module.
    #[operation(name = "$echo", idempotent = true)]
    pub async fn echo(#[op_param] text: String) -> String {
        text
    }
}

#[operation(name = "$noop")]
async fn noop() {}

struct Admin;

#[provider]
impl Admin {
    #[operation(name = "$reindex", resource = "Patient")]
    async fn reindex(&self) -> OperationOutcome {
        OperationOutcome::information("reindexed")
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let fhir = FhirServer::builder()
        .base_path("/fhir/R4")
        .operations(operations![noop, ops::echo, fhirop_server::operations::hello,])
        .operations(operations![])
        .provider(Admin)
        .build()
        .map_err(std::io::Error::other)?;
    let _ = fhir.scope();
    Ok(())
}
