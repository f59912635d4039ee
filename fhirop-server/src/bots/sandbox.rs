//! The QuickJS sandbox a Bot runs in: one runtime per worker thread with memory, stack and
//! time limits; a fresh context per execution, restored from a snapshot of the template with
//! the Bot's module read in (`heap.rs`); bytecode compiled once per deployed version.
//!
//! The only bridge to the host is one function taking JSON text and returning the reply's
//! value (read by `json.rs`); the `medplum` object and `console` are written in JavaScript on
//! top of it (`prelude.js`), so the host surface is one small, auditable function
//! (`bridge.rs`).

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::heap::{Image, Region};
use super::{bridge, json};

use rquickjs::context::intrinsic;
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Promise, Runtime, Value, module::WriteOptions,
    qjs,
};

/// The limits every execution runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// QuickJS heap limit in bytes (default 64 MiB).
    pub memory: usize,
    /// QuickJS stack limit in bytes: deep recursion fails cleanly beyond it.
    pub stack: usize,
    /// Wall-clock limit for one execution, async work included (default 10 s).
    pub timeout: Duration,
}

impl Default for SandboxLimits {
    fn default() -> SandboxLimits {
        SandboxLimits {
            memory: 64 * 1024 * 1024,
            stack: 512 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a Bot could not be compiled or did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotError {
    /// The code does not parse.
    Syntax {
        /// The engine's message.
        message: String,
        /// The line, when the engine gave one.
        line: Option<u32>,
    },
    /// The Bot threw (or its promise rejected).
    Thrown {
        /// The error's message.
        message: String,
        /// The Bot's line, when the stack names one.
        line: Option<u32>,
    },
    /// The Bot ran past its time limit.
    Timeout(Duration),
    /// The Bot ran out of memory.
    OutOfMemory,
    /// The Bot has no `handler` function.
    NoHandler,
    /// The engine failed.
    Engine(String),
}

impl std::fmt::Display for BotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |line: &Option<u32>| line.map(|line| format!(" (line {line})")).unwrap_or_default();
        match self {
            BotError::Syntax { message, line } => write!(f, "syntax error: {message}{}", at(line)),
            BotError::Thrown { message, line } => write!(f, "{message}{}", at(line)),
            BotError::Timeout(limit) => write!(f, "the Bot did not finish within {} ms", limit.as_millis()),
            BotError::OutOfMemory => f.write_str("the Bot ran out of memory"),
            BotError::NoHandler => f.write_str(
                "the Bot exports no handler: write `exports.handler = async function (medplum, event) {...}`",
            ),
            BotError::Engine(message) => write!(f, "the JavaScript engine failed: {message}"),
        }
    }
}

/// What a Bot may ask of the host: `medplum` calls and `console` output.
pub trait Host {
    /// Runs a `medplum` method: `Ok` is its value's JSON text, `Err` carries the message and
    /// the OperationOutcome JSON.
    fn call(&self, method: &str, args: serde_json::Value) -> Result<String, (String, serde_json::Value)>;

    /// Records a `console` line.
    fn log(&self, level: &str, text: String);
}

/// The file name Bots' code is compiled under (it appears in stacks).
const BOT_FILE: &str = "bot.js";
const PRELUDE: &str = include_str!("prelude.js");

/// What a Bot's context holds beyond the base objects. Context creation is most of an
/// execution's cost, and each intrinsic adds to it; `eval` and `Function(...)` are left out
/// on purpose (code comes only through `$deploy`), as are timers and `performance`.
type BotIntrinsics = (
    intrinsic::Date,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::MapSet,
    intrinsic::Promise,
);

/// How many Bots a worker keeps a loaded image of. Each is about the template's size
/// (190 KiB), taken the first time the worker runs that Bot's version.
const LOADED_IMAGES: usize = 8;

/// One QuickJS runtime, owned by one worker thread, and its template context: the
/// intrinsics, the host bridge and the evaluated prelude. Every execution starts from the
/// template as it was when first built with its Bot's module read in but not yet evaluated
/// (`heap.rs`).
pub struct Engine {
    // Field order is drop order: the context and the runtime live in `region`; the loaded
    // Bots' bytecode, which their modules may point into, goes after it.
    template: Context,
    runtime: Runtime,
    region: RefCell<Region>,
    loaded: RefCell<Vec<LoadedBot>>,
    deadline: Rc<Cell<Option<Instant>>>,
    limits: SandboxLimits,
}

/// The region as it is once a Bot's bytecode has been read into the template: reading it
/// (`JS_ReadObject`: its atoms, functions and constants) was an eighth of the Bot worker's
/// time in W3. Only reading: the module is evaluated in every execution, so its top-level
/// code runs each time, as it does in Medplum.
struct LoadedBot {
    /// The bytecode it was read from, by identity: held so that its address cannot be reused,
    /// and because QuickJS reads bytecode in place (`JS_READ_OBJ_ROM_DATA`), so the module
    /// may point into it.
    bytecode: Arc<Vec<u8>>,
    image: Image,
    /// The module in `image`: valid whenever the region holds that image.
    module: NonNull<qjs::JSModuleDef>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The line of `file` in a QuickJS stack (`at handler (bot.js:3:9)`).
fn line_in_stack(stack: &str, file: &str) -> Option<u32> {
    let at = stack.find(&format!("{file}:"))? + file.len() + 1;
    stack[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// CommonJS Bots (`exports.handler = ...`) become ES modules: a one-line prelude keeps every
/// line number, and an export at the end hands the handler over. ES-module Bots stay as written.
fn as_module_source(source: &str) -> String {
    let is_module = source
        .lines()
        .any(|line| line.trim_start().starts_with("export ") || line.trim_start().starts_with("import "));
    if is_module {
        source.to_owned()
    } else {
        format!(
            "const module = {{ exports: {{}} }}; const exports = module.exports; {source}\n;export const handler = module.exports.handler;"
        )
    }
}

/// The address space a runtime with a heap limit of `memory` reserves. QuickJS counts what it
/// asked for; the size classes round that up by at most a quarter, and a class's freed blocks
/// serve only that class, so the region leaves room for both. Untouched pages cost nothing.
fn region_size(memory: usize) -> usize {
    memory.saturating_mul(3).saturating_add(32 * 1024 * 1024)
}

/// Headroom over the template before QuickJS collects cycles inside one execution: short
/// executions never collect, since the restore discards their garbage wholesale.
const GC_HEADROOM: usize = 4 * 1024 * 1024;

/// JSON text per execution whose values [`parse_kept`] keeps until the restore.
const KEEP_LIMIT: usize = 1024 * 1024;

thread_local! {
    /// The execution in progress's kept values (see [`parse_kept`]) and the text they came from.
    static KEPT: RefCell<(Vec<rquickjs::qjs::JSValue>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// `JSON.parse(text)`, with an extra reference to the value held until the execution ends,
/// when the restore discards it unreleased. Without it, the handler dropping what it read (the
/// event, a page of search results) frees it object by object first: 3% of the instructions of
/// a Bot that reads a page of 20 Patients. Up to [`KEEP_LIMIT`] bytes of text per execution, so a Bot that reads
/// far more still gets back the memory it lets go.
pub(super) fn parse_kept<'js>(ctx: &Ctx<'js>, text: &str) -> rquickjs::Result<Value<'js>> {
    let value = json::parse(ctx, text)?;
    KEPT.with(|kept| {
        let (values, bytes) = &mut *kept.borrow_mut();
        if *bytes + text.len() <= KEEP_LIMIT {
            *bytes += text.len();
            // SAFETY: the context is live; the duplicated reference is owned by `KEPT` and
            // never released: `forget_kept` drops it before the region is restored.
            #[allow(unsafe_code)]
            values.push(unsafe { rquickjs::qjs::JS_DupValue(ctx.as_raw().as_ptr(), value.as_raw()) });
        }
    });
    Ok(value)
}

/// An execution's kept references, forgotten when it ends, however it ends: the restore
/// discards what they point to (and a runtime that panicked is not used again).
struct KeptScope;

impl Drop for KeptScope {
    fn drop(&mut self) {
        KEPT.with(|kept| {
            let (values, bytes) = &mut *kept.borrow_mut();
            values.clear();
            *bytes = 0;
        });
    }
}

impl Engine {
    /// A runtime with `limits`, its interrupt handler checking the current deadline, and the
    /// template context every execution starts from.
    pub fn new(limits: SandboxLimits) -> Result<Engine, BotError> {
        let engine_error = |error: rquickjs::Error| BotError::Engine(error.to_string());
        let mut region =
            Region::reserve(region_size(limits.memory)).map_err(|error| BotError::Engine(error.to_string()))?;
        let runtime = Runtime::new_with_alloc(region.allocator()).map_err(engine_error)?;
        runtime.set_memory_limit(limits.memory);
        runtime.set_max_stack_size(limits.stack);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let watched = deadline.clone();
        // Returning true raises an uncatchable exception: infinite loops end here.
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|deadline| Instant::now() >= deadline)
        })));
        // Compiled in a runtime of its own: the compiler's garbage would otherwise lie in the
        // region below the template's live objects, and every restore would copy it (118 of
        // the image's 304 KiB).
        let prelude = compile_in(&Runtime::new().map_err(engine_error)?, "prelude.js", PRELUDE.to_owned())?;
        let template = Context::custom::<BotIntrinsics>(&runtime).map_err(engine_error)?;
        template.with(|ctx| {
            let caught = |error: CaughtError<'_>| BotError::Engine(format!("the prelude failed: {error}"));
            bridge::install(&ctx).map_err(engine_error)?;
            let (_, done) = load(&ctx, &prelude)?.eval().catch(&ctx).map_err(caught)?;
            done.finish::<Value>().catch(&ctx).map_err(caught)?;
            Ok::<_, BotError>(())
        })?;
        runtime.run_gc();
        let template_bytes = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
        runtime.set_gc_threshold(template_bytes + GC_HEADROOM);
        region.snapshot();
        Ok(Engine {
            template,
            runtime,
            region: RefCell::new(region),
            loaded: RefCell::new(Vec::new()),
            deadline,
            limits,
        })
    }

    /// Compiles a Bot's code to bytecode, once per deployed version.
    pub fn compile(&self, source: &str) -> Result<Vec<u8>, BotError> {
        // The region is put back before an execution, not after: the last one's memory is
        // still there.
        self.region.borrow_mut().restore();
        let compiled = compile_in(&self.runtime, BOT_FILE, as_module_source(source));
        self.region.borrow_mut().restore();
        compiled
    }

    /// Runs a compiled Bot's `handler(medplum, event)` in a fresh context and returns its
    /// value as JSON text (`undefined` as `null`).
    ///
    /// Fresh means the template exactly as built, with the Bot's module read in: the region
    /// is restored before every execution, so whatever the last one changed or allocated is
    /// gone. One copy per execution whichever Bot ran before; an execution that grew the
    /// region far gives the memory back as soon as it ends.
    pub fn run(
        &self,
        bytecode: &Arc<Vec<u8>>,
        event_json: &str,
        host: Rc<dyn Host>,
        timeout: Duration,
    ) -> Result<String, BotError> {
        let limit = timeout.min(self.limits.timeout.max(timeout));
        let module = self.load_fresh(bytecode)?;
        let scope = bridge::HostScope::enter(host);
        let kept = KeptScope;
        self.deadline.set(Some(Instant::now() + limit));
        let result = self.run_in(module, event_json, limit);
        self.deadline.set(None);
        drop(scope);
        // Every handle into the execution's memory was dropped inside `run_in`, but for the
        // kept ones, which go with the memory.
        drop(kept);
        let mut region = self.region.borrow_mut();
        if let Some(loaded) = self.loaded.borrow().last()
            && region.grew_past(&loaded.image)
        {
            region.restore_image(&loaded.image);
        }
        result
    }

    /// Restores the region to the template with `bytecode`'s module read in, reading it and
    /// keeping the image the first time, and returns the module. The Bot it is for becomes
    /// the last of [`Engine::loaded`], which holds the most recently run last.
    fn load_fresh(&self, bytecode: &Arc<Vec<u8>>) -> Result<FreshModule, BotError> {
        let mut loaded = self.loaded.borrow_mut();
        let mut region = self.region.borrow_mut();
        if let Some(index) = loaded.iter().position(|bot| Arc::ptr_eq(&bot.bytecode, bytecode)) {
            let bot = loaded.remove(index);
            region.restore_image(&bot.image);
            let module = bot.module;
            loaded.push(bot);
            return Ok(FreshModule(module));
        }
        region.restore();
        let module = self.template.with(|ctx| read_module(&ctx, bytecode))?;
        if loaded.len() >= LOADED_IMAGES {
            loaded.remove(0);
        }
        loaded.push(LoadedBot {
            bytecode: bytecode.clone(),
            image: region.capture(),
            module,
        });
        Ok(FreshModule(module))
    }

    /// Bytes of the template image each execution starts from.
    pub fn template_size(&self) -> usize {
        self.region.borrow().template_size()
    }

    fn run_in(&self, module: FreshModule, event_json: &str, limit: Duration) -> Result<String, BotError> {
        let deadline = self.deadline.clone();
        self.template.with(|ctx| {
            let caught = |error: CaughtError<'_>| self.classify(error, limit);
            let done = module.evaluate(&ctx).catch(&ctx).map_err(caught)?;
            done.finish::<Value>().catch(&ctx).map_err(caught)?;
            let namespace = module.namespace(&ctx).catch(&ctx).map_err(caught)?;
            let handler: Function = match namespace.get::<_, Value>("handler") {
                Ok(value) if value.is_function() => value.into_function().ok_or(BotError::NoHandler)?,
                _ => return Err(BotError::NoHandler),
            };
            let globals = ctx.globals();
            let medplum: Value = globals.get("medplum").map_err(|error| engine_error(error, limit))?;
            let event = parse_kept(&ctx, event_json).catch(&ctx).map_err(caught)?;
            let returned: Value = handler.call((medplum, event)).catch(&ctx).map_err(caught)?;
            let value: Value = match returned.as_promise() {
                Some(promise) => match promise.finish::<Value>().catch(&ctx) {
                    Ok(value) => value,
                    Err(CaughtError::Error(rquickjs::Error::WouldBlock)) => {
                        let timed_out = deadline.get().is_some_and(|deadline| Instant::now() >= deadline);
                        return Err(if timed_out {
                            BotError::Timeout(limit)
                        } else {
                            BotError::Thrown {
                                message: "the handler's promise never settled (fhirop Bots have no timers)".into(),
                                line: None,
                            }
                        });
                    }
                    Err(error) => return Err(caught(error)),
                },
                None => returned,
            };
            let text = json::stringify(&ctx, value).catch(&ctx).map_err(caught)?;
            Ok(text.unwrap_or_else(|| "null".to_owned()))
        })
    }

    fn classify(&self, error: CaughtError<'_>, limit: Duration) -> BotError {
        if self.deadline.get().is_some_and(|deadline| Instant::now() >= deadline) {
            return BotError::Timeout(limit);
        }
        match error {
            CaughtError::Exception(exception) => {
                let message = exception.message().unwrap_or_default();
                if message.contains("out of memory") {
                    return BotError::OutOfMemory;
                }
                let name: Option<String> = exception.get("name").ok();
                let stack = exception.stack().unwrap_or_default();
                BotError::Thrown {
                    message: match name {
                        Some(name) if !name.is_empty() && name != "Error" => format!("{name}: {message}"),
                        _ => message,
                    },
                    line: line_in_stack(&stack, BOT_FILE),
                }
            }
            // Out of memory, QuickJS sometimes cannot even build its exception and throws
            // null instead (a Bot throwing null itself is indistinguishable, and rare).
            CaughtError::Value(value) if value.is_null() => BotError::OutOfMemory,
            CaughtError::Value(value) => BotError::Thrown {
                message: value
                    .as_string()
                    .and_then(|text| text.to_string().ok())
                    .unwrap_or_else(|| format!("the Bot threw a {}", value.type_name())),
                line: None,
            },
            CaughtError::Error(rquickjs::Error::Allocation) => BotError::OutOfMemory,
            CaughtError::Error(error) => engine_error(error, limit),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The context and the runtime are freed from the template they were built as, not
        // from what the last execution left.
        self.region.get_mut().restore();
    }
}

/// Compiles `source` as the module `name` in a context of its own, to bytecode.
fn compile_in(runtime: &Runtime, name: &str, source: String) -> Result<Vec<u8>, BotError> {
    let context = Context::full(runtime).map_err(|error| BotError::Engine(error.to_string()))?;
    context.with(|ctx| {
        let module = Module::declare(ctx.clone(), name, source)
            .catch(&ctx)
            .map_err(|error| syntax_error(error, name))?;
        module
            .write(WriteOptions::default())
            .map_err(|error| BotError::Engine(error.to_string()))
    })
}

fn engine_error(error: rquickjs::Error, _limit: Duration) -> BotError {
    match error {
        rquickjs::Error::Allocation => BotError::OutOfMemory,
        other => BotError::Engine(other.to_string()),
    }
}

fn syntax_error(error: CaughtError<'_>, file: &str) -> BotError {
    match error {
        CaughtError::Exception(exception) => {
            let stack = exception.stack().unwrap_or_default();
            BotError::Syntax {
                message: exception.message().unwrap_or_default(),
                line: line_in_stack(&stack, file),
            }
        }
        other => BotError::Syntax {
            message: other.to_string(),
            line: None,
        },
    }
}

/// Loads bytecode this process compiled.
#[allow(unsafe_code)]
fn load<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Module<'js, rquickjs::module::Declared>, BotError> {
    // SAFETY: QuickJS trusts bytecode completely. Every byte passed here was written by
    // `compile_in` in this process from source it parsed itself; bytecode never
    // comes from a client, a file or the database.
    unsafe { Module::load(ctx.clone(), bytecode) }.map_err(|error| BotError::Engine(error.to_string()))
}

/// Reads a Bot's bytecode into `ctx` as a module, not evaluated, as [`load`] does, and returns
/// the module itself: rquickjs's handle cannot be made again from it once the image holding
/// it is put back.
#[allow(unsafe_code)]
fn read_module(ctx: &Ctx<'_>, bytecode: &[u8]) -> Result<NonNull<qjs::JSModuleDef>, BotError> {
    // SAFETY: as in `load`: the bytecode was written by `compile_in` in this process. The
    // module's value is not released: the image it is kept in holds it.
    unsafe {
        let value = qjs::JS_ReadObject(
            ctx.as_raw().as_ptr(),
            bytecode.as_ptr(),
            bytecode.len() as qjs::size_t,
            (qjs::JS_READ_OBJ_BYTECODE | qjs::JS_READ_OBJ_ROM_DATA) as i32,
        );
        if qjs::JS_IsException(value) {
            let error = ctx.catch();
            return Err(BotError::Engine(format!(
                "the Bot's bytecode could not be read: {error:?}"
            )));
        }
        if qjs::JS_VALUE_GET_TAG(value) != qjs::JS_TAG_MODULE {
            qjs::JS_FreeValue(ctx.as_raw().as_ptr(), value);
            return Err(BotError::Engine("the Bot's bytecode is not a module".into()));
        }
        NonNull::new(qjs::JS_VALUE_GET_PTR(value).cast())
            .ok_or_else(|| BotError::Engine("the Bot's bytecode read as no module".into()))
    }
}

/// A Bot's module in the region as [`Engine::load_fresh`] just put it back: read in, not yet
/// evaluated. Only `load_fresh` makes one, and only for the execution it prepared.
#[derive(Debug, Clone, Copy)]
struct FreshModule(NonNull<qjs::JSModuleDef>);

#[allow(unsafe_code)]
impl FreshModule {
    /// Evaluates the module: its promise settles once the module's top-level code has run.
    fn evaluate<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Promise<'js>> {
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: the module is live in this context (see the type). JS_EvalFunction takes a
        // reference to the module, so one is added first, as rquickjs's `Module::eval` does.
        let promise = unsafe {
            let value = qjs::JS_MKPTR(qjs::JS_TAG_MODULE, self.0.as_ptr().cast());
            qjs::JS_DupValue(raw, value);
            let promise = qjs::JS_EvalFunction(raw, value);
            if qjs::JS_IsException(promise) {
                return Err(rquickjs::Error::Exception);
            }
            Value::from_raw(ctx.clone(), promise)
        };
        promise
            .into_promise()
            .ok_or_else(|| rquickjs::Error::new_from_js("value", "promise"))
    }

    /// The module's exports, once evaluated.
    fn namespace<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
        // SAFETY: the module is live in this context (see the type); the namespace comes back
        // owned, or as an exception.
        let namespace = unsafe {
            let namespace = qjs::JS_GetModuleNamespace(ctx.as_raw().as_ptr(), self.0.as_ptr());
            if qjs::JS_IsException(namespace) {
                return Err(rquickjs::Error::Exception);
            }
            Value::from_raw(ctx.clone(), namespace)
        };
        namespace
            .into_object()
            .ok_or_else(|| rquickjs::Error::new_from_js("value", "object"))
    }
}

/// A [`Host`] that records console lines, for tests and Bots without store access.
#[derive(Debug, Default)]
pub struct RecordingHost {
    /// `level: text` lines.
    pub lines: RefCell<Vec<String>>,
}

impl Host for RecordingHost {
    fn call(&self, method: &str, _args: serde_json::Value) -> Result<String, (String, serde_json::Value)> {
        Err((
            format!("medplum.{method} is not available here"),
            serde_json::Value::Null,
        ))
    }

    fn log(&self, level: &str, text: String) {
        self.lines.borrow_mut().push(format!("{level}: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, event: &str) -> Result<String, BotError> {
        let engine = Engine::new(SandboxLimits {
            timeout: Duration::from_millis(500),
            memory: 16 * 1024 * 1024,
            ..SandboxLimits::default()
        })
        .unwrap();
        let bytecode = Arc::new(engine.compile(source)?);
        engine.run(
            &bytecode,
            event,
            Rc::new(RecordingHost::default()),
            Duration::from_millis(500),
        )
    }

    #[test]
    fn commonjs_and_es_module_handlers_run() {
        let commonjs = "exports.handler = async function (medplum, event) { return { seen: event.input.x + 1 }; };";
        assert_eq!(run(commonjs, r#"{"input":{"x":1}}"#).unwrap(), r#"{"seen":2}"#);
        let module = "export async function handler(medplum, event) {\n  return event.input;\n}";
        assert_eq!(run(module, r#"{"input":"hi"}"#).unwrap(), r#""hi""#);
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let error = run("exports.handler = async function () {\n  return 1 +;\n};", "{}").unwrap_err();
        assert!(matches!(error, BotError::Syntax { line: Some(2), .. }), "{error:?}");
    }

    #[test]
    fn throws_carry_message_and_line() {
        let error = run(
            "exports.handler = async function () {\n\n  throw new Error('boom');\n};",
            "{}",
        )
        .unwrap_err();
        assert_eq!(
            error,
            BotError::Thrown {
                message: "boom".into(),
                line: Some(3)
            }
        );
    }

    #[test]
    fn limits_end_loops_bombs_and_recursion() {
        assert!(matches!(
            run("exports.handler = async function () { for (;;) {} };", "{}").unwrap_err(),
            BotError::Timeout(_)
        ));
        assert_eq!(
            run(
                "exports.handler = async function () { const a = []; for (;;) a.push('x'.repeat(1000)); };",
                "{}"
            )
            .unwrap_err(),
            BotError::OutOfMemory
        );
        let recursion = run(
            "function f(n) { return f(n + 1) + 1; }\nexports.handler = async function () { return f(0); };",
            "{}",
        )
        .unwrap_err();
        assert!(
            matches!(&recursion, BotError::Thrown { message, .. } if message.contains("stack")),
            "{recursion:?}"
        );
    }

    #[test]
    fn no_state_leaks_between_executions() {
        let engine = Engine::new(SandboxLimits::default()).unwrap();
        let bytecode = Arc::new(
            engine
                .compile(
                    "globalThis.count = (globalThis.count || 0) + 1;\nexports.handler = async () => globalThis.count;",
                )
                .unwrap(),
        );
        for _ in 0..3 {
            let host = Rc::new(RecordingHost::default());
            assert_eq!(engine.run(&bytecode, "{}", host, Duration::from_secs(1)).unwrap(), "1");
        }
    }

    #[test]
    fn nothing_a_bot_changes_reaches_the_next_execution() {
        let engine = Engine::new(SandboxLimits::default()).unwrap();
        let polluter = Arc::new(
            engine
                .compile(
                    "exports.handler = async () => {\n\
                 Object.prototype.polluted = 1; Array.prototype.push = () => 0; JSON.stringify = () => 'forged';\n\
                 globalThis.medplum = null; delete globalThis.console; return 'done'; };",
                )
                .unwrap(),
        );
        let probe = Arc::new(
            engine
                .compile(
                    "exports.handler = async (medplum) =>\n\
                 [({}).polluted, [].push(1), JSON.stringify({a: 1}), typeof medplum.readResource, typeof console.log];",
                )
                .unwrap(),
        );
        let host = || Rc::new(RecordingHost::default());
        let second = Duration::from_secs(1);
        assert_eq!(engine.run(&polluter, "{}", host(), second).unwrap(), r#""done""#);
        assert_eq!(
            engine.run(&probe, "{}", host(), second).unwrap(),
            r#"[null,1,"{\"a\":1}","function","function"]"#
        );
    }

    /// Answers every `medplum` call with a page of `count` small resources.
    struct PagingHost {
        count: usize,
    }

    impl Host for PagingHost {
        fn call(&self, _method: &str, _args: serde_json::Value) -> Result<String, (String, serde_json::Value)> {
            let resource = r#"{"resourceType":"Patient","id":"p","name":[{"family":"Smith","given":["Ann"]}]}"#;
            Ok(format!("[{}]", vec![resource; self.count].join(",")))
        }

        fn log(&self, _level: &str, _text: String) {}
    }

    #[test]
    fn what_a_bot_reads_beyond_the_kept_limit_is_given_back_as_it_is_dropped() {
        // 40 pages of 5,000 Patients: about 17 MB of text and far more as objects, in a heap of
        // 16 MiB. Only the first megabyte of text stays until the execution ends; the rest is
        // freed as the Bot drops each page, as it would be without the restore.
        let engine = Engine::new(SandboxLimits {
            memory: 16 * 1024 * 1024,
            ..SandboxLimits::default()
        })
        .unwrap();
        let bytecode = Arc::new(
            engine
                .compile(
                    "exports.handler = async (medplum) => {\n\
                 let read = 0;\n\
                 for (let page = 0; page < 40; page++) read += (await medplum.searchResources('Patient')).length;\n\
                 return read; };",
                )
                .unwrap(),
        );
        let host = Rc::new(PagingHost { count: 5000 });
        for _ in 0..2 {
            assert_eq!(
                engine.run(&bytecode, "{}", host.clone(), Duration::from_secs(10)),
                Ok("200000".to_owned())
            );
        }
    }

    #[test]
    fn the_template_image_holds_no_compiler_garbage() {
        // Every execution copies the image back. Compiling the prelude in the region made it
        // 304 KiB, 118 KiB of that freed blocks of the compiler's context; the template's own
        // blocks take 186 KiB (110 KiB of live objects, the rest QuickJS's partly used arenas).
        let engine = Engine::new(SandboxLimits::default()).unwrap();
        assert!(engine.template_size() < 224 * 1024, "{} bytes", engine.template_size());
    }

    #[test]
    fn every_execution_starts_from_its_bots_image_and_gives_its_memory_back() {
        let engine = Engine::new(SandboxLimits {
            memory: 32 * 1024 * 1024,
            ..SandboxLimits::default()
        })
        .unwrap();
        let template = engine.template_size();
        assert_eq!(engine.region.borrow().used(), template);
        let hungry = Arc::new(
            engine
                .compile("exports.handler = async () => { const a = []; for (;;) a.push('x'.repeat(1000)); };")
                .unwrap(),
        );
        let small = Arc::new(
            engine
                .compile("exports.handler = async (m, event) => event.input * 2;")
                .unwrap(),
        );
        let second = Duration::from_secs(5);
        let last_image = || engine.loaded.borrow().last().map(|bot| bot.image.len()).unwrap();
        for _ in 0..3 {
            let host = Rc::new(RecordingHost::default());
            assert_eq!(
                engine.run(&hungry, "{}", host, second).unwrap_err(),
                BotError::OutOfMemory
            );
            // The 32 MiB it filled went back as soon as it ended: the region holds the
            // template with the Bot's module read in, a few KiB more.
            let image = last_image();
            assert!(image > template && image < template + 64 * 1024, "{image} bytes");
            assert_eq!(engine.region.borrow().used(), image);
            let host = Rc::new(RecordingHost::default());
            assert_eq!(engine.run(&small, r#"{"input":21}"#, host, second).unwrap(), "42");
        }
        assert_eq!(engine.loaded.borrow().len(), 2);
    }

    #[test]
    fn bots_taking_turns_each_run_their_own_code_however_many_there_are() {
        let engine = Engine::new(SandboxLimits::default()).unwrap();
        let bots: Vec<Arc<Vec<u8>>> = (0..LOADED_IMAGES + 2)
            .map(|index| {
                let source = format!("let runs = 0;\nexports.handler = async () => [{index}, ++runs];");
                Arc::new(engine.compile(&source).unwrap())
            })
            .collect();
        for _ in 0..2 {
            for (index, bytecode) in bots.iter().enumerate().rev() {
                let host = Rc::new(RecordingHost::default());
                // The module's top-level code runs in every execution: `runs` starts at 0.
                assert_eq!(
                    engine.run(bytecode, "{}", host, Duration::from_secs(1)).unwrap(),
                    format!("[{index},1]")
                );
            }
        }
        assert_eq!(engine.loaded.borrow().len(), LOADED_IMAGES);
        // A new version of the first Bot is new bytecode: its own image, its own code.
        let redeployed = Arc::new(engine.compile("exports.handler = async () => 'v2';").unwrap());
        let host = Rc::new(RecordingHost::default());
        assert_eq!(
            engine.run(&redeployed, "{}", host, Duration::from_secs(1)).unwrap(),
            r#""v2""#
        );
    }

    #[test]
    fn math_random_differs_between_executions() {
        let engine = Engine::new(SandboxLimits::default()).unwrap();
        let bytecode = Arc::new(
            engine
                .compile("exports.handler = async () => [Math.random(), Math.random()];")
                .unwrap(),
        );
        let mut draws = Vec::new();
        for _ in 0..3 {
            let host = Rc::new(RecordingHost::default());
            let pair: Vec<f64> =
                serde_json::from_str(&engine.run(&bytecode, "{}", host, Duration::from_secs(1)).unwrap()).unwrap();
            draws.extend(pair);
        }
        assert!(draws.iter().all(|draw| (0.0..1.0).contains(draw)), "{draws:?}");
        let mut distinct = draws.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), draws.len(), "{draws:?}");
    }

    #[test]
    fn eval_and_timers_are_not_there() {
        let probe = "function attempt(f) { try { f(); return 'ran'; } catch (e) { return 'refused'; } }\n\
            exports.handler = async () => [attempt(() => eval('1 + 1')), attempt(() => Function('return 1')()),\n\
            typeof setTimeout, typeof Date, typeof Promise, typeof Map];";
        assert_eq!(
            run(probe, "{}").unwrap(),
            r#"["refused","refused","undefined","function","function","function"]"#
        );
    }

    #[test]
    fn missing_handler_is_reported() {
        assert_eq!(run("exports.other = 1;", "{}").unwrap_err(), BotError::NoHandler);
    }
}
