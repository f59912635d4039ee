//! OperationOutcome and the error every failing step of a request turns into.

use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The issue caused the action to fail.
    Fatal,
    /// The issue is sufficiently important to cause the action to fail.
    Error,
    /// The issue is not important enough to make the action fail.
    Warning,
    /// Information only.
    Information,
}

impl Severity {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code`: the FHIR IssueType value set (the codes fhirop uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueType {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue in the content such as wrong namespace or unparseable content.
    Structure,
    /// A required element is missing.
    Required,
    /// An element or header value is invalid.
    Value,
    /// The client needs to initiate an authentication process.
    Login,
    /// The user or system was not able to be authenticated.
    Unknown,
    /// The user does not have the rights to perform this action.
    Forbidden,
    /// Processing issues, not otherwise classified.
    Processing,
    /// The interaction, operation, resource or profile is not supported.
    NotSupported,
    /// An attempt was made to create a duplicate record.
    Duplicate,
    /// The reference provided was not resolved.
    NotFound,
    /// The reference pointed to content that is no longer available.
    Deleted,
    /// Provided content is too long.
    TooLong,
    /// The operation would be too costly to perform.
    TooCostly,
    /// Content could not be accepted because of an edit conflict.
    Conflict,
    /// An internal timeout has occurred.
    Timeout,
    /// The system is not prepared to handle this request due to load management.
    Throttled,
    /// An unexpected internal error has occurred.
    Exception,
    /// A message about the processing, not an error.
    Informational,
}

impl IssueType {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Forbidden => "forbidden",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::TooCostly => "too-costly",
            IssueType::Conflict => "conflict",
            IssueType::Timeout => "timeout",
            IssueType::Throttled => "throttled",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
        }
    }

    /// The issue type for a FHIR code, if fhirop knows it.
    pub fn from_code(code: &str) -> Option<IssueType> {
        const ALL: [IssueType; 19] = [
            IssueType::Invalid,
            IssueType::Structure,
            IssueType::Required,
            IssueType::Value,
            IssueType::Login,
            IssueType::Unknown,
            IssueType::Forbidden,
            IssueType::Processing,
            IssueType::NotSupported,
            IssueType::Duplicate,
            IssueType::NotFound,
            IssueType::Deleted,
            IssueType::TooLong,
            IssueType::TooCostly,
            IssueType::Conflict,
            IssueType::Timeout,
            IssueType::Throttled,
            IssueType::Exception,
            IssueType::Informational,
        ];
        ALL.into_iter().find(|issue_type| issue_type.code() == code)
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// How bad it is.
    pub severity: Severity,
    /// What kind of problem it is.
    pub code: IssueType,
    /// Human-readable text (`details.text`).
    pub details: Option<String>,
    /// Extra information for the developer (`diagnostics`).
    pub diagnostics: Option<String>,
    /// Where the problem is: FHIRPath expressions, or operation parameter names.
    pub expression: Vec<String>,
}

impl Issue {
    /// An `error` issue with diagnostics.
    #[cold]
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            details: None,
            diagnostics: Some(diagnostics.into()),
            expression: Vec::new(),
        }
    }

    /// Names where the problem is (`issue.expression`).
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression.push(expression.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), self.severity.code().into());
        issue.insert("code".into(), self.code.code().into());
        if let Some(details) = &self.details {
            issue.insert("details".into(), json!({ "text": details }));
        }
        if let Some(diagnostics) = &self.diagnostics {
            issue.insert("diagnostics".into(), diagnostics.as_str().into());
        }
        if !self.expression.is_empty() {
            issue.insert("expression".into(), self.expression.clone().into());
        }
        Value::Object(issue)
    }
}

/// An `OperationOutcome` resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationOutcome {
    /// The issues, at least one for a valid resource.
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    /// An outcome with one issue.
    pub fn single(issue: Issue) -> OperationOutcome {
        OperationOutcome { issues: vec![issue] }
    }

    /// An informational outcome with `details.text`, like IBM's `$healthcheck` "All OK".
    pub fn information(text: impl Into<String>) -> OperationOutcome {
        OperationOutcome::single(Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            details: Some(text.into()),
            diagnostics: None,
            expression: Vec::new(),
        })
    }

    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": self.issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Why an operation failed: an HTTP status and the OperationOutcome that explains it.
///
/// Every failure between the socket and the handler (routing, method, binding,
/// validation) is one of these, and a handler returns one with `Err(..)`.
#[derive(Debug, Clone)]
pub struct OperationError {
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// The body of the response.
    pub outcome: OperationOutcome,
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl OperationError {
    /// An error with one `error` issue.
    #[cold]
    pub fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> OperationError {
        OperationError::from_issues(status, vec![Issue::error(code, diagnostics)])
    }

    /// An error carrying several issues at once (every binding problem of a request).
    #[cold]
    pub fn from_issues(status: StatusCode, issues: Vec<Issue>) -> OperationError {
        OperationError {
            status,
            outcome: OperationOutcome { issues },
            headers: Vec::new(),
        }
    }

    /// 400 with issue code `invalid`.
    #[cold]
    pub fn invalid(diagnostics: impl Into<String>) -> OperationError {
        OperationError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    /// 400 with issue code `value`, naming the offending parameter.
    #[cold]
    pub fn bad_value(parameter: &str, diagnostics: impl Into<String>) -> OperationError {
        OperationError::from_issues(
            StatusCode::BAD_REQUEST,
            vec![Issue::error(IssueType::Value, diagnostics).at(parameter)],
        )
    }

    /// 404 with issue code `not-found`.
    #[cold]
    pub fn not_found(diagnostics: impl Into<String>) -> OperationError {
        OperationError::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    /// 403 with issue code `forbidden`.
    #[cold]
    pub fn forbidden(diagnostics: impl Into<String>) -> OperationError {
        OperationError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, diagnostics)
    }

    /// 500 with issue code `exception`.
    #[cold]
    pub fn internal(diagnostics: impl Into<String>) -> OperationError {
        OperationError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, diagnostics)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> OperationError {
        self.headers.push((name, value.into()));
        self
    }

    /// Changes the status.
    pub fn with_status(mut self, status: StatusCode) -> OperationError {
        self.status = status;
        self
    }
}

impl std::fmt::Display for OperationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        for issue in &self.outcome.issues {
            write!(f, "; {}", issue.code.code())?;
            if let Some(text) = issue.diagnostics.as_ref().or(issue.details.as_ref()) {
                write!(f, ": {text}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for OperationError {}

/// An `OperationError` is an actix error too, answered as an OperationOutcome: handlers with
/// `manual_response` and your own actix routes can return it with `?`.
impl actix_web::ResponseError for OperationError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        crate::format::ResponseFormat::default().respond_error(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_has_the_fhir_shape() {
        let error = OperationError::bad_value("start", "not a date");
        assert_eq!(
            error.outcome.to_json(),
            json!({
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "error",
                    "code": "value",
                    "diagnostics": "not a date",
                    "expression": ["start"],
                }]
            })
        );
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn issue_codes_round_trip() {
        for code in ["not-found", "too-costly", "informational", "login"] {
            assert_eq!(IssueType::from_code(code).map(IssueType::code), Some(code));
        }
        assert_eq!(IssueType::from_code("nonsense"), None);
    }
}
