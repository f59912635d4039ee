//! Property test over the Parameters binding: whatever JSON arrives, binding ends in bound
//! parameters or a 4xx OperationOutcome naming what was wrong, never a panic or a 5xx. Runs a
//! bounded number of cases so CI stays quick (`PROPTEST_CASES` raises it).

use fhirop_runtime::binding::Binder;
use fhirop_runtime::definition::{OperationDefinition, ParamDefinition};
use fhirop_runtime::types::complex::{Coding, Period};
use fhirop_runtime::types::primitives::{Date, Decimal};
use fhirop_runtime::types::resource::Resource;
use fhirop_runtime::types::search::{OrList, TokenParam};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn definition() -> OperationDefinition {
    OperationDefinition::builder("$fuzz")
        .system(true)
        .parameter(ParamDefinition::input::<Date>("start"))
        .parameter(ParamDefinition::input::<Option<Decimal>>("amount"))
        .parameter(ParamDefinition::input::<Vec<OrList<TokenParam>>>("code"))
        .parameter(ParamDefinition::input::<Option<Coding>>("coding"))
        .parameter(ParamDefinition::input::<Option<Period>>("period"))
        .parameter(ParamDefinition::input::<Option<Resource>>("resource"))
        .build()
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-02-30"),
            Just("2024-05"),
            Just("1.50"),
            Just("a|b,c"),
            Just("")
        ]
        .prop_map(|text| json!(text)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name".to_owned()),
        Just("valueDate".to_owned()),
        Just("valueDecimal".to_owned()),
        Just("valueString".to_owned()),
        Just("valueCoding".to_owned()),
        Just("valuePeriod".to_owned()),
        Just("resource".to_owned()),
        Just("part".to_owned()),
        Just("resourceType".to_owned()),
        "[a-zA-Z]{1,8}",
    ]
}

/// A `Parameters.parameter` entry that is often almost right.
fn entry() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        Just("start"),
        Just("amount"),
        Just("code"),
        Just("coding"),
        Just("period"),
        Just("resource"),
        Just("unknown")
    ];
    (name, field_name(), json_value(), any::<bool>()).prop_map(|(name, member, value, named)| {
        let mut entry = Map::new();
        if named {
            entry.insert("name".into(), Value::String(name.into()));
        }
        entry.insert(member, value);
        Value::Object(entry)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn binding_never_panics_and_answers_4xx(entries in prop::collection::vec(entry(), 0..8), parameter_is_array in any::<bool>()) {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        let parameter = if parameter_is_array { Value::Array(entries) } else { json!({"not": "an array"}) };
        let body = json!({"resourceType": "Parameters", "parameter": parameter});
        let outcome = binder.add_parameters(body).and_then(|()| binder.finish());
        if let Err(error) = outcome {
            prop_assert!(error.status.is_client_error(), "{error}");
            prop_assert!(!error.outcome.issues.is_empty());
        }
    }

    #[test]
    fn query_binding_never_panics(pairs in prop::collection::vec(("[a-z_:]{1,10}", "[ -~]{0,16}"), 0..8)) {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        let outcome = binder
            .add_query(pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())), true)
            .and_then(|()| binder.finish());
        if let Err(error) = outcome {
            prop_assert!(error.status.is_client_error(), "{error}");
        }
    }
}
