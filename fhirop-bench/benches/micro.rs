//! Micro-benchmarks of the hot pieces: binding a 10-parameter Parameters body, building the
//! CapabilityStatement, and a QuickJS execution in a fresh context.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fhirop::binding::Binder;
use fhirop::capability::{ServerInfo, capability_statement};
use fhirop::definition::{OperationDefinition, ParamDefinition};
use fhirop::operation::{Operation, handler_fn};
use fhirop::output::OperationOutput;
use fhirop::prelude::*;
use fhirop::registry::OperationRegistry;
use fhirop_server::bots::sandbox::{Engine, RecordingHost, SandboxLimits};
use serde_json::{Value, json};

fn ten_parameters() -> (OperationDefinition, Value) {
    let mut builder = OperationDefinition::builder("$ten").system(true);
    let mut entries = Vec::new();
    for index in 0..10 {
        let name = format!("p{index}");
        builder = builder.parameter(match index % 3 {
            0 => ParamDefinition::input::<String>(&name),
            1 => ParamDefinition::input::<Date>(&name),
            _ => ParamDefinition::input::<Coding>(&name),
        });
        entries.push(match index % 3 {
            0 => json!({"name": name, "valueString": "text"}),
            1 => json!({"name": name, "valueDate": "2024-05-06"}),
            _ => json!({"name": name, "valueCoding": {"system": "http://loinc.org", "code": "1234-5"}}),
        });
    }
    (
        builder.build(),
        json!({"resourceType": "Parameters", "parameter": entries}),
    )
}

fn binding(c: &mut Criterion) {
    let (definition, body) = ten_parameters();
    c.bench_function("bind 10-parameter Parameters", |b| {
        b.iter(|| {
            let mut binder = Binder::new(&definition);
            binder.add_parameters(black_box(body.clone())).expect("binds");
            black_box(binder.finish().expect("valid"))
        })
    });
}

fn capability(c: &mut Criterion) {
    let registry = OperationRegistry::new();
    for index in 0..20 {
        let definition = OperationDefinition::builder(&format!("$op{index}"))
            .resource("Patient")
            .type_level(true)
            .build();
        let handler = handler_fn(|_| async { Ok(OperationOutput::Resource(Value::Null)) });
        registry
            .register(Operation::new(definition, handler))
            .expect("no clash");
    }
    let snapshot = registry.snapshot();
    let info = ServerInfo::default();
    c.bench_function("build CapabilityStatement (20 operations)", |b| {
        b.iter(|| {
            black_box(capability_statement(
                &snapshot,
                &info,
                "http://localhost/fhir/R4",
                "default",
            ))
        })
    });
}

fn quickjs(c: &mut Criterion) {
    let engine = Engine::new(SandboxLimits::default()).expect("QuickJS starts");
    let bytecode = std::sync::Arc::new(
        engine
            .compile("exports.handler = async function (medplum, event) { return event.input; };")
            .expect("compiles"),
    );
    c.bench_function("QuickJS fresh context + trivial handler", |b| {
        b.iter(|| {
            let host = Rc::new(RecordingHost::default());
            black_box(
                engine
                    .run(&bytecode, r#"{"input":1}"#, host, Duration::from_secs(1))
                    .expect("runs"),
            )
        })
    });
}

criterion_group!(benches, binding, capability, quickjs);
criterion_main!(benches);
