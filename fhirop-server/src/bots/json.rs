//! JSON text into QuickJS values in one pass over the text, for what the server hands a Bot:
//! its `event` and every reply of the host (a page of search results, a resource).
//!
//! QuickJS's `JSON.parse` makes a string of every key before it looks the key up among the
//! atoms, and grows every array one element at a time; it was the largest part of a Bot
//! execution that reads a page of results. Here the text is read with jiter, a key already
//! known is found without an allocation, and an array is made at its length.
//!
//! The value is the one `JSON.parse` gives: own enumerable data properties in the text's
//! order (a repeated key keeps its first place and takes its last value), `__proto__` an own
//! property like any other key, numbers as doubles, read correctly rounded. Text this does not
//! take, invalid or nested deeper than [`MAX_DEPTH`], goes to `JSON.parse` itself, which gives
//! the same value or throws its own SyntaxError.

#![allow(unsafe_code)]

use std::ffi::c_int;

use jiter::{Jiter, Peek};
use rquickjs::{Ctx, Value, qjs};

/// Nesting this builder recurses to; deeper text is `JSON.parse`'s, whose stack check
/// knows the engine's limit. Everything the server hands a Bot is shallower (request bodies
/// are refused beyond 100 levels).
const MAX_DEPTH: usize = 200;

const DATA_PROPERTY: c_int = qjs::JS_PROP_C_W_E as c_int;

/// The value of the JSON `text`, as `JSON.parse(text)` would return it.
pub(super) fn parse<'js>(ctx: &Ctx<'js>, text: &str) -> rquickjs::Result<Value<'js>> {
    match build(ctx, text) {
        Ok(value) => Ok(value),
        Err(Refusal::Text) => ctx.json_parse(text),
        Err(Refusal::Thrown) => Err(rquickjs::Error::Exception),
    }
}

fn build<'js>(ctx: &Ctx<'js>, text: &str) -> Result<Value<'js>, Refusal> {
    let mut builder = Builder {
        ctx: ctx.as_raw().as_ptr(),
        jiter: Jiter::new(text.as_bytes()),
        elements: Vec::new(),
    };
    let peek = builder.jiter.peek().map_err(|_| Refusal::Text)?;
    let value = builder.value(peek, 0)?;
    // SAFETY: `value` is an owned value of this context; `from_raw` takes that reference, and
    // dropping the handle releases it when trailing text refuses the whole.
    let value = unsafe { Value::from_raw(ctx.clone(), value) };
    builder.jiter.finish().map_err(|_| Refusal::Text)?;
    Ok(value)
}

/// Why the builder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The text is not JSON this builder takes: `JSON.parse` answers it.
    Text,
    /// QuickJS threw (out of memory); the exception is pending in the context.
    Thrown,
}

struct Builder<'t> {
    ctx: *mut qjs::JSContext,
    jiter: Jiter<'t>,
    /// The elements of the arrays being read, innermost last: each array takes its own off the
    /// end once it is complete.
    elements: Vec<qjs::JSValue>,
}

impl Builder<'_> {
    /// The next value, `peek` its first byte; the caller owns what it returns.
    fn value(&mut self, peek: Peek, depth: usize) -> Result<qjs::JSValue, Refusal> {
        match peek {
            Peek::Null => self
                .jiter
                .known_null()
                .map(|()| qjs::JS_NULL)
                .map_err(|_| Refusal::Text),
            Peek::True | Peek::False => match self.jiter.known_bool(peek) {
                Ok(true) => Ok(qjs::JS_TRUE),
                Ok(false) => Ok(qjs::JS_FALSE),
                Err(_) => Err(Refusal::Text),
            },
            Peek::String => {
                let text = self.jiter.known_str().map_err(|_| Refusal::Text)?;
                // SAFETY: the context is live; the pointer and length are a UTF-8 slice.
                owned(unsafe { qjs::JS_NewStringLen(self.ctx, text.as_ptr().cast(), text.len() as qjs::size_t) })
            }
            Peek::Array if depth < MAX_DEPTH => self.array(depth + 1),
            Peek::Object if depth < MAX_DEPTH => self.object(depth + 1),
            _ if peek.is_num() => {
                let number = self.jiter.known_float(peek).map_err(|_| Refusal::Text)?;
                // SAFETY: the context is live. An integral double in range comes back an int.
                Ok(unsafe { qjs::JS_NewNumber(self.ctx, number) })
            }
            _ => Err(Refusal::Text),
        }
    }

    fn array(&mut self, depth: usize) -> Result<qjs::JSValue, Refusal> {
        let first = self.elements.len();
        let mut next = self.jiter.known_array();
        loop {
            let peek = match next {
                Ok(Some(peek)) => peek,
                Ok(None) => break,
                Err(_) => return Err(self.drop_elements(first, Refusal::Text)),
            };
            match self.value(peek, depth) {
                Ok(element) => self.elements.push(element),
                Err(refusal) => return Err(self.drop_elements(first, refusal)),
            }
            next = self.jiter.array_step();
        }
        let Ok(count) = c_int::try_from(self.elements.len() - first) else {
            return Err(self.drop_elements(first, Refusal::Text));
        };
        // SAFETY: the context is live and the elements from `first` are `count` owned values,
        // whose references JS_NewArrayFrom takes over (it frees them when it fails).
        let array = unsafe { qjs::JS_NewArrayFrom(self.ctx, count, self.elements[first..].as_ptr()) };
        self.elements.truncate(first);
        owned(array)
    }

    /// Frees the elements from `first` on (an array not completed) and hands `refusal` back.
    fn drop_elements(&mut self, first: usize, refusal: Refusal) -> Refusal {
        for element in self.elements.drain(first..) {
            // SAFETY: each element is owned by this builder alone.
            unsafe { qjs::JS_FreeValue(self.ctx, element) };
        }
        refusal
    }

    fn object(&mut self, depth: usize) -> Result<qjs::JSValue, Refusal> {
        // SAFETY: the context is live.
        let object = owned(unsafe { qjs::JS_NewObject(self.ctx) })?;
        let filled = self.members(object, depth);
        if filled.is_err() {
            // SAFETY: the object is owned here; its members went in with it.
            unsafe { qjs::JS_FreeValue(self.ctx, object) };
        }
        filled.map(|()| object)
    }

    fn members(&mut self, object: qjs::JSValue, depth: usize) -> Result<(), Refusal> {
        let mut key = self
            .jiter
            .known_object()
            .map_err(|_| Refusal::Text)?
            .map(|key| atom(self.ctx, key));
        while let Some(name) = key {
            let name = name?;
            let peek = match self.jiter.peek() {
                Ok(peek) => peek,
                Err(_) => return Err(self.drop_atom(name, Refusal::Text)),
            };
            let member = match self.value(peek, depth) {
                Ok(member) => member,
                Err(refusal) => return Err(self.drop_atom(name, refusal)),
            };
            // SAFETY: the context is live; JS_DefinePropertyValue takes the member's reference
            // (freeing it when it fails) and leaves the atom's to us.
            let defined = unsafe { qjs::JS_DefinePropertyValue(self.ctx, object, name, member, DATA_PROPERTY) };
            self.drop_atom(name, Refusal::Thrown);
            if defined < 0 {
                return Err(Refusal::Thrown);
            }
            key = self
                .jiter
                .next_key()
                .map_err(|_| Refusal::Text)?
                .map(|key| atom(self.ctx, key));
        }
        Ok(())
    }

    fn drop_atom(&self, name: qjs::JSAtom, refusal: Refusal) -> Refusal {
        // SAFETY: the atom's reference is this builder's.
        unsafe { qjs::JS_FreeAtom(self.ctx, name) };
        refusal
    }
}

/// The atom of a member name, as JSON.parse makes it from the name's string.
fn atom(ctx: *mut qjs::JSContext, key: &str) -> Result<qjs::JSAtom, Refusal> {
    // JS_NewAtomLen finds an interned ASCII name without allocating; it compares bytes with
    // Latin-1 atoms, so any other name goes through a string of its own.
    if key.is_ascii() {
        // SAFETY: the context is live; the pointer and length are the key's bytes.
        let name = unsafe { qjs::JS_NewAtomLen(ctx, key.as_ptr().cast(), key.len() as qjs::size_t) };
        return if name == qjs::JS_ATOM_NULL {
            Err(Refusal::Thrown)
        } else {
            Ok(name)
        };
    }
    // SAFETY: the context is live; the string is freed once the atom holds its own reference.
    unsafe {
        let string = owned(qjs::JS_NewStringLen(ctx, key.as_ptr().cast(), key.len() as qjs::size_t))?;
        let name = qjs::JS_ValueToAtom(ctx, string);
        qjs::JS_FreeValue(ctx, string);
        if name == qjs::JS_ATOM_NULL {
            Err(Refusal::Thrown)
        } else {
            Ok(name)
        }
    }
}

/// A value QuickJS returned, or [`Refusal::Thrown`] when it is the exception marker.
fn owned(value: qjs::JSValue) -> Result<qjs::JSValue, Refusal> {
    // SAFETY: reading a value's tag has no preconditions beyond holding it.
    if unsafe { qjs::JS_IsException(value) } {
        Err(Refusal::Thrown)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rquickjs::{Context, Function, Runtime};

    /// What a script sees of `value`: its JSON and, for every object in it, its own keys and
    /// whether its prototype is Object.prototype (JSON.stringify alone would hide both).
    const DESCRIBE: &str = r#"(value) => {
        const shapes = [];
        const walk = (v) => {
            if (v === null || typeof v !== 'object') return;
            shapes.push([Array.isArray(v), Object.getPrototypeOf(v) === (Array.isArray(v) ? Array.prototype : Object.prototype), Object.keys(v)]);
            for (const key of Object.keys(v)) walk(v[key]);
        };
        walk(value);
        return JSON.stringify([value, shapes, Object.is(value, -0)]);
    }"#;

    /// What this builder and JSON.parse make of `text`; `taken` says whether the builder
    /// itself must answer (or must hand the text to JSON.parse).
    fn both(text: &str, taken: bool) -> (Result<String, String>, Result<String, String>) {
        let runtime = Runtime::new().expect("a runtime");
        let context = Context::full(&runtime).expect("a context");
        context.with(|ctx| {
            let describe: Function = ctx.eval(DESCRIBE).expect("the describer");
            match build(&ctx, text) {
                Ok(_) => assert!(taken, "the builder took {text}"),
                Err(refusal) => assert_eq!((taken, refusal), (false, Refusal::Text), "{text}"),
            }
            (
                seen(&ctx, &describe, parse(&ctx, text)),
                seen(&ctx, &describe, ctx.json_parse(text)),
            )
        })
    }

    fn seen<'js>(
        ctx: &Ctx<'js>,
        describe: &Function<'js>,
        parsed: rquickjs::Result<Value<'js>>,
    ) -> Result<String, String> {
        match parsed {
            Ok(value) => Ok(describe.call::<_, String>((value,)).expect("described")),
            Err(rquickjs::Error::Exception) => Err(ctx
                .catch()
                .as_exception()
                .map(|exception| exception.to_string())
                .unwrap_or_default()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[track_caller]
    fn same_as_json_parse(text: &str) -> String {
        let (ours, quickjs) = both(text, true);
        assert_eq!(ours, quickjs, "{text}");
        ours.expect("valid JSON")
    }

    #[track_caller]
    fn handed_to_json_parse(text: &str) -> Result<String, String> {
        let (ours, quickjs) = both(text, false);
        assert_eq!(ours, quickjs, "{text}");
        ours
    }

    #[test]
    fn values_are_the_ones_json_parse_gives() {
        for text in [
            r#"{"resourceType":"Patient","name":[{"family":"Smith","given":["John","Q"]}],"active":true,"deceasedBoolean":false,"photo":null}"#,
            r#" [ 1 , -2 , 3.25 , 1e3 , 2E-3 , 12345678901234567890 , 0.1 , 123456789.123456789 ] "#,
            r#"{"a":{},"b":[],"c":[[],[{}]],"d":""}"#,
            r#""a string alone""#,
            "42",
            "null",
            r#"{"text":"tab\t quote\" backslash\\ slash\/ line\n unicode \u00e9 \u20ac \ud83d\ude00 raw é€😀"}"#,
        ] {
            same_as_json_parse(text);
        }
    }

    #[test]
    fn member_names_keep_json_parse_order_and_meaning() {
        // A repeated name keeps its first place and its last value; index-like names come
        // first in ascending order; __proto__ is an own property, not the prototype.
        let seen = same_as_json_parse(r#"{"b":1,"a":2,"b":3,"10":4,"2":5,"__proto__":{"x":1},"é":6,"constructor":7}"#);
        assert!(
            seen.starts_with(r#"[{"2":5,"10":4,"b":3,"a":2,"__proto__":{"x":1},"é":6,"constructor":7}"#),
            "{seen}"
        );
        same_as_json_parse(r#"{"":1,"-1":2,"01":3,"4294967295":4,"4294967294":5}"#);
    }

    #[test]
    fn numbers_are_doubles_as_json_parse_rounds_them() {
        let seen = same_as_json_parse("[-0, 1e400, -1e400, 9007199254740993, 5e-324, 0.30000000000000004]");
        assert!(
            seen.starts_with("[[0,null,null,9007199254740992,5e-324,0.30000000000000004]"),
            "{seen}"
        );
        assert!(same_as_json_parse("-0").ends_with(",true]"));
    }

    #[test]
    fn text_it_does_not_take_gets_json_parse_answer() {
        // Invalid text throws JSON.parse's own SyntaxError.
        for text in [
            "",
            "{",
            r#"{"a":1,}"#,
            "[1 2]",
            "NaN",
            "tru",
            r#"{"a":1} x"#,
            "'single'",
        ] {
            let thrown = handed_to_json_parse(text).expect_err(text);
            assert!(thrown.contains("at <input>:1:"), "{text}: {thrown}");
        }
        // A lone surrogate is valid JSON that no Rust string holds.
        let lone = handed_to_json_parse(r#"["\ud800", "\udc00x"]"#).expect("valid JSON");
        assert!(lone.starts_with(r#"[["\ud800","\udc00x"]"#), "{lone}");
        // Deeper than this builder recurses.
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        handed_to_json_parse(&deep).expect("valid JSON");
        let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH + 5), "}".repeat(MAX_DEPTH + 5));
        handed_to_json_parse(&deep_objects).expect("valid JSON");
        // As deep as it recurses, it answers itself.
        same_as_json_parse(&format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH)));
    }
}
