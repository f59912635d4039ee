//! Projects (tenants), clients and client-credentials tokens: Medplum's admin API and the
//! OAuth 2 token endpoint, and the isolation between projects.

mod common;

use base64::Engine as _;
use common::{
    FHIR_JSON, Reply, TestServer, admin_post, as_client, client, origin, project, send, send_unauthenticated, token,
    token_request,
};
use serde_json::json;

#[test]
fn client_credentials_give_a_token_by_basic_or_form() {
    let server = TestServer::example();
    let project = project(&server, "clinic");
    let (client_id, secret) = client(&server, &project);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let reply = token_request(
        &server,
        &[("Authorization", &format!("Basic {basic}"))],
        "grant_type=client_credentials",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap();
    let healthcheck = as_client(&server, access, "GET", "/$healthcheck", None);
    assert_eq!(healthcheck.status, 200, "{}", healthcheck.body);
    let by_form = token(&server, &client_id, &secret);
    assert_eq!(as_client(&server, &by_form, "GET", "/Patient", None).status, 200);
}

#[test]
fn bad_client_credentials_and_grants_are_refused_per_rfc_6749() {
    let server = TestServer::example();
    let project = project(&server, "clinic");
    let (client_id, secret) = client(&server, &project);
    let wrong = token_request(
        &server,
        &[],
        &format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}x"),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid_client");
    let unknown = token_request(
        &server,
        &[],
        "grant_type=client_credentials&client_id=nobody&client_secret=x",
    );
    assert_eq!(unknown.status, 401);
    let missing = token_request(&server, &[], "grant_type=client_credentials");
    assert_eq!(missing.json()["error"], "invalid_client");
    let grant = token_request(
        &server,
        &[],
        &format!("grant_type=password&client_id={client_id}&client_secret={secret}"),
    );
    assert_eq!(grant.status, 400);
    assert_eq!(grant.json()["error"], "unsupported_grant_type");
}

#[test]
fn tokens_that_expired_were_tampered_with_or_were_revoked_are_401() {
    let mut config = fhirop_server::Config::for_tests();
    config.token_ttl = 0;
    let short_lived = TestServer::example_with(config);
    let project_id = project(&short_lived, "clinic");
    let (client_id, secret) = client(&short_lived, &project_id);
    let expired = token(&short_lived, &client_id, &secret);
    let reply = as_client(&short_lived, &expired, "GET", "/Patient", None);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.issue_codes(), ["login"]);

    let server = TestServer::example();
    let project_id = project(&server, "clinic");
    let (client_id, secret) = client(&server, &project_id);
    let access = token(&server, &client_id, &secret);
    let mut tampered = access.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(as_client(&server, &tampered, "GET", "/Patient", None).status, 401);
    assert_eq!(as_client(&server, &access, "GET", "/Patient", None).status, 200);
    let revoked = send(
        "DELETE",
        &format!("{}/admin/projects/{project_id}/client/{client_id}", origin(&server)),
        &[],
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let reply = as_client(&server, &access, "GET", "/Patient", None);
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token")
    );
}

#[test]
fn projects_cannot_see_each_others_resources() {
    let server = TestServer::example();
    let (a, b) = (project(&server, "a"), project(&server, "b"));
    let (a_client, a_secret) = client(&server, &a);
    let (b_client, b_secret) = client(&server, &b);
    let (a_token, b_token) = (
        token(&server, &a_client, &a_secret),
        token(&server, &b_client, &b_secret),
    );
    let created = as_client(
        &server,
        &a_token,
        "POST",
        "/Patient",
        Some(&json!({"resourceType": "Patient", "gender": "female"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Patient/{id}");
    assert_eq!(as_client(&server, &a_token, "GET", &path, None).status, 200);
    let from_b = as_client(&server, &b_token, "GET", &path, None);
    let missing = as_client(&server, &b_token, "GET", "/Patient/no-such-patient", None);
    assert_eq!(from_b.status, 404);
    assert_eq!(
        from_b.issue_codes(),
        missing.issue_codes(),
        "indistinguishable from a missing resource"
    );
    assert_eq!(
        server.get(&path).status,
        404,
        "the admin's default project does not see it either"
    );
    let search = as_client(&server, &b_token, "GET", "/Patient?gender=female", None);
    assert_eq!(search.json()["total"], 0);
    let update = as_client(
        &server,
        &b_token,
        "PUT",
        &path,
        Some(&json!({"resourceType": "Patient", "id": id, "gender": "male"})),
    );
    assert_eq!(
        update.status, 201,
        "B's PUT creates B's own Patient with that id, A's stays as it was"
    );
    assert_eq!(
        as_client(&server, &a_token, "GET", &path, None).json()["gender"],
        "female"
    );
}

#[test]
fn the_admin_api_is_for_the_admin_and_bots_get_memberships() {
    let server = TestServer::example();
    let project_id = project(&server, "clinic");
    let (client_id, secret) = client(&server, &project_id);
    let access = token(&server, &client_id, &secret);
    let forbidden = send(
        "POST",
        &format!("{}/admin/projects", origin(&server)),
        &[
            ("Authorization", &format!("Bearer {access}")),
            ("Content-Type", "application/json"),
        ],
        Some(b"{\"name\":\"x\"}"),
    );
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.issue_codes(), ["forbidden"]);
    let anonymous = send_unauthenticated("POST", &format!("{}/admin/projects", origin(&server)), &[], Some(b"{}"));
    assert_eq!(anonymous.status, 401);
    let missing = admin_post(&server, "/admin/projects/no-such-project/client", &json!({"name": "x"}));
    assert_eq!(missing.status, 404);
    let bot = admin_post(
        &server,
        &format!("/admin/projects/{project_id}/bot"),
        &json!({"name": "helper", "runAsUser": true}),
    );
    assert_eq!(bot.status, 201, "{}", bot.body);
    let bot_id = bot.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(bot.json()["runAsUser"], true);
    let read = as_client(&server, &access, "GET", &format!("/Bot/{bot_id}"), None);
    assert_eq!(read.status, 200, "the Bot lives in the project");
    let memberships = as_client(
        &server,
        &access,
        "GET",
        &format!("/ProjectMembership?user=Bot/{bot_id}"),
        None,
    );
    assert_eq!(memberships.json()["total"], 1, "{}", memberships.body);
}

#[test]
fn smart_configuration_names_the_token_endpoint() {
    let server = TestServer::example();
    let reply = send_unauthenticated("GET", &server.url("/.well-known/smart-configuration"), &[], None);
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["token_endpoint"], format!("{}/oauth2/token", origin(&server)));
    assert_eq!(body["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(
        body["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_ne!(reply.header("content-type"), Some(FHIR_JSON));
}

fn bot_operation(server: &TestServer, token: &str, code: &str, answer: &str) {
    let bot = as_client(
        server,
        token,
        "POST",
        "/Bot",
        Some(&json!({"resourceType": "Bot", "name": code})),
    );
    assert_eq!(bot.status, 201, "{}", bot.body);
    let bot = bot.json()["id"].as_str().unwrap().to_owned();
    let source = format!("exports.handler = async () => ({{ answer: '{answer}' }});");
    let deployed = as_client(
        server,
        token,
        "POST",
        &format!("/Bot/{bot}/$deploy"),
        Some(&json!({"code": source})),
    );
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    let definition = as_client(
        server,
        token,
        "POST",
        "/OperationDefinition",
        Some(&json!({
            "resourceType": "OperationDefinition",
            "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation",
                           "valueReference": {"reference": format!("Bot/{bot}")}}],
            "name": code, "status": "active", "kind": "operation", "code": code,
            "system": true, "type": false, "instance": false,
            "parameter": [{"use": "out", "name": "answer", "type": "string", "min": 1, "max": "1"}],
        })),
    );
    assert_eq!(definition.status, 201, "{}", definition.body);
}

fn system_operations(reply: &Reply) -> Vec<String> {
    reply.json()["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|operation| operation["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn each_project_has_its_own_bot_operations() {
    let server = TestServer::example();
    let (a, b) = (project(&server, "a"), project(&server, "b"));
    let (a_client, a_secret) = client(&server, &a);
    let (b_client, b_secret) = client(&server, &b);
    let (a_token, b_token) = (
        token(&server, &a_client, &a_secret),
        token(&server, &b_client, &b_secret),
    );
    bot_operation(&server, &a_token, "shared-code", "from a");
    bot_operation(&server, &b_token, "shared-code", "from b");
    bot_operation(&server, &a_token, "only-a", "a alone");
    let answer = |token: &str, code: &str| as_client(&server, token, "POST", &format!("/${code}"), None);
    assert_eq!(
        answer(&a_token, "shared-code").json()["parameter"][0]["valueString"],
        "from a"
    );
    assert_eq!(
        answer(&b_token, "shared-code").json()["parameter"][0]["valueString"],
        "from b"
    );
    let hidden = answer(&b_token, "only-a");
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.issue_codes(), ["not-supported"]);
    assert_eq!(
        server.post("/$only-a", "").status,
        404,
        "nor does the default project see it"
    );
    let metadata = |token: &str| {
        send_unauthenticated(
            "GET",
            &server.url("/metadata"),
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
    };
    assert_eq!(
        system_operations(&metadata(&a_token)),
        ["healthcheck", "shared-code", "only-a"]
    );
    assert_eq!(system_operations(&metadata(&b_token)), ["healthcheck", "shared-code"]);
    assert_eq!(
        system_operations(&send_unauthenticated("GET", &server.url("/metadata"), &[], None)),
        ["healthcheck"]
    );
}

#[test]
fn a_bot_created_by_a_member_joins_the_project() {
    let server = TestServer::example();
    let project_id = project(&server, "clinic");
    let (client_id, secret) = client(&server, &project_id);
    let access = token(&server, &client_id, &secret);
    let bot = as_client(
        &server,
        &access,
        "POST",
        "/Bot",
        Some(&json!({"resourceType": "Bot", "name": "mine"})),
    );
    assert_eq!(bot.status, 201, "{}", bot.body);
    let bot_id = bot.json()["id"].as_str().unwrap().to_owned();
    let memberships = as_client(
        &server,
        &access,
        "GET",
        &format!("/ProjectMembership?user=Bot/{bot_id}"),
        None,
    );
    assert_eq!(memberships.json()["total"], 1, "{}", memberships.body);
    assert_eq!(
        memberships.json()["entry"][0]["resource"]["project"]["reference"],
        format!("Project/{project_id}")
    );
}

#[test]
fn at_the_root_base_path_the_admin_api_and_token_endpoint_still_answer() {
    // The FHIR scope answers every path under its base path; at the root that is every path,
    // so the admin API's routes must still be found before it.
    let mut config = fhirop_server::Config::for_tests();
    config.base_path = String::new();
    let server = TestServer::example_with(config);
    assert_eq!(server.base_url, origin(&server));
    let project = project(&server, "root");
    let (client_id, secret) = client(&server, &project);
    let access = token(&server, &client_id, &secret);
    let reply = as_client(&server, &access, "GET", "/Patient", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["resourceType"], "Bundle");
    let unknown = send("GET", &format!("{}/admin/unknown", origin(&server)), &[], None);
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.header("content-type"), Some(FHIR_JSON));
}
