//! The actix-web side: the routes under the base path and the request's way through them
//! (ARCHITECTURE.md): negotiate → resolve → method rule → bind → handler → response.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::{Ready, ready};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use actix_web::dev::{AppService, HttpServiceFactory, ResourceDef, ServiceRequest, ServiceResponse, fn_service};
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, Scope, guard, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::{Either, LocalBoxFuture};
use serde_json::Value;

use crate::binding::Binder;
use crate::capability::{ServerInfo, capability_statement};
use crate::context::{BaseUrl, OperationContext, Target, base_url_of, tenant_of};
use crate::definition::{Level, OperationDefinition, canonical_url, searchset};
use crate::format::{
    InputLimits, ResponseFormat, accepts_gzip, check_content_type, negotiate, parse_json_object_within, query_pairs,
};
use crate::operation::{IntoOperations, OperationCall};
use crate::outcome::{IssueType, OperationError};
use crate::output::OperationOutput;
use crate::registry::{CachedStatement, OperationRegistry, RegisteredOperation, RegistryError, Resolution, Snapshot};
use crate::resource_types::r4_resource_type;
use crate::types::lexical::is_id;
use crate::types::resource::resource_type_of;

pub use actix_web::http::StatusCode;

/// The default request body limit: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The state every route shares.
#[derive(Debug)]
pub struct ServerState {
    registry: Arc<OperationRegistry>,
    /// Shared with every call's [`BaseUrl`], which takes a reference rather than a copy.
    base_path: Arc<str>,
    public_base_url: Option<Arc<str>>,
    body_limit: usize,
    info: ServerInfo,
    extra_resource_types: Vec<String>,
    authorizer: AuthorizerSlot,
    input_limits: InputLimits,
}

/// The server's authorizer, if it has one.
#[derive(Default)]
struct AuthorizerSlot(Option<Authorizer>);

impl std::fmt::Debug for AuthorizerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(Authorizer)" } else { "None" })
    }
}

/// Decides whether the caller of a request may invoke an operation at its target (the
/// server's access policies); runs after routing and before binding.
pub type Authorizer =
    std::sync::Arc<dyn Fn(&HttpRequest, &OperationDefinition, &Target) -> Result<(), OperationError> + Send + Sync>;

impl ServerState {
    /// The operation registry.
    pub fn registry(&self) -> &Arc<OperationRegistry> {
        &self.registry
    }

    /// The base path (`/fhir/R4`).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The largest request body accepted, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// How many Parameters entries and how deep a JSON body may be.
    pub fn input_limits(&self) -> InputLimits {
        self.input_limits
    }

    /// Whether `name` is a resource type this server knows: an R4 one or one it declares.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_type_named(name).is_some()
    }

    /// The name of the resource type `name` if this server knows it, borrowed when R4 defines
    /// it.
    fn resource_type_named(&self, name: &str) -> Option<Cow<'static, str>> {
        match r4_resource_type(name) {
            Some(r4) => Some(Cow::Borrowed(r4)),
            None => self
                .extra_resource_types
                .iter()
                .find(|extra| *extra == name)
                .map(|extra| Cow::Owned(extra.clone())),
        }
    }

    /// The base URL as clients see it: the configured one, or scheme and host of the request.
    pub fn base_url(&self, request: &HttpRequest) -> String {
        base_url_of(self.public_base_url.as_deref(), &self.base_path, request)
    }
}

/// A FHIR server's operation endpoints, ready to mount in an actix-web `App`.
///
/// ```no_run
/// # use fhirop_runtime::server::FhirServer;
/// # async fn run() -> std::io::Result<()> {
/// let fhir = FhirServer::builder().base_path("/fhir/R4").build().expect("no clashes");
/// actix_web::HttpServer::new(move || actix_web::App::new().service(fhir.scope()))
///     .bind("127.0.0.1:8080")?
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FhirServer {
    state: Arc<ServerState>,
}

/// Configures a [`FhirServer`].
#[derive(Debug)]
pub struct FhirServerBuilder {
    state: ServerState,
    pending: Vec<crate::operation::Operation>,
}

impl FhirServer {
    /// Starts configuring a server.
    pub fn builder() -> FhirServerBuilder {
        FhirServerBuilder {
            state: ServerState {
                registry: Arc::new(OperationRegistry::new()),
                base_path: "/fhir/R4".into(),
                public_base_url: None,
                body_limit: DEFAULT_BODY_LIMIT,
                info: ServerInfo::default(),
                extra_resource_types: Vec::new(),
                authorizer: AuthorizerSlot::default(),
                input_limits: InputLimits::default(),
            },
            pending: Vec::new(),
        }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// The operation registry (to add or remove operations at run time).
    pub fn registry(&self) -> &Arc<OperationRegistry> {
        &self.state.registry
    }

    /// An actix `Scope` at the base path with `metadata`, `OperationDefinition` and every
    /// operation route. Paths it does not know answer 404 with an OperationOutcome.
    pub fn scope(&self) -> Scope {
        self.scope_with(|scope| scope)
    }

    /// What [`FhirServer::scope_with`] serves, for the App itself: the operation routes in
    /// the App, ahead of a scope that holds the rest. Operation calls then skip the scope's
    /// router and its boxed future (callgrind: 568 of the 25.3k instructions a `$hello` call
    /// took), and other requests meet the operation guard once, not twice.
    pub fn services_with(&self, routes: impl FnOnce(Scope) -> Scope) -> FhirServices {
        FhirServices {
            operations: OperationRoutes {
                state: self.state.clone(),
                at_root: true,
            },
            scope: self.scope_of(false, routes),
        }
    }

    /// Like [`FhirServer::scope`], with your routes added after the operation routes (which
    /// win on `$`) and before the fallbacks, so a server with a store can take the other
    /// methods of `OperationDefinition` (create, update, delete).
    pub fn scope_with(&self, routes: impl FnOnce(Scope) -> Scope) -> Scope {
        self.scope_of(true, routes)
    }

    fn scope_of(&self, with_operations: bool, routes: impl FnOnce(Scope) -> Scope) -> Scope {
        let state = web::Data::from(self.state.clone());
        let mut scope = web::scope(&self.state.base_path).app_data(state);
        // Operation calls first: the router tries each service in turn, and they are the hot
        // path (`/metadata` is cached, and bound by its size).
        if with_operations {
            scope = scope.service(OperationRoutes {
                state: self.state.clone(),
                at_root: false,
            });
        }
        let scope = scope
            .service(web::resource("/metadata").to(metadata_route))
            .service(
                web::resource("/OperationDefinition")
                    .guard(guard::Get())
                    .to(definitions_route),
            )
            .service(
                web::resource("/OperationDefinition/{id}")
                    .guard(guard::Get())
                    .to(definition_route),
            );
        routes(scope)
            .service(web::resource("/OperationDefinition").to(get_only_route))
            .service(web::resource("/OperationDefinition/{id}").to(get_only_route))
            .default_service(web::to(unknown_route))
    }
}

/// The operation routes and the scope of [`FhirServer::services_with`], registered together.
pub struct FhirServices {
    operations: OperationRoutes,
    scope: Scope,
}

impl std::fmt::Debug for FhirServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirServices")
            .field("operations", &self.operations)
            .finish_non_exhaustive()
    }
}

impl HttpServiceFactory for FhirServices {
    fn register(self, config: &mut AppService) {
        self.operations.register(config);
        self.scope.register(config);
    }
}

impl FhirServerBuilder {
    /// The path everything is served under (default `/fhir/R4`; `""` for the root).
    pub fn base_path(mut self, base_path: &str) -> Self {
        self.state.base_path = base_path.trim_end_matches('/').into();
        self
    }

    /// The base URL clients use, when it is not what the request's Host says (a proxy).
    pub fn public_base_url(mut self, url: &str) -> Self {
        self.state.public_base_url = Some(url.trim_end_matches('/').into());
        self
    }

    /// The largest request body accepted (default 16 MiB); larger → 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.state.body_limit = bytes;
        self
    }

    /// What the CapabilityStatement says about the software.
    pub fn server_info(mut self, info: ServerInfo) -> Self {
        self.state.info = info;
        self
    }

    /// How many Parameters entries and how deep a JSON body may be.
    pub fn input_limits(mut self, limits: InputLimits) -> Self {
        self.state.input_limits = limits;
        self
    }

    /// Decides who may invoke which operation (see [`Authorizer`]).
    pub fn authorizer(mut self, authorizer: Authorizer) -> Self {
        self.state.authorizer = AuthorizerSlot(Some(authorizer));
        self
    }

    /// Declares a server-specific resource type (such as `Bot`) next to R4's.
    pub fn resource_type(mut self, name: &str) -> Self {
        self.state.extra_resource_types.push(name.into());
        self
    }

    /// Adds an operation or a provider's operations: `#[operation]` functions (through
    /// `operations![..]`) and `#[provider]` impls.
    pub fn provider(mut self, provider: impl IntoOperations) -> Self {
        self.pending.extend(provider.into_operations());
        self
    }

    /// Adds operations (`operations![everything, hello]`).
    pub fn operations(self, operations: impl IntoOperations) -> Self {
        self.provider(operations)
    }

    /// Registers everything; fails when two operations clash.
    pub fn build(self) -> Result<FhirServer, RegistryError> {
        for operation in self.pending {
            self.state.registry.register(operation)?;
        }
        Ok(FhirServer {
            state: Arc::new(self.state),
        })
    }
}

/// gzip at the best compression: it runs once per registry state, and the statement shrinks
/// to about a tenth.
fn gzip_encode(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Marks a `/metadata` response as depending on `Accept-Encoding` (gzip or not).
fn varying(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("Accept-Encoding"));
    response
}

async fn metadata_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    let format = match negotiate(&request) {
        Ok(format) => format,
        Err(error) => return ResponseFormat::default().respond_error(&error),
    };
    if request.method() != Method::GET {
        return format.respond_error(&method_not_allowed("GET"));
    }
    let base_url = state.base_url(&request);
    let tenant = tenant_of(&request);
    let snapshot = state.registry.snapshot();
    let key = format!("{tenant} {base_url}");
    let gzip = accepts_gzip(&request);
    if !format.pretty
        && let Some(cached) = snapshot.capability_cache.get()
        && cached.key == key
    {
        if gzip && let Some(encoded) = cached.gzip.get_or_init(|| gzip_encode(&cached.identity)) {
            return varying(format.respond_gzip(StatusCode::OK, encoded.clone()));
        }
        return varying(format.respond_bytes(StatusCode::OK, cached.identity.clone()));
    }
    let statement = capability_statement(&snapshot, &state.info, &base_url, tenant);
    if format.pretty {
        return format.respond(StatusCode::OK, &statement);
    }
    match serde_json::to_vec(&statement) {
        Ok(bytes) => {
            let bytes = Bytes::from(bytes);
            // Only the first tenant and base URL are cached; others get a fresh statement.
            let _ = snapshot.capability_cache.set(CachedStatement {
                key,
                identity: bytes.clone(),
                gzip: OnceLock::new(),
            });
            varying(format.respond_bytes(StatusCode::OK, bytes))
        }
        Err(error) => format.respond_error(&OperationError::internal(error.to_string())),
    }
}

fn definition_json(operation: &RegisteredOperation, base_url: &str) -> Value {
    let mut json = operation.definition.to_json();
    if operation.definition.url.is_none()
        && let Value::Object(members) = &mut json
    {
        // `url` belongs after `extension` and before `name`; rebuilding keeps FHIR's order.
        let url = canonical_url(base_url, &operation.definition.id);
        let mut ordered = serde_json::Map::new();
        for (key, value) in std::mem::take(members) {
            if key == "name" {
                ordered.insert("url".into(), url.clone().into());
            }
            ordered.insert(key, value);
        }
        *members = ordered;
    }
    json
}

async fn definitions_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    let format = match negotiate(&request) {
        Ok(format) => format,
        Err(error) => return ResponseFormat::default().respond_error(&error),
    };
    if request.method() != Method::GET {
        return format.respond_error(&method_not_allowed("GET"));
    }
    let base_url = state.base_url(&request);
    let tenant = tenant_of(&request);
    let snapshot = state.registry.snapshot();
    let definitions: Vec<Value> = snapshot
        .operations()
        .iter()
        .filter(|operation| operation.visible_to(tenant))
        .map(|operation| definition_json(operation, &base_url))
        .collect();
    let self_url = format!("{base_url}/OperationDefinition");
    format.respond(StatusCode::OK, &searchset(&definitions, &self_url))
}

async fn definition_route(request: HttpRequest, state: web::Data<ServerState>) -> HttpResponse {
    let format = match negotiate(&request) {
        Ok(format) => format,
        Err(error) => return ResponseFormat::default().respond_error(&error),
    };
    if request.method() != Method::GET {
        return format.respond_error(&method_not_allowed("GET"));
    }
    let id = request.match_info().get("id").unwrap_or_default();
    let snapshot = state.registry.snapshot();
    match snapshot
        .by_id(id)
        .filter(|operation| operation.visible_to(tenant_of(&request)))
    {
        Some(operation) => format.respond(StatusCode::OK, &definition_json(operation, &state.base_url(&request))),
        None => format.respond_error(&OperationError::not_found(format!(
            "OperationDefinition/{id} is not known to this server"
        ))),
    }
}

/// The part of `path` below the base path (`/Patient/$hello`), if it is below it.
fn below_base<'a>(path: &'a str, base_path: &str) -> Option<&'a str> {
    path.strip_prefix(base_path)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether the last segment of a path is an operation code (`$code`, or `%24code` as some
/// clients encode it): the route's guard, run on every request under the base path. It looks
/// at the end of the path only; the call parses the whole of it, and answers a malformed one
/// with 404.
fn ends_in_operation_code(path: &str) -> bool {
    operation_code(split_last(path).1).is_some()
}

/// The code of an operation segment (`$code`, or `%24code`), without its `$`.
fn operation_code(segment: &str) -> Option<&str> {
    segment.strip_prefix('$').or_else(|| segment.strip_prefix("%24"))
}

/// The segments of an operation call's path below the base: `$op`, `Type/$op`,
/// `Type/id/$op` or `Type/id/_history/vid/$op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OperationPath<'a> {
    resource_type: Option<&'a str>,
    id: Option<&'a str>,
    version_id: Option<&'a str>,
    /// The code, without its `$` (which some clients percent-encode as `%24`).
    code: &'a str,
}

impl<'a> OperationPath<'a> {
    fn parse(below_base: &'a str) -> Option<OperationPath<'a>> {
        // Every operation call is parsed here. The code is the last segment, so a path that is
        // no operation call is told by it before anything else is split; the rest is split at
        // byte positions, which costs a fraction of `str::split`.
        let rest = below_base.strip_prefix('/')?;
        let (head, op) = split_last(rest);
        let code = operation_code(op)?;
        let (resource_type, id, version_id) = match head.map(split_first) {
            None => (None, None, None),
            Some((resource_type, None)) => (Some(resource_type), None, None),
            Some((resource_type, Some(rest))) => match split_first(rest) {
                (id, None) => (Some(resource_type), Some(id), None),
                (id, Some(rest)) => match split_first(rest) {
                    ("_history", Some(version_id)) if !version_id.contains('/') => {
                        (Some(resource_type), Some(id), Some(version_id))
                    }
                    _ => return None,
                },
            },
        };
        Some(OperationPath {
            resource_type,
            id,
            version_id,
            code,
        })
    }
}

/// `text` up to its last `/` if it has one, and what follows that `/` (or all of `text`).
fn split_last(text: &str) -> (Option<&str>, &str) {
    match text.bytes().rposition(|byte| byte == b'/') {
        Some(slash) => (Some(&text[..slash]), &text[slash + 1..]),
        None => (None, text),
    }
}

/// `text` up to its first `/`, and what follows that `/` if there is one: `str::split_once`
/// with a byte search, which takes the parse from 250 instructions to 139 (callgrind).
fn split_first(text: &str) -> (&str, Option<&str>) {
    match text.bytes().position(|byte| byte == b'/') {
        Some(slash) => (&text[..slash], Some(&text[slash + 1..])),
        None => (text, None),
    }
}

async fn get_only_route(request: HttpRequest) -> HttpResponse {
    negotiate(&request)
        .unwrap_or_default()
        .respond_error(&method_not_allowed("GET"))
}

async fn unknown_route(request: HttpRequest) -> HttpResponse {
    let format = negotiate(&request).unwrap_or_default();
    format.respond_error(&OperationError::new(
        StatusCode::NOT_FOUND,
        IssueType::NotSupported,
        format!(
            "{} {} is not a FHIR endpoint of this server",
            request.method(),
            request.path()
        ),
    ))
}

fn method_not_allowed(allow: &'static str) -> OperationError {
    OperationError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        format!("this endpoint accepts {allow}"),
    )
    .with_header("Allow", allow)
}

/// Every operation call under the base path, as one service.
///
/// Operation paths are recognised by splitting the path, not by actix patterns: a pattern with
/// a `{segment}` runs a regex engine on every request that reaches it (12% of a native
/// operation's CPU in perf). The service is registered with a static prefix and a guard that
/// takes only operation paths, and it calls the operation without actix's nested scope and
/// extractor layers, each of which boxes a future per request.
#[derive(Debug)]
struct OperationRoutes {
    state: Arc<ServerState>,
    /// Registered in the App itself, outside the scope: the route then adds the state the
    /// scope would have added to the request's app data.
    at_root: bool,
}

impl HttpServiceFactory for OperationRoutes {
    fn register(self, config: &mut AppService) {
        // In the App, the base path is the route's prefix; in the scope, the scope's.
        let prefix = if self.at_root { &*self.state.base_path } else { "" }.to_owned();
        // Actix tries the guard only on paths under the prefix, so the base path is not
        // compared again here; the call parses the path below it.
        let operation_paths = guard::fn_guard(|context| ends_in_operation_code(context.head().uri.path()));
        let scope_data = self.at_root.then(|| {
            let mut data = actix_web::dev::Extensions::new();
            data.insert(web::Data::from(self.state.clone()));
            std::rc::Rc::new(data)
        });
        let worker = Rc::new(WorkerRoute::new(self.state));
        let service = fn_service(move |mut request: ServiceRequest| {
            if let Some(data) = &scope_data {
                request.add_data_container(data.clone());
            }
            operation_route(request, worker.clone())
        });
        config.register_service(
            ResourceDef::root_prefix(&prefix),
            Some(vec![Box::new(operation_paths)]),
            service,
            None,
        );
    }
}

/// A registry snapshot held on one worker (see [`WorkerRoute`]).
type WorkerSnapshot = Rc<Arc<Snapshot>>;

/// The operation route's own copy, on one worker, of what every call reads: the service and
/// the calls share it through `Rc` counts, which are plain additions, where sharing the server's
/// state, its registry's snapshot and its base path would take an atomic count of each.
struct WorkerRoute {
    state: Arc<ServerState>,
    /// The registry's snapshot as last read, and the registry's generation before that read.
    snapshot: RefCell<(u64, WorkerSnapshot)>,
    base_path: Rc<str>,
    public_base_url: Option<Rc<str>>,
}

impl WorkerRoute {
    fn new(state: Arc<ServerState>) -> WorkerRoute {
        let generation = state.registry.generation();
        let snapshot = Rc::new(state.registry.snapshot());
        WorkerRoute {
            base_path: Rc::from(&*state.base_path),
            public_base_url: state.public_base_url.as_deref().map(Rc::from),
            snapshot: RefCell::new((generation, snapshot)),
            state,
        }
    }

    /// The base URL a call's context reports.
    fn base_url(&self) -> BaseUrl {
        BaseUrl::shared(self.public_base_url.clone(), self.base_path.clone())
    }

    /// The registry's current snapshot: the one kept, unless the registry changed since.
    fn snapshot(&self) -> WorkerSnapshot {
        let generation = self.state.registry.generation();
        let mut kept = self.snapshot.borrow_mut();
        if kept.0 != generation {
            *kept = (generation, Rc::new(self.state.registry.snapshot()));
        }
        kept.1.clone()
    }
}

/// The future of an operation call: ready when the call finished while it was made.
type CallFuture = Either<
    Ready<Result<ServiceResponse, actix_web::Error>>,
    LocalBoxFuture<'static, Result<ServiceResponse, actix_web::Error>>,
>;

/// An operation call, from the request to the response.
///
/// Finding the operation and checking the caller and the method needs nothing awaited, so
/// every call does it here. A GET call then runs synchronously up to its handler's first
/// poll, and most native handlers finish in that poll: the call needs no future of its own.
/// As an async fn, this route's state machine was the largest block of code a `$hello` call
/// ran (108 of its 1,141 cache lines, more than the CPU's 64 KiB instruction cache holds); it
/// also stored every local that lives across an await in a state allocated per call. A call
/// with a body to read, or whose handler waits, goes on in one boxed future, which actix polls
/// at once with the task's waker: a wake-up asked for during the first poll is not lost.
fn operation_route(request: ServiceRequest, worker: Rc<WorkerRoute>) -> CallFuture {
    let format = match negotiate(request.request()) {
        Ok(format) => format,
        Err(error) => return respond_now(request.into_parts().0, ResponseFormat::default().respond_error(&error)),
    };
    let snapshot = worker.snapshot();
    let (operation, target) = match prepare(request.request(), &worker, &snapshot) {
        Ok(prepared) => prepared,
        Err(error) => return respond_now(request.into_parts().0, format.respond_error(&error)),
    };
    let (request, mut payload) = request.into_parts();
    // A handler that reads the request itself may read a GET's body too.
    if request.method() != Method::GET || operation.manual_request {
        let operation = operation.clone();
        let payload = web::Payload::from_request(&request, &mut payload).into_inner();
        return Either::Right(Box::pin(async move {
            let response = invoke(&request, payload?, &worker, &operation, target, format).await;
            Ok(ServiceResponse::new(request, response))
        }));
    }
    let started = start(
        operation,
        &request,
        target,
        worker.base_url(),
        None,
        worker.state.input_limits,
    );
    let StartedCall { mut future, context } = match started {
        Ok(started) => started,
        Err(error) => return respond_now(request, format.respond_error(&error)),
    };
    let waker_free = &mut Context::from_waker(Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(waker_free))) {
        Ok(Poll::Ready(output)) => respond_now(request, finish(format, output, &context)),
        Err(panic) => {
            let error = handler_panicked(&operation.definition, panic);
            respond_now(request, format.respond_error(&error))
        }
        Ok(Poll::Pending) => Either::Right(Box::pin(async move {
            let output = run(future, context.definition()).await;
            Ok(ServiceResponse::new(request, finish(format, output, &context)))
        })),
    }
}

fn respond_now(request: HttpRequest, response: HttpResponse) -> CallFuture {
    Either::Left(ready(Ok(ServiceResponse::new(request, response))))
}

/// Reads the target and the code (without `$`) of an operation call from its path.
fn target<'r>(request: &'r HttpRequest, state: &ServerState) -> Result<(Target, &'r str), OperationError> {
    let path = below_base(request.path(), &state.base_path)
        .and_then(OperationPath::parse)
        .ok_or_else(|| {
            OperationError::not_found(format!(
                "{} is not an operation call: expected [base]/$code, [base]/Type/$code, [base]/Type/id/$code or [base]/Type/id/_history/vid/$code",
                request.path()
            ))
        })?;
    let code = path.code;
    let resource_type = match path.resource_type {
        None => None,
        Some(name) => Some(state.resource_type_named(name).ok_or_else(|| {
            OperationError::new(
                StatusCode::NOT_FOUND,
                IssueType::NotSupported,
                format!("'{name}' is not a resource type this server knows"),
            )
        })?),
    };
    let id = path.id.map(str::to_owned);
    let version_id = path.version_id.map(str::to_owned);
    for (what, value) in [("resource id", &id), ("version id", &version_id)] {
        if let Some(value) = value
            && !is_id(value)
        {
            return Err(OperationError::invalid(format!(
                "'{value}' is not a valid {what}: expected 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'"
            )));
        }
    }
    let level = match (&resource_type, &id) {
        (None, _) => Level::System,
        (Some(_), None) => Level::Type,
        (Some(_), Some(_)) => Level::Instance,
    };
    Ok((
        Target {
            level,
            resource_type,
            id,
            version_id,
        },
        code,
    ))
}

fn resolve<'s>(
    snapshot: &'s Snapshot,
    tenant: &str,
    target: &Target,
    code: &str,
) -> Result<&'s Arc<RegisteredOperation>, OperationError> {
    match snapshot.resolve(tenant, target.level, target.resource_type.as_deref(), code) {
        Resolution::Found(operation) => Ok(operation),
        Resolution::WrongLevel(candidates) => {
            let supported: Vec<String> = candidates
                .iter()
                .map(|operation| operation.definition.describe_levels())
                .collect();
            let at = match &target.resource_type {
                Some(resource_type) => format!("the {} level of {resource_type}", target.level.name()),
                None => "the system level".to_owned(),
            };
            Err(OperationError::new(
                StatusCode::NOT_FOUND,
                IssueType::NotSupported,
                format!(
                    "operation ${code} is not supported at {at}; it is supported at: {}",
                    supported.join("; ")
                ),
            ))
        }
        Resolution::Unknown => Err(OperationError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            format!("operation ${code} is not known to this server"),
        )),
    }
}

/// Reads a request body, refusing one over `limit` bytes with 413.
pub async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, OperationError> {
    let too_large = || {
        OperationError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let unreadable = |error| OperationError::invalid(format!("the request body could not be read: {error}"));
    // A small body arrives as one chunk, which is kept as it is rather than copied.
    let first = match payload.next().await {
        None => return Ok(Bytes::new()),
        Some(chunk) => chunk.map_err(unreadable)?,
    };
    if first.len() > limit {
        return Err(too_large());
    }
    let Some(second) = payload.next().await else {
        return Ok(first);
    };
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).max(first.len()));
    body.extend_from_slice(&first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        let chunk = chunk.map_err(unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
        next = payload.next().await;
    }
    Ok(body.freeze())
}

/// Reads the body of a prepared call, then runs it to its response.
async fn invoke(
    request: &HttpRequest,
    payload: web::Payload,
    worker: &WorkerRoute,
    operation: &RegisteredOperation,
    target: Target,
    format: ResponseFormat,
) -> HttpResponse {
    let state = &*worker.state;
    let started = match read_body(request, payload, state.body_limit).await {
        Ok(body) => start(
            operation,
            request,
            target,
            worker.base_url(),
            Some(body),
            state.input_limits,
        ),
        Err(error) => Err(error),
    };
    match started {
        Ok(StartedCall { future, context }) => finish(format, run(future, &operation.definition).await, &context),
        Err(error) => format.respond_error(&error),
    }
}

/// Finds the operation a call names and checks that the caller may invoke it with the
/// request's method.
fn prepare<'s>(
    request: &HttpRequest,
    worker: &WorkerRoute,
    snapshot: &'s Snapshot,
) -> Result<(&'s Arc<RegisteredOperation>, Target), OperationError> {
    let state = &*worker.state;
    let (target, code) = target(request, state)?;
    let operation = resolve(snapshot, tenant_of(request), &target, code)?;
    let definition = &operation.definition;
    if let Some(authorizer) = &state.authorizer.0 {
        authorizer(request, definition, &target)?;
    }
    let allow = if definition.affects_state { "POST" } else { "GET, POST" };
    match *request.method() {
        Method::GET if definition.affects_state => Err(OperationError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("operation ${code} affects state, so it must be invoked with POST"),
        )
        .with_header("Allow", "POST")),
        Method::GET | Method::POST => Ok((operation, target)),
        _ => Err(method_not_allowed(allow)),
    }
}

/// The response to a call whose handler returned `output`, with the status and headers the
/// handler set on its context.
fn finish(
    format: ResponseFormat,
    output: Result<OperationOutput, OperationError>,
    context: &OperationContext,
) -> HttpResponse {
    let output = match output {
        Ok(output) => output,
        Err(error) => return format.respond_error(&error),
    };
    let (status, headers) = context.take_response_control();
    let mut response = match output {
        OperationOutput::Resource(body) => format.respond(status.unwrap_or(StatusCode::OK), &body),
        OperationOutput::Json(bytes) if !format.pretty => format.respond_bytes(status.unwrap_or(StatusCode::OK), bytes),
        OperationOutput::Http(response) => response,
        json => match json.into_json() {
            Some(Ok(body)) => format.respond(status.unwrap_or(StatusCode::OK), &body),
            Some(Err(error)) => format.respond_error(&error),
            None => format.respond_error(&OperationError::internal("the operation produced no body")),
        },
    };
    for (name, value) in headers {
        response.headers_mut().append(name, value);
    }
    response
}

/// A call whose input is bound and whose handler has started.
struct StartedCall {
    /// The handler's future, to await with [`run`].
    future: LocalBoxFuture<'static, Result<OperationOutput, OperationError>>,
    /// The context the handler runs with: the caller applies its response controls.
    context: OperationContext,
}

/// Binds a call's input to `operation`, builds its context and starts its handler (a panic
/// becomes a 500). The HTTP route and in-process callers (a Bot calling another operation)
/// share it. Not async: what it takes by value moves once, into the context, instead of
/// through the states of the futures that await the handler; those moves, into futures of
/// 900 bytes, were a fifth of a native call's own time in perf.
fn start(
    operation: &RegisteredOperation,
    request: &HttpRequest,
    target: Target,
    base_url: BaseUrl,
    body: Option<Bytes>,
    limits: InputLimits,
) -> Result<StartedCall, OperationError> {
    let definition = &operation.definition;
    let is_get = request.method() == Method::GET;
    let params = if operation.manual_request {
        Default::default()
    } else {
        let mut binder = Binder::new(definition).max_parameters(limits.max_parameters);
        binder.add_query(query_pairs(request.query_string()), is_get)?;
        if let Some(body) = body.as_ref().filter(|body| !body.is_empty()) {
            check_content_type(request)?;
            let json = parse_json_object_within(body, limits.max_json_depth)?;
            if resource_type_of(&json) == Some("Parameters") {
                binder.add_parameters(json)?;
            } else if let Err(json) = binder.add_bare_resource(json) {
                let given = resource_type_of(&json).unwrap_or("a JSON object without resourceType");
                return Err(OperationError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Invalid,
                    format!(
                        "expected a Parameters resource, got {given}; a bare resource is accepted only by operations with exactly one resource parameter"
                    ),
                ));
            }
        }
        binder.finish()?
    };
    let context = OperationContext::new(request.clone(), target, base_url, definition.clone());
    let call = OperationCall {
        context: context.clone(),
        params,
        body,
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| operation.handler.call(call))) {
        Ok(future) => Ok(StartedCall { future, context }),
        Err(panic) => Err(handler_panicked(definition, panic)),
    }
}

/// Awaits a started handler; a panic becomes a 500. A plain poll function rather than an
/// async fn: its awaiting adds no state machine of its own to the call's future.
fn run<'d>(
    mut future: LocalBoxFuture<'static, Result<OperationOutput, OperationError>>,
    definition: &'d OperationDefinition,
) -> impl Future<Output = Result<OperationOutput, OperationError>> + 'd {
    std::future::poll_fn(move |context| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(context))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(handler_panicked(definition, panic))),
        }
    })
}

/// Logs a handler's panic, and answers it with a 500 that does not reveal it.
fn handler_panicked(definition: &OperationDefinition, panic: Box<dyn std::any::Any + Send>) -> OperationError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(operation = %definition.id, "operation handler panicked: {message}");
    OperationError::internal(format!(
        "operation ${} failed unexpectedly; the server logged the details",
        definition.code
    ))
}

/// Invokes an operation in process, without HTTP: `request` carries the method, URI,
/// headers and app data (with the caller's [`crate::context::Principal`]) a route would see.
/// The operation's GET rule still applies.
pub async fn call_operation(
    operation: &RegisteredOperation,
    request: &HttpRequest,
    target: Target,
    base_url: BaseUrl,
    body: Option<Bytes>,
    limits: InputLimits,
) -> Result<OperationOutput, OperationError> {
    if request.method() == Method::GET && operation.definition.affects_state {
        return Err(OperationError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!(
                "operation ${} affects state, so it must be invoked with POST",
                operation.definition.code
            ),
        ));
    }
    let started = start(operation, request, target, base_url, body, limits)?;
    run(started.future, &operation.definition).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Option<OperationPath<'_>> {
        below_base(path, "/fhir/R4").and_then(OperationPath::parse)
    }

    #[test]
    fn operation_paths_at_every_level_are_recognised() {
        let path = |resource_type, id, version_id, code| {
            Some(OperationPath {
                resource_type,
                id,
                version_id,
                code,
            })
        };
        assert_eq!(parse("/fhir/R4/$export"), path(None, None, None, "export"));
        assert_eq!(
            parse("/fhir/R4/Patient/%24match"),
            path(Some("Patient"), None, None, "match")
        );
        assert_eq!(
            parse("/fhir/R4/Patient/p1/$everything"),
            path(Some("Patient"), Some("p1"), None, "everything")
        );
        assert_eq!(
            parse("/fhir/R4/Patient/p1/_history/2/$meta"),
            path(Some("Patient"), Some("p1"), Some("2"), "meta")
        );
        // An empty segment is the id's to refuse (400), not the router's.
        assert_eq!(
            parse("/fhir/R4/Patient//$everything"),
            path(Some("Patient"), Some(""), None, "everything")
        );
    }

    #[test]
    fn the_route_takes_every_path_that_ends_in_a_code() {
        for path in [
            "/$export",
            "/Patient/%24match",
            "/Patient/p1/$everything",
            "/Patient/p1/x/$meta",
        ] {
            assert!(ends_in_operation_code(path), "{path}");
        }
        for path in [
            "",
            "/",
            "/metadata",
            "/Patient/p1",
            "/Patient/$everything/",
            "/Patient/p$1",
        ] {
            assert!(!ends_in_operation_code(path), "{path}");
        }
    }

    #[test]
    fn other_paths_are_not_operations() {
        for path in [
            "/fhir/R4/metadata",
            "/fhir/R4/Patient",
            "/fhir/R4/Patient/p1",
            "/fhir/R4/Patient/$everything/",
            "/fhir/R4/Patient/p1/x/$meta",
            "/fhir/R4/Patient/p1/_history/2/x/$meta",
            "/fhir/R4/Patient/p1/_history/$meta",
            "/fhir/R4/Patient/p1/history/2/$meta",
            "/fhir/R4x/$export",
            "/other/$export",
            "/fhir/R4",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
        assert_eq!(
            below_base("/$export", "")
                .and_then(OperationPath::parse)
                .map(|path| path.code),
            Some("export")
        );
    }
}
