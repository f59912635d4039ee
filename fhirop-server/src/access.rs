//! Access policies (Medplum's AccessPolicy: `resource[]` with `resourceType` and `readonly`;
//! no policy = full access within the project), resolved per request by the authentication
//! middleware and enforced by every REST interaction, search, `$everything` and operation.

use std::borrow::Cow;

use actix_web::HttpRequest;
use fhirop::context::Principal;
use fhirop::outcome::OperationError;
use serde_json::Value;

/// What the caller of a request may do in its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// A project administrator (the admin token, or a membership with `admin: true`).
    pub admin: bool,
    /// `(resourceType, readonly)` rules; `None` grants every type. Shared: every route reads
    /// the caller's access from the request, and a copy per read would copy the policy.
    pub rules: Option<std::sync::Arc<[(String, bool)]>>,
}

impl Access {
    /// Full access and administration (the admin token).
    pub fn administrator() -> Access {
        Access {
            admin: true,
            rules: None,
        }
    }

    /// The access a membership and its AccessPolicy (if any) grant.
    pub fn from_membership(membership: &Value, policy: Option<&Value>) -> Access {
        let rules = policy.map(|policy| {
            policy
                .get("resource")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|rule| {
                    let resource_type = rule.get("resourceType")?.as_str()?.to_owned();
                    let readonly = rule.get("readonly").and_then(Value::as_bool).unwrap_or(false);
                    Some((resource_type, readonly))
                })
                .collect()
        });
        Access {
            admin: membership.get("admin").and_then(Value::as_bool).unwrap_or(false),
            rules,
        }
    }

    /// The access of `request`'s caller, borrowed from its principal (a check needs no copy
    /// of the policy's reference count). Only open endpoints (metadata) have none set, and
    /// they touch no resource.
    pub fn of(request: &HttpRequest) -> Cow<'_, Access> {
        match Principal::of(request).and_then(Principal::grants::<Access>) {
            Some(access) => Cow::Borrowed(access),
            None => Cow::Owned(Access::administrator()),
        }
    }

    fn rule(&self, resource_type: &str) -> Option<bool> {
        match &self.rules {
            None => Some(false),
            Some(rules) => rules
                .iter()
                .filter(|(rule_type, _)| rule_type == resource_type || rule_type == "*")
                .map(|(_, readonly)| *readonly)
                .min(),
        }
    }

    /// Whether `resource_type` may be read.
    pub fn can_read(&self, resource_type: &str) -> bool {
        self.rule(resource_type).is_some()
    }

    /// Whether `resource_type` may be written.
    pub fn can_write(&self, resource_type: &str) -> bool {
        self.rule(resource_type) == Some(false)
    }

    /// 403 unless `resource_type` may be read.
    pub fn require_read(&self, resource_type: &str) -> Result<(), OperationError> {
        if self.can_read(resource_type) {
            Ok(())
        } else {
            Err(OperationError::forbidden(format!(
                "the access policy does not allow reading {resource_type}"
            )))
        }
    }

    /// 403 unless `resource_type` may be written.
    pub fn require_write(&self, resource_type: &str) -> Result<(), OperationError> {
        if self.can_write(resource_type) {
            Ok(())
        } else {
            Err(OperationError::forbidden(format!(
                "the access policy does not allow writing {resource_type}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_grant_types_and_readonly_limits_writes() {
        let policy = json!({"resourceType": "AccessPolicy", "resource": [
            {"resourceType": "Patient"}, {"resourceType": "Observation", "readonly": true}
        ]});
        let access = Access::from_membership(&json!({}), Some(&policy));
        assert!(access.can_read("Patient") && access.can_write("Patient"));
        assert!(access.can_read("Observation") && !access.can_write("Observation"));
        assert!(!access.can_read("Condition"));
        assert!(!access.admin);
        let open = Access::from_membership(&json!({"admin": true}), None);
        assert!(open.admin && open.can_write("Anything"));
    }
}
