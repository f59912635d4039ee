//! The FHIR REST interactions (R4 http.html) on top of the resource store: create, read,
//! vread, update, delete, history, search, and batch/transaction Bundles.

use std::borrow::Cow;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use fhirop::context::tenant_of;
use fhirop::format::{ResponseFormat, check_content_type, negotiate, parse_json_object_within};
use fhirop::outcome::{IssueType, OperationError, OperationOutcome};
use fhirop::server::{ServerState, read_body};
use fhirop::store::{ReadResult, SearchQuery, SortOrder, StoreHandle, StoredResource, Write};
use fhirop::types::lexical::is_id;
use fhirop::types::resource::Bundle;
use serde_json::{Value, json};

use std::sync::Arc;

use fhirop::definition::OperationDefinition;

use crate::access::Access;
use crate::bots::Bots;
use crate::is_known_resource_type;
use crate::transaction::process_bundle;

/// The default and the largest page size of a search.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page size a client may ask for.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// Adds the REST routes to the FHIR scope (after the operation routes, which win on `$`).
pub fn routes(scope: Scope) -> Scope {
    scope
        .service(web::resource("").route(web::post().to(bundle_route)))
        .service(web::resource("/").route(web::post().to(bundle_route)))
        .service(
            web::resource("/{type}")
                .route(web::get().to(search_route))
                .route(web::post().to(create_route)),
        )
        .service(web::resource("/{type}/_search").route(web::post().to(search_route)))
        .service(
            web::resource("/{type}/{id}")
                .route(web::get().to(read_route))
                .route(web::put().to(update_route))
                .route(web::delete().to(delete_route)),
        )
        .service(web::resource("/{type}/{id}/_history").route(web::get().to(history_route)))
        .service(web::resource("/{type}/{id}/_history/{vid}").route(web::get().to(vread_route)))
}

/// What every REST route needs: the response format, the store, the tenant and the base URL.
struct Rest {
    format: ResponseFormat,
    store: StoreHandle,
    tenant: String,
    base_url: String,
    access: Access,
}

impl Rest {
    fn new(request: &HttpRequest, state: &ServerState) -> Result<Rest, (ResponseFormat, OperationError)> {
        let format = negotiate(request).map_err(|error| (ResponseFormat::default(), error))?;
        let store = request
            .app_data::<StoreHandle>()
            .cloned()
            .ok_or_else(|| (format, OperationError::internal("this server has no resource store")))?;
        Ok(Rest {
            format,
            store,
            tenant: tenant_of(request).to_owned(),
            base_url: state.base_url(request),
            access: Access::of(request).into_owned(),
        })
    }
}

/// Runs a REST interaction and writes its error, if any, as an OperationOutcome.
macro_rules! rest {
    ($request:expr, $state:expr, |$rest:ident| $body:expr) => {{
        match Rest::new(&$request, &$state) {
            Err((format, error)) => format.respond_error(&error),
            Ok($rest) => {
                let format = $rest.format;
                let result: Result<HttpResponse, OperationError> = async { $body }.await;
                result.unwrap_or_else(|error| format.respond_error(&error))
            }
        }
    }};
}

/// Checks the type in the URL.
fn resource_type_in_url(request: &HttpRequest) -> Result<String, OperationError> {
    let resource_type = request.match_info().get("type").unwrap_or_default();
    if is_known_resource_type(resource_type) {
        Ok(resource_type.to_owned())
    } else {
        Err(OperationError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            format!("'{resource_type}' is not a resource type this server knows"),
        ))
    }
}

/// Checks an id in the URL against R4's id rule.
fn id_in_url(request: &HttpRequest, name: &str) -> Result<String, OperationError> {
    let id = request.match_info().get(name).unwrap_or_default();
    if is_id(id) {
        Ok(id.to_owned())
    } else {
        Err(OperationError::invalid(format!(
            "'{id}' is not a valid id: expected 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'"
        )))
    }
}

/// Reads and checks a resource body: a JSON object whose `resourceType` is known and is the
/// one in the URL.
async fn resource_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &ServerState,
    resource_type: &str,
) -> Result<Value, OperationError> {
    let body = read_body(request, payload, state.body_limit()).await?;
    check_content_type(request)?;
    if body.is_empty() {
        return Err(OperationError::invalid("the request needs a resource in its body"));
    }
    let resource = parse_json_object_within(&body, state.input_limits().max_json_depth)?;
    check_resource(&resource, resource_type)?;
    Ok(resource)
}

/// The input rules every stored resource follows.
pub fn check_resource(resource: &Value, expected_type: &str) -> Result<(), OperationError> {
    let given = resource.get("resourceType").and_then(Value::as_str);
    match given {
        None => Err(OperationError::invalid("the resource has no resourceType")),
        Some(given) if !is_known_resource_type(given) => Err(OperationError::invalid(format!(
            "'{given}' is not a resource type this server knows"
        ))),
        Some(given) if given != expected_type => Err(OperationError::invalid(format!(
            "the body is a {given}, but the URL names {expected_type}"
        ))),
        Some(_) => match resource.get("id") {
            None => Ok(()),
            Some(Value::String(id)) if is_id(id) => Ok(()),
            Some(other) => Err(OperationError::invalid(format!("{other} is not a valid resource id"))),
        },
    }
}

/// A Bot-backed OperationDefinition about to be stored: checked (its Bot exists, its code
/// clashes with nothing) before anything is written.
async fn check_definition(
    request: &HttpRequest,
    rest: &Rest,
    resource: &Value,
) -> Result<Option<(OperationDefinition, String)>, OperationError> {
    match request.app_data::<Arc<Bots>>() {
        Some(bots) if resource.get("resourceType").and_then(Value::as_str) == Some("OperationDefinition") => {
            bots.check_definition(&rest.tenant, resource).await
        }
        _ => Ok(None),
    }
}

/// Registers (or, when the definition no longer names a Bot, removes) the operation of a
/// stored OperationDefinition, so it answers at once.
fn register_definition(
    request: &HttpRequest,
    tenant: &str,
    stored: &StoredResource,
    registration: Option<(OperationDefinition, String)>,
) -> Result<(), OperationError> {
    let Some(bots) = request.app_data::<Arc<Bots>>() else {
        return Ok(());
    };
    if stored.resource_type != "OperationDefinition" {
        return Ok(());
    }
    match registration {
        Some((mut definition, bot)) => {
            definition.id = stored.id.clone();
            bots.register(tenant, definition, bot)
        }
        None => bots.unregister(&stored.id),
    }
}

/// `[base]/Type/id/_history/vid`
fn versioned_location(base_url: &str, stored: &StoredResource) -> String {
    format!(
        "{base_url}/{}/{}/_history/{}",
        stored.resource_type, stored.id, stored.version_id
    )
}

/// A response carrying one stored version, with ETag and Last-Modified.
fn resource_response(
    format: ResponseFormat,
    status: StatusCode,
    stored: &StoredResource,
    location: Option<String>,
) -> HttpResponse {
    let mut response = format.respond(status, stored.resource.as_ref().unwrap_or(&Value::Null));
    let headers = response.headers_mut();
    if let Ok(etag) = header::HeaderValue::try_from(stored.etag()) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(last_modified) = http_date(&stored.last_updated) {
        headers.insert(header::LAST_MODIFIED, last_modified);
    }
    if let Some(location) = location.and_then(|location| header::HeaderValue::try_from(location).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// `meta.lastUpdated` as an HTTP date (`Mon, 23 Nov 2026 13:17:40 GMT`).
fn http_date(instant: &str) -> Option<header::HeaderValue> {
    let (millis, _) = fhirop::types::time::date_range(instant)?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(millis).ok()?);
    header::HeaderValue::try_from(header::HttpDate::from(time).to_string()).ok()
}

fn gone(stored: &StoredResource) -> OperationError {
    OperationError::new(
        StatusCode::GONE,
        IssueType::Deleted,
        format!(
            "{}/{} was deleted (version {})",
            stored.resource_type, stored.id, stored.version_id
        ),
    )
}

fn not_found(resource_type: &str, id: &str) -> OperationError {
    OperationError::not_found(format!("{resource_type}/{id} is not known"))
}

async fn create_route(request: HttpRequest, payload: web::Payload, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_write(&resource_type)?;
        let mut resource = resource_body(&request, payload, &state, &resource_type).await?;
        // R4 create: the server assigns the id, whatever the body says.
        resource["id"] = Value::String(crate::store::new_id());
        let registration = check_definition(&request, &rest, &resource).await?;
        let mut results = rest
            .store
            .transaction(&rest.tenant, vec![Write::Create { resource }])
            .await?;
        let stored = results
            .pop()
            .and_then(|result| result.stored)
            .ok_or_else(|| OperationError::internal("the store returned nothing for a create"))?;
        register_definition(&request, &rest.tenant, &stored, registration)?;
        if stored.resource_type == "Bot" {
            // A Bot created by a project member joins the project, as one from the admin API.
            crate::projects::add_membership(&rest.store, &rest.tenant, &format!("Bot/{}", stored.id), &Value::Null)
                .await?;
        }
        let location = versioned_location(&rest.base_url, &stored);
        Ok(resource_response(
            rest.format,
            StatusCode::CREATED,
            &stored,
            Some(location),
        ))
    })
}

async fn read_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_read(&resource_type)?;
        let id = id_in_url(&request, "id")?;
        match rest.store.read(&rest.tenant, &resource_type, &id).await? {
            ReadResult::Found(stored) => Ok(resource_response(rest.format, StatusCode::OK, &stored, None)),
            ReadResult::Deleted(stored) => Err(gone(&stored)),
            ReadResult::NotFound => Err(not_found(&resource_type, &id)),
        }
    })
}

async fn vread_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_read(&resource_type)?;
        let id = id_in_url(&request, "id")?;
        let vid = request.match_info().get("vid").unwrap_or_default();
        let Ok(version) = vid.parse::<u64>() else {
            return Err(OperationError::not_found(format!(
                "{resource_type}/{id} has no version '{vid}'"
            )));
        };
        match rest.store.vread(&rest.tenant, &resource_type, &id, version).await? {
            ReadResult::Found(stored) => Ok(resource_response(rest.format, StatusCode::OK, &stored, None)),
            ReadResult::Deleted(stored) => Err(gone(&stored)),
            ReadResult::NotFound => Err(OperationError::not_found(format!(
                "{resource_type}/{id} has no version {version}"
            ))),
        }
    })
}

/// Parses `If-Match: W/"3"` (or `"3"`).
fn if_match(request: &HttpRequest) -> Result<Option<u64>, OperationError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let version = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    version
        .parse()
        .map(Some)
        .map_err(|_| OperationError::invalid(format!("If-Match '{text}' is not a version ETag such as W/\"1\"")))
}

async fn update_route(request: HttpRequest, payload: web::Payload, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_write(&resource_type)?;
        let id = id_in_url(&request, "id")?;
        let resource = resource_body(&request, payload, &state, &resource_type).await?;
        match resource.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(body_id) => {
                return Err(OperationError::invalid(format!(
                    "the body's id '{body_id}' does not match the id '{id}' in the URL"
                )));
            }
            None => {
                return Err(OperationError::invalid(format!(
                    "an update needs the resource's id ('{id}') in the body"
                )));
            }
        }
        let registration = check_definition(&request, &rest, &resource).await?;
        let write = Write::Update {
            resource,
            if_match: if_match(&request)?,
        };
        let mut results = rest.store.transaction(&rest.tenant, vec![write]).await?;
        let result = results
            .pop()
            .ok_or_else(|| OperationError::internal("the store returned nothing for an update"))?;
        let stored = result
            .stored
            .ok_or_else(|| OperationError::internal("the store returned nothing for an update"))?;
        register_definition(&request, &rest.tenant, &stored, registration)?;
        let status = if result.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let location = versioned_location(&rest.base_url, &stored);
        Ok(resource_response(rest.format, status, &stored, Some(location)))
    })
}

async fn delete_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_write(&resource_type)?;
        let id = id_in_url(&request, "id")?;
        if matches!(
            rest.store.read(&rest.tenant, &resource_type, &id).await?,
            ReadResult::NotFound
        ) {
            return Err(not_found(&resource_type, &id));
        }
        let write = Write::Delete {
            resource_type: resource_type.clone(),
            id: id.clone(),
        };
        rest.store.transaction(&rest.tenant, vec![write]).await?;
        if resource_type == "OperationDefinition"
            && let Some(bots) = request.app_data::<Arc<Bots>>()
        {
            bots.unregister(&id)?;
        }
        let outcome = OperationOutcome::information(format!("{resource_type}/{id} deleted"));
        Ok(rest.format.respond(StatusCode::OK, &outcome.to_json()))
    })
}

async fn history_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_read(&resource_type)?;
        let id = id_in_url(&request, "id")?;
        let versions = rest.store.history(&rest.tenant, &resource_type, &id).await?;
        if versions.is_empty() {
            return Err(not_found(&resource_type, &id));
        }
        let mut bundle =
            Bundle::new("history").link("self", &format!("{}/{resource_type}/{id}/_history", rest.base_url));
        bundle.total = Some(versions.len() as u64);
        for (index, stored) in versions.iter().enumerate() {
            let is_last = index + 1 == versions.len();
            let (method, status) = match (&stored.resource, is_last) {
                (None, _) => ("DELETE", "200 OK"),
                (Some(_), true) => ("POST", "201 Created"),
                (Some(_), false) => ("PUT", "200 OK"),
            };
            let mut entry = json!({
                "fullUrl": format!("{}/{}/{}", rest.base_url, stored.resource_type, stored.id),
                "request": {"method": method, "url": format!("{}/{}", stored.resource_type, stored.id)},
                "response": {"status": status, "etag": stored.etag(), "lastModified": stored.last_updated},
            });
            if let Some(resource) = &stored.resource {
                entry["resource"] = resource.clone();
            }
            bundle.entries.push(entry);
        }
        Ok(rest.format.respond(StatusCode::OK, &bundle.into_json()))
    })
}

/// Parameters that shape a search rather than filter it.
const CONTROL_PARAMETERS: [&str; 9] = [
    "_count",
    "_offset",
    "_sort",
    "_total",
    "_summary",
    "_format",
    "_pretty",
    "_elements",
    "_getpagesoffset",
];

/// The decoded `(name, value)` pairs of a query string or form body, owned.
pub fn owned_query_pairs(query: &[u8]) -> Vec<(String, String)> {
    let owned = |(name, value): (Cow<'_, str>, Cow<'_, str>)| (name.into_owned(), value.into_owned());
    match std::str::from_utf8(query) {
        Ok(text) => fhirop::format::query_pairs(text).map(owned).collect(),
        // Bytes that are not UTF-8 are read as the decoder reads them, with replacement chars.
        Err(_) => form_urlencoded::parse(query).map(owned).collect(),
    }
}

/// Builds a search from `(name, value)` pairs and the `Prefer` header.
pub fn search_query(
    resource_type: &str,
    pairs: Vec<(String, String)>,
    strict: bool,
) -> Result<SearchQuery, OperationError> {
    let mut query = SearchQuery {
        resource_type: resource_type.to_owned(),
        count: DEFAULT_PAGE_SIZE,
        want_total: true,
        strict,
        ..SearchQuery::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "_count" => {
                query.count = value
                    .parse::<usize>()
                    .map_err(|_| OperationError::bad_value("_count", format!("'{value}' is not a page size")))?
                    .min(MAX_PAGE_SIZE);
            }
            "_offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| OperationError::bad_value("_offset", format!("'{value}' is not an offset")))?;
            }
            "_sort" => match value.as_str() {
                "_lastUpdated" => query.sort_last_updated = Some(SortOrder::Ascending),
                "-_lastUpdated" => query.sort_last_updated = Some(SortOrder::Descending),
                other if strict => {
                    return Err(OperationError::bad_value(
                        "_sort",
                        format!("sorting by '{other}' is not supported"),
                    ));
                }
                _ => {}
            },
            "_total" => query.want_total = value != "none",
            "_summary" if value == "count" => query.count_only = true,
            name if CONTROL_PARAMETERS.contains(&name) => {}
            _ => query.params.push((name, value)),
        }
    }
    Ok(query)
}

/// `Prefer: handling=strict`
pub fn prefers_strict(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|part| part.trim() == "handling=strict"))
}

/// A searchset Bundle with `self`, `next` and `previous` links over the used parameters.
pub fn searchset(base_url: &str, query: &SearchQuery, result: fhirop::store::SearchResult) -> Bundle {
    let link = |offset: usize| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &result.used_params {
            url.append_pair(name, value);
        }
        match query.sort_last_updated {
            Some(SortOrder::Ascending) => {
                url.append_pair("_sort", "_lastUpdated");
            }
            Some(SortOrder::Descending) => {
                url.append_pair("_sort", "-_lastUpdated");
            }
            None => {}
        }
        if !query.want_total {
            url.append_pair("_total", "none");
        }
        if query.count_only {
            url.append_pair("_summary", "count");
        } else {
            url.append_pair("_count", &query.count.to_string());
            if offset > 0 {
                url.append_pair("_offset", &offset.to_string());
            }
        }
        format!("{base_url}/{}?{}", query.resource_type, url.finish())
    };
    let mut bundle = Bundle::searchset().link("self", &link(query.offset));
    if result.has_more && query.count > 0 {
        bundle = bundle.link("next", &link(query.offset + query.count));
    }
    if query.offset > 0 && !query.count_only {
        bundle = bundle.link("previous", &link(query.offset.saturating_sub(query.count)));
    }
    bundle.total = result.total;
    for stored in result.resources {
        let full_url = format!("{base_url}/{}/{}", stored.resource_type, stored.id);
        if let Some(resource) = stored.resource {
            bundle.push_match(Some(full_url), resource);
        }
    }
    bundle
}

async fn search_route(request: HttpRequest, payload: web::Payload, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let resource_type = resource_type_in_url(&request)?;
        rest.access.require_read(&resource_type)?;
        let mut pairs = owned_query_pairs(request.query_string().as_bytes());
        if request.method() == actix_web::http::Method::POST {
            let body = read_body(&request, payload, state.body_limit()).await?;
            pairs.extend(owned_query_pairs(&body));
        }
        let query = search_query(&resource_type, pairs, prefers_strict(&request))?;
        let result = rest.store.search(&rest.tenant, &query).await?;
        Ok(rest
            .format
            .respond(StatusCode::OK, &searchset(&rest.base_url, &query, result).into_json()))
    })
}

async fn bundle_route(request: HttpRequest, payload: web::Payload, state: web::Data<ServerState>) -> HttpResponse {
    rest!(request, state, |rest| {
        let body = read_body(&request, payload, state.body_limit()).await?;
        check_content_type(&request)?;
        let bundle = parse_json_object_within(&body, state.input_limits().max_json_depth)?;
        let response = process_bundle(&rest.store, &rest.tenant, &rest.access, bundle).await?;
        Ok(rest.format.respond(StatusCode::OK, &response))
    })
}
