//! The example server's native operations, over HTTP (issue 2, item 9).

mod common;

use common::{FHIR_JSON, TestServer};
use serde_json::json;

#[test]
fn healthcheck_answers_all_ok_on_get_and_post() {
    let server = TestServer::example();
    for reply in [server.get("/$healthcheck"), server.post("/$healthcheck", "")] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational", "details": {"text": "All OK"}
            }]})
        );
    }
}
