//! A #[provider] impl with several operations, an associated fn without `self` and a plain
//! helper method, registered with `FhirServer::builder().provider(..)`.

use fhirop::prelude::*;

struct Terminology {
    system: &'static str,
}

#[provider]
impl Terminology {
    /// A helper without #[operation]: left alone.
    fn system(&self) -> &'static str {
        self.system
    }

    /// Looks a code up.
    #[operation(name = "$lookup", idempotent = true, resource = "CodeSystem")]
    async fn lookup(
        &self,
        /// The code.
        #[op_param]
        code: Code,
        /// Its system.
        #[op_param(name = "system")]
        system: Option<Uri>,
    ) -> Result<Parameters, OperationError> {
        Ok(Parameters::new()
            .add("name", self.system())
            .add("code", code)
            .add("system", system))
    }

    /// Validates a code against a value set instance.
    #[operation(name = "$validate-code", resource = "ValueSet")]
    async fn validate_code(&self, #[id_param] id: IdParam, #[op_param] coding: Coding) -> bool {
        !id.id.is_empty() && coding.code.is_some()
    }

    /// An associated fn without `self` is an operation too.
    #[operation(name = "$version", idempotent = true)]
    async fn version() -> String {
        "1".to_owned()
    }
}

fn main() {
    let server = FhirServer::builder()
        .base_path("/fhir")
        .provider(Terminology {
            system: "http://loinc.org",
        })
        .build();
    let _ = server.map(|server| server.scope());
}
