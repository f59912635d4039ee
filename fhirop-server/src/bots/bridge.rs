//! The native functions of a Bot's context: `__host(method, argsJson)`, which answers with
//! the reply as a value (`{ok, value}` or `{ok, message, outcome}`), and `__log(level, text)`,
//! both of which the prelude captures; and `Math.random`.
//!
//! They are plain C functions that own no Rust memory, so the template context holding them
//! can be snapshotted and restored (`heap.rs`): a Rust closure would live in a box that a
//! restore could bring back after its release. The host of the execution in progress is
//! found through [`HostScope`] instead.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::ffi::{CStr, c_int};
use std::hash::BuildHasher;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::rc::Rc;

use rquickjs::{Ctx, Exception, Function, Object, Value, qjs};

use super::sandbox::Host;

thread_local! {
    static HOST: RefCell<Option<Rc<dyn Host>>> = const { RefCell::new(None) };
    /// xorshift64* state. A restored context would replay QuickJS's own `Math.random`
    /// sequence, seeded once when the template was built, in every execution.
    static RANDOM: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
}

/// The host the native functions answer to while it is alive.
#[derive(Debug)]
pub(super) struct HostScope(());

impl HostScope {
    pub(super) fn enter(host: Rc<dyn Host>) -> HostScope {
        HOST.with(|current| *current.borrow_mut() = Some(host));
        HostScope(())
    }
}

impl Drop for HostScope {
    fn drop(&mut self) {
        HOST.with(|current| current.borrow_mut().take());
    }
}

fn current_host() -> Option<Rc<dyn Host>> {
    HOST.with(|current| current.borrow().clone())
}

/// Puts `__host` and `__log` on the global object and replaces `Math.random`.
pub(super) fn install(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set("__host", native(ctx, host_call, c"__host", 2)?)?;
    globals.set("__log", native(ctx, log, c"__log", 2)?)?;
    let math: Object = globals.get("Math")?;
    math.set("random", native(ctx, random, c"random", 0)?)?;
    Ok(())
}

type Native = unsafe extern "C" fn(*mut qjs::JSContext, qjs::JSValue, c_int, *mut qjs::JSValue) -> qjs::JSValue;

fn native<'js>(ctx: &Ctx<'js>, function: Native, name: &CStr, length: c_int) -> rquickjs::Result<Function<'js>> {
    // SAFETY: the context is live (we hold `ctx`), the name is a NUL-terminated static, and
    // JS_NewCFunction2 returns an owned value (or an exception, which `from_raw` carries).
    let value = unsafe {
        let raw = qjs::JS_NewCFunction2(
            ctx.as_raw().as_ptr(),
            Some(function),
            name.as_ptr(),
            length,
            qjs::JSCFunctionEnum_JS_CFUNC_generic,
            0,
        );
        if qjs::JS_IsException(raw) {
            return Err(rquickjs::Error::Exception);
        }
        Value::from_raw(ctx.clone(), raw)
    };
    value
        .into_function()
        .ok_or_else(|| rquickjs::Error::new_from_js("value", "function"))
}

/// Runs a native function's body with safe handles, turning errors and panics into exceptions.
///
/// # Safety
/// QuickJS calls with a live context and `argc` readable values at `argv`.
unsafe fn native_call(
    ctx: *mut qjs::JSContext,
    argc: c_int,
    argv: *mut qjs::JSValue,
    body: impl for<'js> FnOnce(&Ctx<'js>, &[Value<'js>]) -> rquickjs::Result<Value<'js>>,
) -> qjs::JSValue {
    let Some(pointer) = NonNull::new(ctx) else {
        return qjs::JS_EXCEPTION;
    };
    // SAFETY: QuickJS hands a live context; `from_raw` takes its own reference.
    let ctx = unsafe { Ctx::from_raw(pointer) };
    let count = usize::try_from(argc).unwrap_or(0);
    let arguments: Vec<Value<'_>> = (0..count)
        // SAFETY: argv holds argc borrowed values; each is duplicated before `from_raw` owns it.
        .map(|index| unsafe { Value::from_raw(ctx.clone(), qjs::JS_DupValue(ctx.as_raw().as_ptr(), *argv.add(index))) })
        .collect();
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&ctx, &arguments)));
    match outcome {
        Ok(Ok(value)) => {
            // SAFETY: the returned value must be owned by the caller: duplicate it before the
            // handle releases its own reference.
            unsafe { qjs::JS_DupValue(ctx.as_raw().as_ptr(), value.as_raw()) }
        }
        Ok(Err(rquickjs::Error::Exception)) => qjs::JS_EXCEPTION,
        Ok(Err(error)) => {
            let _ = Exception::throw_type(&ctx, &error.to_string());
            qjs::JS_EXCEPTION
        }
        Err(_) => {
            tracing::error!("a Bot host function panicked");
            let _ = Exception::throw_internal(&ctx, "the host failed; the server logged the details");
            qjs::JS_EXCEPTION
        }
    }
}

fn text_argument(arguments: &[Value<'_>], index: usize) -> rquickjs::Result<String> {
    match arguments.get(index) {
        Some(value) => value.get(),
        None => Err(rquickjs::Error::new_from_js("undefined", "string")),
    }
}

/// A native function: the C signature QuickJS calls, around a body that gets safe handles.
macro_rules! native_function {
    ($name:ident, |$ctx:ident, $arguments:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            ctx: *mut qjs::JSContext,
            _this: qjs::JSValue,
            argc: c_int,
            argv: *mut qjs::JSValue,
        ) -> qjs::JSValue {
            // SAFETY: QuickJS calls with its own live context and `argc` arguments at `argv`.
            unsafe { native_call(ctx, argc, argv, |$ctx, $arguments| $body) }
        }
    };
}

native_function!(host_call, |ctx, arguments| {
    let method = text_argument(arguments, 0)?;
    let args = serde_json::from_str(&text_argument(arguments, 1)?).unwrap_or(serde_json::Value::Null);
    let failure = |message: String, outcome: serde_json::Value| {
        fhirop::format::json_text(&serde_json::json!({"ok": false, "message": message, "outcome": outcome}))
    };
    let reply = match current_host() {
        // The value's text goes in as the host wrote it (search results as stored).
        Some(host) => match host.call(&method, args) {
            Ok(value) => format!(r#"{{"ok":true,"value":{value}}}"#),
            Err((message, outcome)) => failure(message, outcome),
        },
        None => failure("no host is serving this execution".to_owned(), serde_json::Value::Null),
    };
    super::sandbox::parse_kept(ctx, &reply)
});

native_function!(log, |ctx, arguments| {
    let level = text_argument(arguments, 0)?;
    let text = text_argument(arguments, 1)?;
    if let Some(host) = current_host() {
        host.log(&level, text);
    }
    Ok(Value::new_undefined(ctx.clone()))
});

native_function!(random, |ctx, _arguments| Ok(Value::new_float(
    ctx.clone(),
    next_random()
)));

/// A double in [0, 1) from the thread's xorshift64* generator, as QuickJS computes its own.
fn next_random() -> f64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (bits >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_doubles_are_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..1000).map(|_| next_random()).collect();
        assert!(draws.iter().all(|draw| (0.0..1.0).contains(draw)));
        let mut distinct = draws.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), draws.len());
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
