//! Medplum's `event`, the one argument a Bot's handler gets, kept as the JSON text of each
//! member until the sandbox parses the whole: the request body goes in as the client sent it,
//! checked but never built into a tree, copied and serialized again.

use serde::Serialize;
use serde_json::value::RawValue;

/// The members of an `event`, in the order they are first set.
#[derive(Debug, Default, Clone)]
pub struct BotEvent {
    members: Vec<(&'static str, String)>,
}

impl BotEvent {
    /// Sets `name` to `value`, serialized.
    pub fn set(&mut self, name: &'static str, value: &impl Serialize) {
        // Values here (`Value`s, strings, maps of them) always serialize.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        self.set_json(name, text);
    }

    /// Sets `name` to `json`, the JSON text of its value.
    pub fn set_json(&mut self, name: &'static str, json: String) {
        match self.members.iter_mut().find(|(member, _)| *member == name) {
            Some((_, existing)) => *existing = json,
            None => self.members.push((name, json)),
        }
    }

    /// Sets `name` to the JSON document `body` as it is, or to `null` when it is empty or not
    /// JSON (what the Bot then finds in its place).
    pub fn set_body(&mut self, name: &'static str, body: &[u8]) {
        let json =
            serde_json::from_slice::<&RawValue>(body).map_or_else(|_| "null".to_owned(), |raw| raw.get().to_owned());
        self.set_json(name, json);
    }

    /// Whether `name` is set to `null`, `{}` or nothing.
    pub fn is_empty(&self, name: &str) -> bool {
        self.members
            .iter()
            .find(|(member, _)| *member == name)
            .is_none_or(|(_, json)| {
                let json = json.trim();
                json == "null"
                    || json
                        .strip_prefix('{')
                        .and_then(|rest| rest.strip_suffix('}'))
                        .is_some_and(|inside| inside.trim().is_empty())
            })
    }

    /// The event's JSON text.
    pub fn to_json(&self) -> String {
        let length = self
            .members
            .iter()
            .map(|(name, json)| name.len() + json.len() + 4)
            .sum::<usize>();
        let mut text = String::with_capacity(length + 2);
        text.push('{');
        for (index, (name, json)) in self.members.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            // Member names are this module's callers' literals: plain identifiers.
            text.push('"');
            text.push_str(name);
            text.push_str("\":");
            text.push_str(json);
        }
        text.push('}');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(event: &BotEvent) -> Value {
        serde_json::from_str(&event.to_json()).unwrap()
    }

    #[test]
    fn members_keep_their_first_place_and_their_last_value() {
        let mut event = BotEvent::default();
        event.set("contentType", &"application/fhir+json");
        event.set("input", &Value::Null);
        event.set(
            "secrets",
            &json!({"key": {"name": "key", "valueString": "a \"quoted\" value"}}),
        );
        event.set("input", &json!({"resourceType": "Patient"}));
        assert_eq!(
            event.to_json(),
            r#"{"contentType":"application/fhir+json","input":{"resourceType":"Patient"},"secrets":{"key":{"name":"key","valueString":"a \"quoted\" value"}}}"#
        );
    }

    #[test]
    fn a_body_goes_in_as_sent_and_anything_else_as_null() {
        let mut event = BotEvent::default();
        event.set_body(
            "input",
            br#" {"resourceType": "Patient", "name": [{"family": "Smith"}]} "#,
        );
        assert_eq!(
            parsed(&event)["input"],
            json!({"resourceType": "Patient", "name": [{"family": "Smith"}]})
        );
        assert!(!event.is_empty("input"));
        for body in [&b""[..], b"{\"unclosed\": ", b"not json", b"{} trailing", b"\xff\xfe"] {
            event.set_body("input", body);
            assert_eq!(parsed(&event)["input"], Value::Null, "{body:?}");
            assert!(event.is_empty("input"));
        }
        event.set_body("input", b" { } ");
        assert!(event.is_empty("input"));
        assert!(event.is_empty("never-set"));
        event.set_body("input", b"[1, 2]");
        assert_eq!(parsed(&event)["input"], json!([1, 2]));
    }
}
