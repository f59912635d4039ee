//! A Bot-backed operation: the framework has routed, checked the method and bound the input
//! against the stored OperationDefinition; this builds Medplum's `event`, runs the Bot and
//! shapes its value by the definition's OUT parameters.

use std::sync::Arc;

use actix_web::http::Method;
use fhirop::context::OperationContext;
use fhirop::definition::{Level, Max, ParamDefinition};
use fhirop::operation::{OperationCall, OperationHandler, handler_fn};
use fhirop::outcome::OperationError;
use fhirop::store::ReadResult;
use fhirop::types::primitives::primitive_json;
use fhirop::types::{BoundParams, ParamKind, ParamValue};
use serde_json::{Map, Value, json};

use super::Bots;
use super::event::BotEvent;
use super::output::bot_output;

/// The handler of an operation implemented by `Bot/{bot}`.
pub fn handler(bots: Arc<Bots>, bot: String) -> Arc<dyn OperationHandler> {
    handler_fn(move |call: OperationCall| {
        let (bots, bot) = (bots.clone(), bot.clone());
        async move { invoke(&bots, &bot, call).await }
    })
}

async fn invoke(
    bots: &Bots,
    bot: &str,
    call: OperationCall,
) -> Result<fhirop::output::OperationOutput, OperationError> {
    let OperationCall { context, params, body } = call;
    let tenant = context.tenant();
    let mut event = event_base(&context, &params);
    if context.method() == Method::GET {
        event.set("input", &query_object(&context));
    } else {
        event.set_body("input", body.as_deref().unwrap_or_default());
    }
    if context.level() == Level::Instance
        && let (Some(resource_type), Some(id)) = (context.resource_type(), context.id())
    {
        let store = context.store()?;
        let target = match context.version_id().map(str::parse::<u64>) {
            Some(Ok(version)) => store.vread(&tenant, resource_type, id, version).await?,
            Some(Err(_)) => ReadResult::NotFound,
            None => store.read(&tenant, resource_type, id).await?,
        };
        let ReadResult::Found(target) = target else {
            return Err(OperationError::not_found(format!("{resource_type}/{id} is not known")));
        };
        let resource = target.resource.unwrap_or(Value::Null);
        // An instance call without a body hands the Bot the target resource as its input.
        if event.is_empty("input") {
            event.set("input", &resource);
        }
        event.set("resource", &resource);
    }
    let requester = context.caller().map(|caller| caller.reference.into_owned());
    if let Some(requester) = &requester {
        event.set("requester", &json!({ "reference": requester }));
    }
    let result = bots
        .execute(
            &tenant,
            bot,
            event,
            context.base_url(),
            requester,
            crate::access::Access::of(context.request()).into_owned(),
        )
        .await?;
    bot_output(context.definition(), result.json)
}

/// `event` without `input`: what Medplum passes, headers without credentials, and the
/// validated parameters.
pub fn event_base(context: &OperationContext, params: &BoundParams) -> BotEvent {
    let content_type = context
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/fhir+json")
        .to_owned();
    let trace_id = context
        .headers()
        .get("x-trace-id")
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let definition = context.definition();
    let mut event = BotEvent::default();
    event.set("contentType", &content_type);
    event.set("headers", &HeadersJson(context.headers()));
    event.set("traceId", &trace_id);
    event.set("parameters", &TypedParameters::new(definition.inputs(), params));
    event
}

/// The request's headers as a JSON object, credentials left out, written straight from the
/// header map. A repeated header is a repeated member, read (as JSON.parse reads it) as its
/// last value in its first place, as a map built first would have held it.
struct HeadersJson<'a>(&'a actix_web::http::header::HeaderMap);

impl serde::Serialize for HeadersJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut headers = serializer.serialize_map(None)?;
        for (name, value) in self.0.iter() {
            if matches!(name.as_str(), "authorization" | "cookie") {
                continue;
            }
            if let Ok(value) = value.to_str() {
                headers.serialize_entry(name.as_str(), value)?;
            }
        }
        headers.end()
    }
}

/// The query string as an object: a string per parameter, an array of strings when repeated.
pub fn query_object(context: &OperationContext) -> Value {
    let mut object = Map::new();
    for (name, value) in fhirop::format::query_pairs(context.uri().query().unwrap_or_default()) {
        let value = Value::String(value.into_owned());
        match object.get_mut(name.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
            None => {
                object.insert(name.into_owned(), value);
            }
        }
    }
    Value::Object(object)
}

/// The validated input as an object keyed by parameter name, values typed per the
/// definition: numbers, booleans, resources, objects for parts, arrays when max > 1.
/// Written straight from the bound values: a resource is serialized where it lies, not copied.
#[derive(Debug)]
pub struct TypedParameters<'a> {
    inputs: Vec<&'a ParamDefinition>,
    params: &'a BoundParams,
}

impl<'a> TypedParameters<'a> {
    /// `params` typed by `inputs`, in the definition's order.
    pub fn new(inputs: impl IntoIterator<Item = &'a ParamDefinition>, params: &'a BoundParams) -> Self {
        TypedParameters {
            inputs: inputs.into_iter().collect(),
            params,
        }
    }
}

impl serde::Serialize for TypedParameters<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut object = serializer.serialize_map(None)?;
        for input in &self.inputs {
            let values = self.params.get(&input.name);
            let Some(first) = values.first() else { continue };
            let typed = |value| TypedValue(input, value);
            match input.max {
                Max::Count(1) => object.serialize_entry(&input.name, &typed(first))?,
                _ => object.serialize_entry(&input.name, &values.iter().map(typed).collect::<Vec<_>>())?,
            }
        }
        object.end()
    }
}

/// One bound value as the Bot sees it.
struct TypedValue<'a>(&'a ParamDefinition, &'a ParamValue);

impl serde::Serialize for TypedValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let TypedValue(definition, value) = *self;
        match value {
            ParamValue::Text { text, .. } if definition.kind == ParamKind::Primitive => {
                primitive_json(definition.fhir_type.as_deref().unwrap_or("string"), text).serialize(serializer)
            }
            ParamValue::Text { text, .. } => serializer.serialize_str(text),
            ParamValue::Value { value, .. } | ParamValue::Resource(value) => value.serialize(serializer),
            ParamValue::Parts(parts) => TypedParameters::new(&definition.parts, parts).serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn input(name: &str, kind: ParamKind, fhir_type: Option<&str>, max: Max) -> ParamDefinition {
        ParamDefinition {
            name: name.into(),
            use_: fhirop::definition::ParamUse::In,
            min: 0,
            max,
            kind,
            fhir_type: fhir_type.map(Into::into),
            search_type: None,
            documentation: None,
            parts: Vec::new(),
        }
    }

    #[test]
    fn parameters_are_typed_by_the_definition_and_written_in_its_order() {
        let mut detail = input("detail", ParamKind::Tuple, None, Max::Unbounded);
        detail.parts = vec![
            input("code", ParamKind::Primitive, Some("code"), Max::Count(1)),
            input("weight", ParamKind::Primitive, Some("decimal"), Max::Count(1)),
        ];
        let inputs = [
            input("patient", ParamKind::Resource, Some("Patient"), Max::Count(1)),
            input("count", ParamKind::Primitive, Some("integer"), Max::Count(1)),
            input("flag", ParamKind::Primitive, Some("boolean"), Max::Count(1)),
            input("tag", ParamKind::Primitive, Some("string"), Max::Unbounded),
            input("name", ParamKind::Search, Some("string"), Max::Count(1)),
            input("absent", ParamKind::Primitive, Some("string"), Max::Count(1)),
            detail,
        ];
        let text = |text: &str| ParamValue::Text {
            text: text.into(),
            modifier: None,
        };
        let mut parts = BoundParams::new();
        parts.push("weight", text("1.50"));
        parts.push(
            "code",
            ParamValue::Value {
                fhir_type: "code".into(),
                value: json!("x"),
            },
        );
        let mut params = BoundParams::new();
        params.push("tag", text("a"));
        params.push("detail", ParamValue::Parts(parts));
        params.push("count", text("3"));
        params.push("tag", text("b"));
        params.push("flag", text("true"));
        params.push("name", text("smi"));
        params.push(
            "patient",
            ParamValue::Resource(json!({"resourceType": "Patient", "id": "p1"})),
        );
        assert_eq!(
            serde_json::to_string(&TypedParameters::new(&inputs, &params)).unwrap(),
            r#"{"patient":{"resourceType":"Patient","id":"p1"},"count":3,"flag":true,"tag":["a","b"],"name":"smi","detail":[{"code":"x","weight":1.50}]}"#
        );
    }

    #[test]
    fn headers_go_in_without_credentials_and_a_repeated_one_as_json_parse_reads_it() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer secret"),
            ("x-custom", "first"),
            ("cookie", "session=abc"),
            ("host", "example.org"),
            ("x-custom", "second"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let text = serde_json::to_string(&HeadersJson(&headers)).unwrap();
        assert!(!text.contains("secret") && !text.contains("session"), "{text}");
        // The last value wins, as in the object JSON.parse builds.
        let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.get("x-custom"), Some(&json!("second")));
        assert_eq!(parsed.get("host"), Some(&json!("example.org")));
        assert_eq!(parsed.len(), 2);
    }
}
