//! A Bot calling this server's own URLs through medplum.get/post/put/delete and fhirUrl:
//! REST paths and operations, native and Bot-backed, answered in process.

mod common;

use common::{TestServer, create, new_bot_named};
use serde_json::{Value, json};

fn execute(server: &TestServer, bot: &str) -> Value {
    let reply = server.post_json(&format!("/Bot/{bot}/$execute"), &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[test]
fn a_bot_calls_rest_paths_and_native_operations_in_process() {
    let server = TestServer::example();
    let patient = create(&server, &json!({"resourceType": "Patient", "gender": "female"}));
    let bot = new_bot_named(
        &server,
        "caller",
        &format!(
            "exports.handler = async (medplum) => {{\n\
               const read = await medplum.get(medplum.fhirUrl('Patient', '{patient}'));\n\
               const hello = await medplum.get(medplum.fhirUrl('Patient', '$hello') + '?name=Bot');\n\
               const added = await medplum.post(medplum.fhirUrl('Patient', '$add-identifier'), {{resourceType: 'Patient'}});\n\
               const created = await medplum.post('Observation', {{resourceType: 'Observation', status: 'final', code: {{text: 'x'}}}});\n\
               const found = await medplum.get('Observation?status=final');\n\
               await medplum.delete('Observation/' + created.id);\n\
               let missing;\n\
               try {{ await medplum.get('Observation/' + created.id); }} catch (e) {{ missing = e.outcome.issue[0].code; }}\n\
               let outside;\n\
               try {{ await medplum.get('https://example.com/fhir/Patient'); }} catch (e) {{ outside = e.outcome.issue[0].code; }}\n\
               return {{ gender: read.gender, hello: hello.parameter[0].valueString, identifier: added.identifier[0].value,\n\
                         total: found.total, missing, outside }};\n\
             }};"
        ),
    );
    assert_eq!(
        execute(&server, &bot),
        json!({"gender": "female", "hello": "Hello, Bot", "identifier": "12345", "total": 1, "missing": "deleted", "outside": "invalid"})
    );
}

#[test]
fn a_bot_calls_another_bots_operation() {
    let server = TestServer::example();
    let callee = new_bot_named(
        &server,
        "caller",
        "exports.handler = async (medplum, event) => ({ doubled: event.parameters.n * 2 });",
    );
    let definition = server.post_json(
        "/OperationDefinition",
        &json!({
            "resourceType": "OperationDefinition",
            "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation",
                           "valueReference": {"reference": format!("Bot/{callee}")}}],
            "name": "double", "status": "active", "kind": "operation", "code": "double",
            "system": true, "type": false, "instance": false,
            "parameter": [{"use": "in", "name": "n", "type": "integer", "min": 1, "max": "1"},
                          {"use": "out", "name": "doubled", "type": "integer", "min": 1, "max": "1"}],
        }),
    );
    assert_eq!(definition.status, 201, "{}", definition.body);
    let caller = new_bot_named(
        &server,
        "caller",
        "exports.handler = async (medplum) => {\n\
           const answer = await medplum.post('$double', {resourceType: 'Parameters', parameter: [{name: 'n', valueInteger: 21}]});\n\
           let refused;\n\
           try { await medplum.post('$double', {resourceType: 'Parameters', parameter: [{name: 'n', valueString: 'x'}]}); }\n\
           catch (e) { refused = e.outcome.issue[0].code; }\n\
           return { doubled: answer.parameter[0].valueInteger, refused };\n\
         };",
    );
    assert_eq!(execute(&server, &caller), json!({"doubled": 42, "refused": "value"}));
}
