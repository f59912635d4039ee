//! Embeds fhirop in your own actix-web application: a provider of your own, mounted next to
//! routes that have nothing to do with FHIR.
//!
//! ```sh
//! cargo run --example embed
//! curl 'http://127.0.0.1:8081/fhir/Observation/$convert-temperature?value=37.0&unit=Cel'
//! curl 'http://127.0.0.1:8081/fhir/metadata'
//! curl 'http://127.0.0.1:8081/status'
//! ```

use fhirop::actix_web::{App, HttpResponse, HttpServer, web};
use fhirop::prelude::*;

/// Unit conversions for vital signs. A provider holds whatever state its operations share
/// (configuration, clients, pools); the server shares one instance among all requests.
struct VitalsProvider {
    /// The UCUM system URI put on every returned Quantity.
    ucum: &'static str,
}

#[provider]
impl VitalsProvider {
    /// Converts a body temperature between degrees Celsius and Fahrenheit.
    #[operation(name = "$convert-temperature", idempotent = true, resource = "Observation")]
    async fn convert_temperature(
        &self,
        /// The temperature.
        #[op_param]
        value: Decimal,
        /// Its unit: `Cel` or `[degF]` (UCUM).
        #[op_param]
        unit: Code,
    ) -> Result<Quantity, OperationError> {
        let (converted, target) = match unit.as_str() {
            "Cel" => (value.to_f64() * 9.0 / 5.0 + 32.0, "[degF]"),
            "[degF]" => ((value.to_f64() - 32.0) * 5.0 / 9.0, "Cel"),
            other => {
                return Err(OperationError::bad_value(
                    "unit",
                    format!("unit '{other}' is not Cel or [degF]"),
                ));
            }
        };
        Ok(Quantity {
            value: Decimal::parse(format!("{converted:.1}")).ok(),
            system: Uri::parse(self.ucum).ok(),
            code: Code::parse(target).ok(),
            unit: Some(target.to_owned()),
            ..Quantity::default()
        })
    }
}

#[fhirop::actix_web::main]
async fn main() -> std::io::Result<()> {
    let fhir = FhirServer::builder()
        .base_path("/fhir")
        .provider(VitalsProvider {
            ucum: "http://unitsofmeasure.org",
        })
        .build()
        .map_err(std::io::Error::other)?;
    println!("listening on http://127.0.0.1:8081 (FHIR under /fhir)");
    HttpServer::new(move || {
        App::new()
            .route("/status", web::get().to(|| async { HttpResponse::Ok().body("up") }))
            .service(fhir.scope())
    })
    .bind("127.0.0.1:8081")?
    .run()
    .await
}
