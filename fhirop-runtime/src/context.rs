//! What a handler knows about its call, and how it shapes the response (IBM's
//! `FHIROperationContext`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use bytes::Bytes;

use crate::definition::{Level, OperationDefinition};
use crate::outcome::OperationError;

/// Who is calling and for which tenant, as the server's authentication established it.
///
/// It travels as a data container of the request ([`Principal::container`]), not in its
/// extensions: actix starts every request with empty extensions, so a first insert allocates
/// a table and boxes the value (callgrind: 440 instructions a call), while a fixed identity's
/// container is built once and shared.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant (IBM) or project (Medplum) the request belongs to: borrowed when it is a
    /// fixed name.
    pub tenant: Cow<'static, str>,
    /// Who is calling.
    pub caller: Caller,
    /// What the server's access policies grant the caller, in the server's own terms: read
    /// back with [`Principal::grants`]. Shared, so that a fixed identity is set without a copy.
    pub grants: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Principal {
    /// The grants, if the server set grants of type `T`.
    pub fn grants<T: 'static>(&self) -> Option<&T> {
        self.grants.as_deref()?.downcast_ref()
    }

    /// The principal of `request`, if its authentication set one.
    pub fn of(request: &HttpRequest) -> Option<&Principal> {
        request.app_data::<Principal>()
    }

    /// A data container holding this principal, to add to requests with
    /// `ServiceRequest::add_data_container` (or `TestRequest::app_data` for the principal
    /// alone): [`Principal::of`] reads it from there.
    pub fn container(self) -> Rc<actix_web::dev::Extensions> {
        let mut container = actix_web::dev::Extensions::new();
        container.insert(self);
        Rc::new(container)
    }
}

/// The identity of the caller, as the server's authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A FHIR reference to the caller (`ClientApplication/…`, `Practitioner/…`): borrowed when
    /// it is a fixed one, such as an administrator's, so that naming it costs no allocation.
    pub reference: Cow<'static, str>,
}

/// Everything a handler may want to know about its call, and the controls it has over the
/// response (status, headers). Cheap to clone.
#[derive(Clone)]
pub struct OperationContext {
    inner: Rc<ContextInner>,
}

struct ContextInner {
    request: HttpRequest,
    level: Level,
    resource_type: Option<Cow<'static, str>>,
    id: Option<String>,
    version_id: Option<String>,
    /// Where the base URL comes from; built on first use (most calls never need it).
    base_url: BaseUrl,
    definition: std::sync::Arc<OperationDefinition>,
    response: RefCell<ResponseControl>,
}

#[derive(Default)]
struct ResponseControl {
    status: Option<StatusCode>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for OperationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationContext")
            .field("method", self.method())
            .field("uri", self.uri())
            .field("level", &self.inner.level)
            .field("resource_type", &self.inner.resource_type)
            .field("id", &self.inner.id)
            .field("version_id", &self.inner.version_id)
            .finish_non_exhaustive()
    }
}

/// The server's base URL: configured, or taken from the request's scheme and host when first
/// asked for.
#[derive(Debug)]
pub struct BaseUrl {
    /// Shared with the worker's route: a call takes a count, not a copy.
    configured: Option<Rc<str>>,
    base_path: Rc<str>,
    resolved: std::cell::OnceCell<String>,
}

impl BaseUrl {
    /// A base URL that is `configured`, or derived from the request and `base_path`.
    pub fn new(configured: Option<String>, base_path: &str) -> BaseUrl {
        BaseUrl::shared(configured.map(Into::into), base_path.into())
    }

    pub(crate) fn shared(configured: Option<Rc<str>>, base_path: Rc<str>) -> BaseUrl {
        BaseUrl {
            configured,
            base_path,
            resolved: std::cell::OnceCell::new(),
        }
    }

    fn resolve(&self, request: &HttpRequest) -> &str {
        self.resolved
            .get_or_init(|| base_url_of(self.configured.as_deref(), &self.base_path, request))
    }
}

/// The base URL as clients see it: `configured`, or the request's scheme and host followed by
/// `base_path`.
pub(crate) fn base_url_of(configured: Option<&str>, base_path: &str, request: &HttpRequest) -> String {
    match configured {
        Some(url) => url.to_owned(),
        None => format!("{}{base_path}", request_origin(request)),
    }
}

/// `scheme://host` as the client addressed the server, resolved as actix's `ConnectionInfo`
/// resolves them: the first `proto` and `host` of `Forwarded`, else the first value of
/// `X-Forwarded-Proto` and `X-Forwarded-Host`, else the URI's scheme (`https` on a TLS
/// listener, else `http`) and the `Host` header (else the URI's authority, else the app's
/// configured host).
///
/// Read in place: `HttpRequest::connection_info` also formats the peer's address and stores
/// the whole in the request's extensions, about 4,000 instructions per call that wanted only
/// these two.
pub fn request_origin(request: &HttpRequest) -> String {
    use actix_web::http::header;
    fn unquote(value: &str) -> &str {
        value.trim().trim_start_matches('"').trim_end_matches('"')
    }
    let forwarded = |wanted: &str| {
        request
            .headers()
            .get_all(header::FORWARDED)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .flat_map(|values| values.split(','))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim().eq_ignore_ascii_case(wanted).then(|| unquote(value))
            })
    };
    let first_value = |name: &str| {
        let value = request.headers().get(name)?.to_str().ok()?;
        value.split(',').next().map(str::trim)
    };
    let scheme = forwarded("proto")
        .or_else(|| first_value("x-forwarded-proto"))
        .or_else(|| request.uri().scheme_str())
        .unwrap_or(if request.app_config().secure() { "https" } else { "http" });
    let host = forwarded("host")
        .or_else(|| first_value("x-forwarded-host"))
        .or_else(|| request.headers().get(header::HOST)?.to_str().ok())
        .or_else(|| request.uri().authority().map(|authority| authority.as_str()))
        .unwrap_or_else(|| request.app_config().host());
    format!("{scheme}://{host}")
}

/// Where the call was addressed: level, resource type, id and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// System, type or instance.
    pub level: Level,
    /// The resource type in the URL: borrowed when it is one of R4's.
    pub resource_type: Option<Cow<'static, str>>,
    /// The logical id in the URL.
    pub id: Option<String>,
    /// The version id in the URL (`_history/{vid}`).
    pub version_id: Option<String>,
}

impl OperationContext {
    /// A context for a call (built by the runtime).
    pub fn new(
        request: HttpRequest,
        target: Target,
        base_url: BaseUrl,
        definition: std::sync::Arc<OperationDefinition>,
    ) -> OperationContext {
        OperationContext {
            inner: Rc::new(ContextInner {
                request,
                level: target.level,
                resource_type: target.resource_type,
                id: target.id,
                version_id: target.version_id,
                base_url,
                definition,
                response: RefCell::default(),
            }),
        }
    }

    /// The HTTP method (GET or POST).
    pub fn method(&self) -> &Method {
        self.inner.request.method()
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        self.inner.request.uri()
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.request.headers()
    }

    /// The underlying actix request (its `app_data`, connection info, ...).
    pub fn request(&self) -> &HttpRequest {
        &self.inner.request
    }

    /// Shared application state registered with actix's `App::app_data`.
    pub fn app_data<T: 'static>(&self) -> Option<&T> {
        self.inner.request.app_data::<T>()
    }

    /// The level the operation was invoked at.
    pub fn level(&self) -> Level {
        self.inner.level
    }

    /// The resource type of a type or instance call.
    pub fn resource_type(&self) -> Option<&str> {
        self.inner.resource_type.as_deref()
    }

    /// The logical id of an instance call.
    pub fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }

    /// The version id of a call at `[base]/Type/id/_history/vid/$op`.
    pub fn version_id(&self) -> Option<&str> {
        self.inner.version_id.as_deref()
    }

    /// The server's base URL (`http://host/fhir/R4`), for building references and links.
    pub fn base_url(&self) -> &str {
        self.inner.base_url.resolve(&self.inner.request)
    }

    /// The resource store the server registered (`App::app_data(StoreHandle(..))`).
    pub fn store(&self) -> Result<&crate::store::StoreHandle, OperationError> {
        self.app_data::<crate::store::StoreHandle>()
            .ok_or_else(|| OperationError::internal("this server has no resource store"))
    }

    /// The tenant (IBM) or project (Medplum) the call belongs to.
    pub fn tenant(&self) -> String {
        tenant_of(&self.inner.request).to_owned()
    }

    /// Who is calling, as the server's authentication established it (the request's
    /// [`Principal`]); `None` on a server without authentication.
    pub fn caller(&self) -> Option<Caller> {
        Principal::of(&self.inner.request).map(|principal| principal.caller.clone())
    }

    /// The definition of the operation being invoked.
    pub fn definition(&self) -> &OperationDefinition {
        &self.inner.definition
    }

    /// Sets the response status (for example 202 Accepted; IBM's mutated status).
    pub fn set_status(&self, status: StatusCode) {
        self.inner.response.borrow_mut().status = Some(status);
    }

    /// Adds a response header. Returns an error for a name or value HTTP does not allow.
    pub fn insert_header(&self, name: &str, value: &str) -> Result<(), OperationError> {
        let name = HeaderName::try_from(name)
            .map_err(|_| OperationError::internal(format!("'{name}' is not a valid header name")))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| OperationError::internal(format!("the value of header '{name}' is not valid")))?;
        self.inner.response.borrow_mut().headers.push((name, value));
        Ok(())
    }

    /// The status and headers the handler asked for (taken once by the runtime).
    pub(crate) fn take_response_control(&self) -> (Option<StatusCode>, Vec<(HeaderName, HeaderValue)>) {
        let mut control = self.inner.response.borrow_mut();
        (control.status.take(), std::mem::take(&mut control.headers))
    }
}

/// The tenant of `request`: its [`Principal`]'s, else [`DEFAULT_TENANT`].
pub fn tenant_of(request: &HttpRequest) -> &str {
    Principal::of(request).map_or(DEFAULT_TENANT, |principal| &principal.tenant)
}

/// The tenant of requests nobody assigned to one.
pub const DEFAULT_TENANT: &str = "default";

/// The resource addressed by an instance-level call (HAPI's `@IdParam IdType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdParam {
    /// The resource type in the URL.
    pub resource_type: String,
    /// The logical id.
    pub id: String,
    /// The version, for `[base]/Type/id/_history/vid/$op`.
    pub version_id: Option<String>,
}

impl IdParam {
    /// `Type/id` or `Type/id/_history/vid`.
    pub fn to_reference(&self) -> String {
        match &self.version_id {
            Some(version_id) => format!("{}/{}/_history/{version_id}", self.resource_type, self.id),
            None => format!("{}/{}", self.resource_type, self.id),
        }
    }
}

/// How an `#[id_param]` argument is read from the call: `IdParam` for instance-only
/// operations, `Option<IdParam>` for operations that also run at the type or system level.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an #[id_param] argument",
    note = "use `IdParam`, or `Option<IdParam>` when the operation also runs at the type or system level"
)]
pub trait FromIdParam: Sized {
    /// Reads the id from the context.
    fn from_context(context: &OperationContext) -> Result<Self, OperationError>;
}

fn id_param(context: &OperationContext) -> Option<IdParam> {
    Some(IdParam {
        resource_type: context.resource_type()?.to_owned(),
        id: context.id()?.to_owned(),
        version_id: context.version_id().map(Into::into),
    })
}

impl FromIdParam for IdParam {
    fn from_context(context: &OperationContext) -> Result<IdParam, OperationError> {
        id_param(context).ok_or_else(|| OperationError::invalid("this operation needs a resource id in the URL"))
    }
}

impl FromIdParam for Option<IdParam> {
    fn from_context(context: &OperationContext) -> Result<Option<IdParam>, OperationError> {
        Ok(id_param(context))
    }
}

/// The raw request body, for `manual_request` operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawBody(pub Bytes);

/// Arguments a handler may take besides its parameters: the context, the actix request, and
/// (with `manual_request`) the raw body.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an operation argument",
    note = "mark parameters with #[op_param] or #[id_param]; other arguments may be OperationContext, HttpRequest or RawBody"
)]
pub trait FromCall: Sized {
    /// Takes the argument from the call.
    fn from_call(context: &OperationContext, body: &mut Option<Bytes>) -> Self;
}

impl FromCall for OperationContext {
    fn from_call(context: &OperationContext, _body: &mut Option<Bytes>) -> Self {
        context.clone()
    }
}

impl FromCall for HttpRequest {
    fn from_call(context: &OperationContext, _body: &mut Option<Bytes>) -> Self {
        context.request().clone()
    }
}

impl FromCall for RawBody {
    fn from_call(_context: &OperationContext, body: &mut Option<Bytes>) -> Self {
        RawBody(body.take().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_principal_is_read_back_from_its_container_with_its_typed_grants() {
        #[derive(Debug, PartialEq)]
        struct Grants(&'static str);
        let principal = Principal {
            tenant: "project-a".into(),
            caller: Caller {
                reference: "ClientApplication/c1".into(),
            },
            grants: Some(Arc::new(Grants("read Patient"))),
        };
        let mut request = TestRequest::default().to_srv_request();
        request.add_data_container(principal.container());
        let request = request.request();
        assert_eq!(tenant_of(request), "project-a");
        let found = Principal::of(request).map(|principal| (&principal.caller.reference, principal.grants::<Grants>()));
        assert_eq!(
            found,
            Some((&"ClientApplication/c1".into(), Some(&Grants("read Patient"))))
        );
        // Grants of another type are not these.
        assert_eq!(
            Principal::of(request).and_then(|principal| principal.grants::<String>()),
            None
        );
        // A request nobody authenticated has no principal and the default tenant.
        let anonymous = TestRequest::default().to_http_request();
        assert!(Principal::of(&anonymous).is_none());
        assert_eq!(tenant_of(&anonymous), DEFAULT_TENANT);
    }

    #[test]
    fn the_origin_is_what_actix_connection_info_resolves() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("host", "fhir.example.org")],
            &[("host", "fhir.example.org:8443")],
            &[("host", "a"), ("forwarded", "for=1.2.3.4; proto=https; host=b")],
            &[
                ("host", "a"),
                ("forwarded", "for=1.2.3.4, for=5.6.7.8; Proto=\"https\";HOST=\"b:1\""),
            ],
            &[
                ("host", "a"),
                ("forwarded", "for=1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ],
            &[
                ("host", "a"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", " c , d"),
            ],
            &[("host", "a"), ("forwarded", "proto=http"), ("x-forwarded-host", "e")],
            &[
                ("host", "a"),
                ("forwarded", "host=f"),
                ("forwarded", "host=g; proto=https"),
            ],
            &[("host", "a"), ("forwarded", "by=x;proto"), ("forwarded", "=https")],
        ];
        for headers in cases {
            for uri in ["/fhir/R4/metadata", "https://h.example:9/fhir/R4/metadata"] {
                let mut builder = TestRequest::default().uri(uri);
                for (name, value) in *headers {
                    builder = builder.append_header((*name, *value));
                }
                let request = builder.to_http_request();
                let info = request.connection_info().clone();
                assert_eq!(
                    request_origin(&request),
                    format!("{}://{}", info.scheme(), info.host()),
                    "{uri} {headers:?}"
                );
            }
        }
    }
}
