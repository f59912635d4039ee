//! Projects (tenants) and their clients, through Medplum's admin API, and the OAuth 2 token
//! endpoint for client credentials.
//!
//! A project's id is its tenant: its resources, memberships and Bots are stored under it.
//! Projects and ClientApplications themselves are kept in the `system` tenant, where a
//! client is found by id when it asks for a token.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fhirop::context::{DEFAULT_TENANT, Principal};
use fhirop::format::ResponseFormat;
use fhirop::outcome::OperationError;
use fhirop::store::{ReadResult, SearchQuery, StoreHandle, StoredResource, Write};
use serde_json::{Value, json};

use crate::auth::ADMIN_CALLER;
use crate::tokens::{Claims, TokenSigner, now_seconds, secret_hash, secret_matches};

/// The tenant that holds Projects and ClientApplications.
pub const SYSTEM_TENANT: &str = "system";

/// The extension that keeps a client's secret hash.
const SECRET_HASH_EXTENSION: &str = "https://fhirop.dev/StructureDefinition/client-secret-sha256";

/// What the admin API and the token endpoint need.
#[derive(Debug, Clone)]
pub struct Projects {
    /// The store.
    pub store: StoreHandle,
    /// Signs access tokens.
    pub signer: TokenSigner,
    /// Token lifetime in seconds.
    pub token_ttl: u64,
}

/// Where the admin API is.
pub const ADMIN_PATH: &str = "/admin/projects";
/// The OAuth 2.0 token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// Mounts the admin API and the token endpoint.
pub fn routes(config: &mut web::ServiceConfig) {
    // In a scope, so only admin requests run the `{project}` patterns' regexes.
    config
        .service(
            web::scope(ADMIN_PATH)
                .route("", web::post().to(create_project))
                .route("/{project}/client", web::post().to(create_client))
                .route("/{project}/client/{id}", web::delete().to(delete_client))
                .route("/{project}/bot", web::post().to(create_bot)),
        )
        .route(TOKEN_PATH, web::post().to(token));
}

fn respond(result: Result<(StatusCode, Value), OperationError>) -> HttpResponse {
    let format = ResponseFormat::default();
    match result {
        Ok((status, body)) => format.respond(status, &body),
        Err(error) => format.respond_error(&error),
    }
}

/// Only the admin uses the admin API.
fn require_admin(request: &HttpRequest) -> Result<(), OperationError> {
    match Principal::of(request) {
        Some(principal) if principal.caller.reference == ADMIN_CALLER => Ok(()),
        _ => Err(OperationError::forbidden("the admin API needs the admin token")),
    }
}

fn json_body(body: &[u8]) -> Result<Value, OperationError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    fhirop::format::parse_json_object(body)
}

async fn write_one(store: &StoreHandle, tenant: &str, resource: Value) -> Result<StoredResource, OperationError> {
    store
        .transaction(tenant, vec![Write::Create { resource }])
        .await?
        .pop()
        .and_then(|result| result.stored)
        .ok_or_else(|| OperationError::internal("the store returned nothing for a create"))
}

/// The project must exist (the default project always does).
async fn check_project(store: &StoreHandle, project: &str) -> Result<(), OperationError> {
    if project == DEFAULT_TENANT {
        return Ok(());
    }
    match store.read(SYSTEM_TENANT, "Project", project).await? {
        ReadResult::Found(_) => Ok(()),
        _ => Err(OperationError::not_found(format!("Project/{project} is not known"))),
    }
}

/// A membership linking `user` to `project`, with the access policy of `body`, if any.
pub async fn add_membership(
    store: &StoreHandle,
    project: &str,
    user: &str,
    body: &Value,
) -> Result<StoredResource, OperationError> {
    let mut membership = json!({
        "resourceType": "ProjectMembership",
        "id": crate::store::new_id(),
        "project": {"reference": format!("Project/{project}")},
        "user": {"reference": user},
        "profile": {"reference": user},
    });
    if let Some(policy) = body.get("accessPolicy").filter(|policy| policy.is_object()) {
        membership["accessPolicy"] = policy.clone();
    }
    write_one(store, project, membership).await
}

async fn create_project(request: HttpRequest, body: web::Bytes, projects: web::Data<Projects>) -> HttpResponse {
    respond(
        async {
            require_admin(&request)?;
            let body = json_body(&body)?;
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.trim().is_empty())
                .ok_or_else(|| OperationError::invalid("a project needs a name"))?;
            let project = json!({"resourceType": "Project", "id": crate::store::new_id(), "name": name});
            let stored = write_one(&projects.store, SYSTEM_TENANT, project).await?;
            Ok((StatusCode::CREATED, stored.resource.unwrap_or(Value::Null)))
        }
        .await,
    )
}

async fn create_client(request: HttpRequest, body: web::Bytes, projects: web::Data<Projects>) -> HttpResponse {
    respond(
        async {
            require_admin(&request)?;
            let project = request.match_info().get("project").unwrap_or_default().to_owned();
            check_project(&projects.store, &project).await?;
            let body = json_body(&body)?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or("client").to_owned();
            let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            let client = json!({
                "resourceType": "ClientApplication",
                "id": crate::store::new_id(),
                "extension": [
                    {"url": SECRET_HASH_EXTENSION, "valueString": secret_hash(&secret)},
                    {"url": "https://fhirop.dev/StructureDefinition/project", "valueReference": {"reference": format!("Project/{project}")}},
                ],
                "name": name,
            });
            let stored = write_one(&projects.store, SYSTEM_TENANT, client).await?;
            add_membership(&projects.store, &project, &format!("ClientApplication/{}", stored.id), &body).await?;
            // The secret appears in this response only.
            let mut client = stored.resource.unwrap_or(Value::Null);
            if let Value::Object(members) = &mut client {
                members.shift_remove("extension");
                members.insert("secret".into(), Value::String(secret));
            }
            Ok((StatusCode::CREATED, client))
        }
        .await,
    )
}

async fn delete_client(request: HttpRequest, projects: web::Data<Projects>) -> HttpResponse {
    respond(
        async {
            require_admin(&request)?;
            let id = request.match_info().get("id").unwrap_or_default().to_owned();
            if !matches!(
                projects.store.read(SYSTEM_TENANT, "ClientApplication", &id).await?,
                ReadResult::Found(_)
            ) {
                return Err(OperationError::not_found(format!(
                    "ClientApplication/{id} is not known"
                )));
            }
            projects
                .store
                .transaction(
                    SYSTEM_TENANT,
                    vec![Write::Delete {
                        resource_type: "ClientApplication".into(),
                        id,
                    }],
                )
                .await?;
            Ok((
                StatusCode::OK,
                fhirop::outcome::OperationOutcome::information("deleted").to_json(),
            ))
        }
        .await,
    )
}

async fn create_bot(request: HttpRequest, body: web::Bytes, projects: web::Data<Projects>) -> HttpResponse {
    respond(
        async {
            require_admin(&request)?;
            let project = request.match_info().get("project").unwrap_or_default().to_owned();
            check_project(&projects.store, &project).await?;
            let body = json_body(&body)?;
            let mut bot = json!({
                "resourceType": "Bot",
                "id": crate::store::new_id(),
                "name": body.get("name").and_then(Value::as_str).unwrap_or("bot"),
            });
            if let Some(run_as_user) = body.get("runAsUser").and_then(Value::as_bool) {
                bot["runAsUser"] = Value::Bool(run_as_user);
            }
            let stored = write_one(&projects.store, &project, bot).await?;
            add_membership(&projects.store, &project, &format!("Bot/{}", stored.id), &body).await?;
            Ok((StatusCode::CREATED, stored.resource.unwrap_or(Value::Null)))
        }
        .await,
    )
}

/// An RFC 6749 error: JSON with `error` and `error_description`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header(("WWW-Authenticate", "Basic realm=\"fhirop\""));
    }
    response
        .insert_header(("Cache-Control", "no-store"))
        .content_type("application/json")
        .body(json!({"error": error, "error_description": description}).to_string())
}

/// The client's id and secret from HTTP Basic or the form.
fn client_credentials(request: &HttpRequest, form: &[(String, String)]) -> Option<(String, String)> {
    let basic = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    basic.or_else(|| Some((field("client_id")?, field("client_secret")?)))
}

/// The membership that grants `user` access to `project`.
pub async fn membership_of(
    store: &StoreHandle,
    project: &str,
    user: &str,
) -> Result<Option<StoredResource>, OperationError> {
    let query = SearchQuery {
        resource_type: "ProjectMembership".into(),
        params: vec![("user".into(), user.to_owned())],
        count: 1,
        strict: true,
        ..SearchQuery::default()
    };
    Ok(store.search(project, &query).await?.resources.into_iter().next())
}

/// The project a stored client belongs to, and its secret hash.
fn client_project(client: &Value) -> Option<(String, String)> {
    let extensions = client.get("extension")?.as_array()?;
    let find = |url: &str| {
        extensions
            .iter()
            .find(|extension| extension.get("url").and_then(Value::as_str) == Some(url))
    };
    let hash = find(SECRET_HASH_EXTENSION)?.get("valueString")?.as_str()?.to_owned();
    let project = find("https://fhirop.dev/StructureDefinition/project")?
        .pointer("/valueReference/reference")?
        .as_str()?
        .strip_prefix("Project/")?
        .to_owned();
    Some((project, hash))
}

async fn token(request: HttpRequest, body: web::Bytes, projects: web::Data<Projects>) -> HttpResponse {
    let form = crate::rest::owned_query_pairs(&body);
    let grant = form
        .iter()
        .find(|(key, _)| key == "grant_type")
        .map(|(_, value)| value.as_str());
    if grant != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "this server issues tokens for client_credentials",
        );
    }
    let Some((client_id, secret)) = client_credentials(&request, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is missing",
        );
    };
    let invalid = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        )
    };
    let client = match projects
        .store
        .read(SYSTEM_TENANT, "ClientApplication", &client_id)
        .await
    {
        Ok(ReadResult::Found(stored)) => stored.resource,
        Ok(_) => return invalid(),
        Err(error) => return ResponseFormat::default().respond_error(&error.into()),
    };
    let Some((project, hash)) = client.as_ref().and_then(client_project) else {
        return invalid();
    };
    if !secret_matches(&secret, &hash) {
        return invalid();
    }
    let subject = format!("ClientApplication/{client_id}");
    let membership = match membership_of(&projects.store, &project, &subject).await {
        Ok(Some(membership)) => membership,
        Ok(None) => return invalid(),
        Err(error) => return ResponseFormat::default().respond_error(&error),
    };
    let policy = membership
        .resource
        .as_ref()
        .and_then(|membership| membership.pointer("/accessPolicy/reference"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let claims = Claims {
        subject,
        project,
        membership: membership.id,
        policy,
        expires: now_seconds() + projects.token_ttl,
    };
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .content_type("application/json")
        .body(
            json!({
                "access_token": projects.signer.sign(&claims),
                "token_type": "Bearer",
                "expires_in": projects.token_ttl,
            })
            .to_string(),
        )
}

/// `[base]/.well-known/smart-configuration`: where and how to get a token.
pub async fn smart_configuration(request: HttpRequest) -> HttpResponse {
    let origin = fhirop::context::request_origin(&request);
    HttpResponse::Ok().content_type("application/json").body(
        json!({
            "token_endpoint": format!("{origin}/oauth2/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "capabilities": ["client-confidential-symmetric"],
        })
        .to_string(),
    )
}
