//! `Bot/{id}/$deploy` and `Bot/$execute`, written with the fhirop macros.

use std::sync::Arc;

use fhirop::actix_web::HttpResponse;
use fhirop::prelude::*;
use fhirop::store::SearchQuery;
use serde_json::Value;

use super::Bots;
use crate::bots::operation::{event_base, query_object};

/// The Bot operations every project has.
#[derive(Debug, Clone)]
pub struct BotProvider {
    /// The Bot service.
    pub bots: Arc<Bots>,
}

fn body_json(body: &RawBody) -> Result<Value, OperationError> {
    if body.0.is_empty() {
        return Ok(Value::Null);
    }
    fhirop::format::parse_json_object(&body.0).or_else(|_| {
        serde_json::from_slice(&body.0)
            .map_err(|error| OperationError::invalid(format!("the body is not JSON: {error}")))
    })
}

#[provider]
impl BotProvider {
    /// Deploys JavaScript code to a Bot: Medplum's plain JSON `{"code": "...", "filename":
    /// "..."}` or a Parameters with a `code` parameter. The code is compiled before it is
    /// stored, so a syntax error leaves the deployed code live.
    #[operation(name = "$deploy", resource = "Bot", instance = true, manual_request = true)]
    async fn deploy(
        &self,
        #[id_param] id: IdParam,
        body: RawBody,
        context: OperationContext,
    ) -> Result<OperationOutcome, OperationError> {
        let json = body_json(&body)?;
        let code = if json.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
            json.get("parameter")
                .and_then(Value::as_array)
                .and_then(|parameters| {
                    parameters
                        .iter()
                        .find(|parameter| parameter.get("name").and_then(Value::as_str) == Some("code"))
                })
                .and_then(|parameter| parameter.get("valueString"))
                .and_then(Value::as_str)
        } else {
            json.get("code").and_then(Value::as_str)
        };
        let code = code
            .filter(|code| !code.trim().is_empty())
            .ok_or_else(|| OperationError::invalid("Missing code"))?;
        self.bots.deploy(&context.tenant(), &id.id, code.to_owned()).await?;
        Ok(OperationOutcome::information("All OK"))
    }

    /// Runs a Bot directly with the body (or the query as an object) as `event.input`, and
    /// returns its value as it is (Medplum's direct invocation). At the type level the Bot
    /// is found by `identifier=system|value`.
    #[operation(
        name = "$execute",
        resource = "Bot",
        instance = true,
        type_level = true,
        idempotent = true,
        manual_request = true,
        manual_response = true
    )]
    async fn execute(
        &self,
        #[id_param] id: Option<IdParam>,
        body: RawBody,
        context: OperationContext,
    ) -> Result<HttpResponse, OperationError> {
        let tenant = context.tenant();
        let bot = match &id {
            Some(id) => id.id.clone(),
            None => {
                let identifier = fhirop::format::query_pairs(context.uri().query().unwrap_or_default())
                    .find(|(name, _)| name == "identifier")
                    .map(|(_, value)| value.into_owned())
                    .ok_or_else(|| {
                        OperationError::invalid("Bot/$execute needs identifier=system|value, or call Bot/{id}/$execute")
                    })?;
                let store = context.store()?;
                let search = SearchQuery {
                    resource_type: "Bot".into(),
                    params: vec![("identifier".into(), identifier)],
                    count: 2,
                    strict: true,
                    ..SearchQuery::default()
                };
                let found = store.search(&tenant, &search).await?.resources;
                match found.as_slice() {
                    [bot] => bot.id.clone(),
                    [] => return Err(OperationError::not_found("no Bot has this identifier")),
                    _ => return Err(OperationError::invalid("several Bots have this identifier")),
                }
            }
        };
        let mut event = event_base(&context, &Default::default());
        let input = if context.method() == fhirop::actix_web::http::Method::GET {
            // What locates the Bot and what shapes the response are not the Bot's input.
            let mut query = query_object(&context);
            if let Value::Object(members) = &mut query {
                if id.is_none() {
                    members.shift_remove("identifier");
                }
                for global in fhirop::binding::GLOBAL_QUERY_PARAMETERS {
                    members.shift_remove(global);
                }
            }
            query
        } else {
            body_json(&body)?
        };
        event.set("input", &input);
        let requester = context.caller().map(|caller| caller.reference.into_owned());
        let result = self
            .bots
            .execute(
                &tenant,
                &bot,
                event,
                context.base_url(),
                requester,
                crate::access::Access::of(context.request()).into_owned(),
            )
            .await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json; charset=utf-8")
            .body(result.json))
    }
}
