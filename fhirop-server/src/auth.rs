//! Authentication: every request but `GET [base]/metadata` carries `Authorization: Bearer
//! <token>`. The admin token (from `FHIROP_ADMIN_TOKEN`, or generated on first start into
//! `<data-dir>/admin-token`) acts as an administrator of the built-in default project.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::web;
use fhirop::context::{Caller, DEFAULT_TENANT, Principal};
use fhirop::format::{ResponseFormat, negotiate};
use fhirop::outcome::{IssueType, OperationError};
use futures_util::future::{Either, LocalBoxFuture};

use fhirop::store::{ReadResult, StoreHandle};

use crate::access::Access;
use crate::limits::RateLimiter;
use crate::projects::{SYSTEM_TENANT, TOKEN_PATH};
use crate::tokens::TokenSigner;

/// The file the generated admin token is kept in, inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The reference the admin token acts as.
pub const ADMIN_CALLER: &str = "ClientApplication/admin";

/// Where the admin token came from (what start-up tells the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenOrigin {
    /// `FHIROP_ADMIN_TOKEN` / `--admin-token`.
    Configured,
    /// Generated now and written to this file: the one time it is shown.
    Generated(PathBuf),
    /// Read from this file, written by an earlier start.
    Stored(PathBuf),
}

/// The admin token: configured, else the data directory's file, else a new one written there
/// (mode 0600).
pub fn admin_token(configured: Option<&str>, data_dir: &Path) -> std::io::Result<(String, AdminTokenOrigin)> {
    if let Some(token) = configured.filter(|token| !token.trim().is_empty()) {
        return Ok((token.trim().to_owned(), AdminTokenOrigin::Configured));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_owned(), AdminTokenOrigin::Stored(path))),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(data_dir)?;
    // Two v4 UUIDs: 244 bits from the operating system's random source.
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok((token, AdminTokenOrigin::Generated(path)))
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let difference = given
        .iter()
        .zip(expected)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// What the authentication middleware checks tokens against.
#[derive(Debug)]
pub struct Authenticator {
    admin_token: String,
    /// Who the admin token stands for: an administrator of the default project.
    admin_principal: Principal,
    metadata_path: String,
    smart_configuration_path: String,
    rate_limiter: Option<RateLimiter>,
    signer: TokenSigner,
    store: StoreHandle,
}

impl Authenticator {
    /// Tokens are the admin token or ones `signer` signed for clients that still exist in
    /// `store`; `GET {base_path}/metadata`, the SMART configuration and the token endpoint are
    /// open; every client's rate is held to `rate_limiter`'s.
    pub fn new(
        admin_token: String,
        base_path: &str,
        rate_limiter: Option<RateLimiter>,
        signer: TokenSigner,
        store: StoreHandle,
    ) -> Authenticator {
        let base_path = base_path.trim_end_matches('/');
        Authenticator {
            admin_token,
            admin_principal: Principal {
                tenant: DEFAULT_TENANT.into(),
                caller: Caller {
                    reference: ADMIN_CALLER.into(),
                },
                grants: Some(Arc::new(Access::administrator())),
            },
            metadata_path: format!("{base_path}/metadata"),
            smart_configuration_path: format!("{base_path}/.well-known/smart-configuration"),
            rate_limiter,
            signer,
            store,
        }
    }

    /// Counts a request against `client`'s rate.
    fn admit(&self, client: &str) -> Result<(), OperationError> {
        match &self.rate_limiter {
            Some(limiter) => limiter.check(client),
            None => Ok(()),
        }
    }

    fn is_open(&self, request: &ServiceRequest) -> bool {
        let path = request.path();
        match *request.method() {
            actix_web::http::Method::GET => path == self.metadata_path || path == self.smart_configuration_path,
            // The token endpoint authenticates its clients itself.
            actix_web::http::Method::POST => path == TOKEN_PATH,
            _ => false,
        }
    }

    /// Whether the `Authorization` header's bytes carry the admin token (read as
    /// [`bearer_token`] reads the header's text).
    fn is_admin(&self, authorization: &[u8]) -> bool {
        let Some(space) = authorization.iter().position(|&byte| byte == b' ') else {
            return false;
        };
        let (scheme, token) = authorization.split_at(space);
        scheme.eq_ignore_ascii_case(b"bearer") && constant_time_eq(token.trim_ascii(), self.admin_token.as_bytes())
    }

    /// The caller a bearer token stands for: the admin, or a client whose signed token has
    /// not expired and whose ClientApplication and membership still exist (deleting either
    /// revokes its tokens at once).
    async fn caller(&self, authorization: Option<&str>) -> Result<Principal, OperationError> {
        let token = bearer_token(authorization)?;
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(self.admin_principal.clone());
        }
        let invalid = || unauthorized("the bearer token is not valid", Some("invalid_token"));
        let claims = self.signer.verify(token).ok_or_else(invalid)?;
        let client_id = claims.subject.strip_prefix("ClientApplication/").ok_or_else(invalid)?;
        let client = self.store.read(SYSTEM_TENANT, "ClientApplication", client_id).await?;
        let membership = self
            .store
            .read(&claims.project, "ProjectMembership", &claims.membership)
            .await?;
        let (ReadResult::Found(_), ReadResult::Found(membership)) = (client, membership) else {
            return Err(invalid());
        };
        let membership = membership.resource.unwrap_or_default();
        // The membership's current policy, not the one the token was issued under.
        let policy = match membership
            .pointer("/accessPolicy/reference")
            .and_then(serde_json::Value::as_str)
            .and_then(|reference| reference.strip_prefix("AccessPolicy/"))
        {
            Some(id) => match self.store.read(&claims.project, "AccessPolicy", id).await? {
                ReadResult::Found(stored) => stored.resource,
                // A policy that is gone grants nothing rather than everything.
                _ => Some(serde_json::json!({"resourceType": "AccessPolicy", "resource": []})),
            },
            None => None,
        };
        Ok(Principal {
            tenant: claims.project.into(),
            caller: Caller {
                reference: claims.subject.into(),
            },
            grants: Some(Arc::new(Access::from_membership(&membership, policy.as_ref()))),
        })
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(authorization: Option<&str>) -> Result<&str, OperationError> {
    let Some(authorization) = authorization else {
        return Err(unauthorized("this request needs Authorization: Bearer <token>", None));
    };
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthorized("the Authorization header must use the Bearer scheme", None))
}

fn unauthorized(message: &str, error: Option<&str>) -> OperationError {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"fhirop\", error=\"{error}\""),
        None => "Bearer realm=\"fhirop\"".to_owned(),
    };
    OperationError::new(StatusCode::UNAUTHORIZED, IssueType::Login, message).with_header("WWW-Authenticate", challenge)
}

/// The authentication middleware (`App::wrap(Authentication::new(..))`): resolves the caller,
/// its tenant and its access into the request's [`Principal`], or answers 401 with an
/// OperationOutcome.
#[derive(Debug, Clone)]
pub struct Authentication {
    authenticator: web::Data<Authenticator>,
}

impl Authentication {
    /// Checks every request with `authenticator`.
    pub fn new(authenticator: web::Data<Authenticator>) -> Authentication {
        Authentication { authenticator }
    }
}

impl<S> Transform<S, ServiceRequest> for Authentication
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = AuthenticationService<S>;
    type InitError = ();
    type Future = Ready<Result<AuthenticationService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthenticationService {
            service: Rc::new(service),
            admin: self.authenticator.admin_principal.clone().container(),
            authenticator: self.authenticator.clone(),
        }))
    }
}

/// [`Authentication`] in front of the service `S`.
#[derive(Debug)]
pub struct AuthenticationService<S> {
    service: Rc<S>,
    /// The admin's principal, in the container every admin request shares (one per worker:
    /// a container is not `Send`).
    admin: Rc<actix_web::dev::Extensions>,
    authenticator: web::Data<Authenticator>,
}

/// The inner service's responses are boxed already, so the middleware passes them on as they
/// are: a body type of its own (`EitherBody`) would be mapped on every response and unwrapped
/// again by the dispatcher.
impl<S> Service<ServiceRequest> for AuthenticationService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Either<S::Future, LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>>;

    forward_ready!(service);

    fn call(&self, mut request: ServiceRequest) -> Self::Future {
        // The admin token needs nothing awaited: the request goes on without a boxed future.
        let authenticator = &self.authenticator;
        let admin = request.path() != TOKEN_PATH
            && !authenticator.is_open(&request)
            && request
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .is_some_and(|authorization| authenticator.is_admin(authorization.as_bytes()));
        if admin {
            return match authenticator.admit(ADMIN_CALLER) {
                Ok(()) => {
                    request.add_data_container(self.admin.clone());
                    Either::Left(self.service.call(request))
                }
                Err(throttled) => {
                    let response = request.into_response(ResponseFormat::default().respond_error(&throttled));
                    Either::Right(Box::pin(ready(Ok(response))))
                }
            };
        }
        let (service, authenticator) = (self.service.clone(), self.authenticator.clone());
        Either::Right(Box::pin(async move {
            authenticate(request, &authenticator, &*service).await
        }))
    }
}

fn authorization(request: &ServiceRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
}

/// Every request but the admin's: open endpoints, the token endpoint, client tokens (which
/// read the store) and failures.
async fn authenticate<S>(
    mut request: ServiceRequest,
    authenticator: &Authenticator,
    service: &S,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    let authorization = authorization(&request);
    // The rate-limit key of the address the request comes from, built only when needed.
    let peer_key = |request: &ServiceRequest| {
        let ip = request
            .peer_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        format!("address {ip}")
    };
    if request.path() == TOKEN_PATH {
        // The token endpoint checks client secrets itself: guessing them is held to the
        // rate of the address they come from.
        if let Err(throttled) = authenticator.admit(&peer_key(&request)) {
            let response = ResponseFormat::default().respond_error(&throttled);
            return Ok(request.into_response(response));
        }
    }
    if authenticator.is_open(&request) {
        // Open to anyone; a caller who says who it is sees its own project (its own
        // operations in /metadata).
        if authorization.is_some()
            && let Ok(principal) = authenticator.caller(authorization).await
        {
            request.add_data_container(principal.container());
        }
        return service.call(request).await;
    }
    // Failed attempts count against the address they come from, so guessing tokens is held
    // to the same rate as using one (`peer_key`, above).
    let admitted = authenticator
        .caller(authorization)
        .await
        .and_then(|principal| {
            authenticator.admit(&principal.caller.reference)?;
            Ok(principal)
        })
        .map_err(|error| match authenticator.admit(&peer_key(&request)) {
            Err(throttled) if error.status == StatusCode::UNAUTHORIZED => throttled,
            _ => error,
        });
    match admitted {
        Ok(principal) => {
            request.add_data_container(principal.container());
            service.call(request).await
        }
        Err(error) => {
            let format = negotiate(request.request()).unwrap_or_default();
            let response = ResponseFormat::respond_error(format, &error);
            Ok(request.into_response(response))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
    }

    #[test]
    fn the_admin_token_is_generated_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("fhirop-auth-{}", uuid::Uuid::new_v4()));
        let (token, origin) = admin_token(None, &dir).unwrap();
        assert_eq!(origin, AdminTokenOrigin::Generated(dir.join(ADMIN_TOKEN_FILE)));
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, origin) = admin_token(None, &dir).unwrap();
        assert_eq!(
            (again, origin),
            (token, AdminTokenOrigin::Stored(dir.join(ADMIN_TOKEN_FILE)))
        );
        assert_eq!(
            admin_token(Some("configured"), &dir).unwrap(),
            ("configured".to_owned(), AdminTokenOrigin::Configured)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_admin_token_is_recognised_in_the_header_bytes_as_bearer_token_reads_it() {
        let signer = TokenSigner::ephemeral();
        let store = StoreHandle(std::sync::Arc::new(
            crate::store::SqliteStore::in_memory().await.unwrap(),
        ));
        let authenticator = Authenticator::new("right".into(), "/fhir/R4", None, signer, store);
        for (header, admin) in [
            ("Bearer right", true),
            ("bearer right", true),
            ("BEARER  right ", true),
            ("Bearer wrong", false),
            ("Bearer righter", false),
            ("Basic right", false),
            ("right", false),
            ("Bearer", false),
            ("Bearerright", false),
        ] {
            assert_eq!(authenticator.is_admin(header.as_bytes()), admin, "{header}");
            let by_text = bearer_token(Some(header)).is_ok_and(|token| token == "right");
            assert_eq!(by_text, admin, "{header}");
        }
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        assert_eq!(bearer_token(Some("Bearer right")).unwrap(), "right");
        assert_eq!(bearer_token(Some("bearer right")).unwrap(), "right");
        for bad in [None, Some("Basic right"), Some("right"), Some("Bearer")] {
            let error = bearer_token(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED);
            assert_eq!(error.outcome.issues[0].code, IssueType::Login);
        }
    }
}
