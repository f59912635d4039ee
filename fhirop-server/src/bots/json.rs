//! JSON between the server and a Bot's QuickJS values, in one pass each way: the text the
//! server hands a Bot (its `event`, every reply of the host) becomes values, and the value a
//! handler returns becomes text.
//!
//! QuickJS's `JSON.parse` makes a string of every key before it looks the key up among the
//! atoms, and grows every array one element at a time; it was the largest part of a Bot
//! execution that reads a page of results. Here the text is read with jiter, a key already
//! known is found without an allocation, and an array is made at its length. Its
//! `JSON.stringify` quotes every key into a new string and looks `toJSON` up on every value;
//! [`stringify`] writes plain objects and arrays straight into one buffer.
//!
//! Both give what QuickJS's own functions give. Parsed: own enumerable data properties in the
//! text's order (a repeated key keeps its first place and takes its last value), `__proto__`
//! an own property like any other key, numbers as doubles, read correctly rounded.
//! Stringified: own enumerable string-keyed properties in property order, `undefined`,
//! functions and symbols left out of objects and `null` in arrays, non-finite numbers `null`.
//! Whatever this module does not take (invalid text, lone surrogates, nesting deeper than
//! [`MAX_DEPTH`], a `toJSON`, an accessor, any object but a plain object or array) goes to
//! QuickJS's own function before anything observable has happened, and gets its answer or
//! its exception.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io::Write as _;
use std::ptr;

use jiter::{Jiter, Peek};
use rquickjs::{Ctx, Value, qjs};

/// Nesting this module recurses to; anything deeper is QuickJS's, whose stack check knows
/// the engine's limit (and whose `JSON.stringify` names a cycle). Everything the server hands
/// a Bot is shallower (request bodies are refused beyond 100 levels).
const MAX_DEPTH: usize = 200;

const DATA_PROPERTY: c_int = qjs::JS_PROP_C_W_E as c_int;

/// The value of the JSON `text`, as `JSON.parse(text)` would return it.
pub(super) fn parse<'js>(ctx: &Ctx<'js>, text: &str) -> rquickjs::Result<Value<'js>> {
    match build(ctx, text) {
        Ok(value) => Ok(value),
        Err(Refusal::Unusual) => ctx.json_parse(text),
        Err(Refusal::Thrown) => Err(rquickjs::Error::Exception),
    }
}

fn build<'js>(ctx: &Ctx<'js>, text: &str) -> Result<Value<'js>, Refusal> {
    let mut builder = Builder {
        ctx: ctx.as_raw().as_ptr(),
        jiter: Jiter::new(text.as_bytes()),
        elements: Vec::new(),
    };
    let peek = builder.jiter.peek().map_err(|_| Refusal::Unusual)?;
    let value = builder.value(peek, 0)?;
    // SAFETY: `value` is an owned value of this context; `from_raw` takes that reference, and
    // dropping the handle releases it when trailing text refuses the whole.
    let value = unsafe { Value::from_raw(ctx.clone(), value) };
    builder.jiter.finish().map_err(|_| Refusal::Unusual)?;
    Ok(value)
}

/// Why the builder or the writer stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not what this module takes: QuickJS's own JSON functions answer it.
    Unusual,
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
                .map_err(|_| Refusal::Unusual),
            Peek::True | Peek::False => match self.jiter.known_bool(peek) {
                Ok(true) => Ok(qjs::JS_TRUE),
                Ok(false) => Ok(qjs::JS_FALSE),
                Err(_) => Err(Refusal::Unusual),
            },
            Peek::String => {
                let text = self.jiter.known_str().map_err(|_| Refusal::Unusual)?;
                // SAFETY: the context is live; the pointer and length are a UTF-8 slice.
                owned(unsafe { qjs::JS_NewStringLen(self.ctx, text.as_ptr().cast(), text.len() as qjs::size_t) })
            }
            Peek::Array if depth < MAX_DEPTH => self.array(depth + 1),
            Peek::Object if depth < MAX_DEPTH => self.object(depth + 1),
            _ if peek.is_num() => {
                let number = self.jiter.known_float(peek).map_err(|_| Refusal::Unusual)?;
                // SAFETY: the context is live. An integral double in range comes back an int.
                Ok(unsafe { qjs::JS_NewNumber(self.ctx, number) })
            }
            _ => Err(Refusal::Unusual),
        }
    }

    fn array(&mut self, depth: usize) -> Result<qjs::JSValue, Refusal> {
        let first = self.elements.len();
        let mut next = self.jiter.known_array();
        loop {
            let peek = match next {
                Ok(Some(peek)) => peek,
                Ok(None) => break,
                Err(_) => return Err(self.drop_elements(first, Refusal::Unusual)),
            };
            match self.value(peek, depth) {
                Ok(element) => self.elements.push(element),
                Err(refusal) => return Err(self.drop_elements(first, refusal)),
            }
            next = self.jiter.array_step();
        }
        let Ok(count) = c_int::try_from(self.elements.len() - first) else {
            return Err(self.drop_elements(first, Refusal::Unusual));
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
            .map_err(|_| Refusal::Unusual)?
            .map(|key| OwnedAtom::new(self.ctx, key));
        while let Some(name) = key {
            let name = name?;
            let peek = self.jiter.peek().map_err(|_| Refusal::Unusual)?;
            let member = self.value(peek, depth)?;
            // SAFETY: the context is live; JS_DefinePropertyValue takes the member's reference
            // (freeing it when it fails) and leaves the atom's to `name`.
            if unsafe { qjs::JS_DefinePropertyValue(self.ctx, object, name.atom, member, DATA_PROPERTY) } < 0 {
                return Err(Refusal::Thrown);
            }
            key = self
                .jiter
                .next_key()
                .map_err(|_| Refusal::Unusual)?
                .map(|key| OwnedAtom::new(self.ctx, key));
        }
        Ok(())
    }
}

/// An atom this module holds a reference to, released when dropped.
struct OwnedAtom {
    ctx: *mut qjs::JSContext,
    atom: qjs::JSAtom,
}

impl OwnedAtom {
    /// The atom of a member name, as JSON.parse makes it from the name's string.
    fn new(ctx: *mut qjs::JSContext, key: &str) -> Result<OwnedAtom, Refusal> {
        // JS_NewAtomLen finds an interned ASCII name without allocating; it compares bytes
        // with Latin-1 atoms, so any other name goes through a string of its own.
        let atom = if key.is_ascii() {
            // SAFETY: the context is live; the pointer and length are the key's bytes.
            unsafe { qjs::JS_NewAtomLen(ctx, key.as_ptr().cast(), key.len() as qjs::size_t) }
        } else {
            // SAFETY: the context is live; the string is freed once the atom holds its own
            // reference.
            unsafe {
                let string = owned(qjs::JS_NewStringLen(ctx, key.as_ptr().cast(), key.len() as qjs::size_t))?;
                let atom = qjs::JS_ValueToAtom(ctx, string);
                qjs::JS_FreeValue(ctx, string);
                atom
            }
        };
        OwnedAtom::checked(ctx, atom)
    }

    /// The atom of an array index.
    fn index(ctx: *mut qjs::JSContext, index: u32) -> Result<OwnedAtom, Refusal> {
        // SAFETY: the context is live.
        OwnedAtom::checked(ctx, unsafe { qjs::JS_NewAtomUInt32(ctx, index) })
    }

    fn checked(ctx: *mut qjs::JSContext, atom: qjs::JSAtom) -> Result<OwnedAtom, Refusal> {
        if atom == qjs::JS_ATOM_NULL {
            Err(Refusal::Thrown)
        } else {
            Ok(OwnedAtom { ctx, atom })
        }
    }
}

impl Drop for OwnedAtom {
    fn drop(&mut self) {
        // SAFETY: the reference is this handle's.
        unsafe { qjs::JS_FreeAtom(self.ctx, self.atom) };
    }
}

/// Writes `text` as a JSON string with JSON.stringify's escapes: the short ones, `\u00xx`
/// for the other controls, nothing else.
fn quoted(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
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

/// `JSON.stringify(value)`; `None` where that is `undefined` (a function, a symbol).
pub(super) fn stringify<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<Option<String>> {
    match write(ctx, &value) {
        Ok(text) => Ok(text),
        Err(Refusal::Unusual) => match ctx.json_stringify(value)? {
            Some(text) => text.to_string().map(Some),
            None => Ok(None),
        },
        Err(Refusal::Thrown) => Err(rquickjs::Error::Exception),
    }
}

fn write(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<Option<String>, Refusal> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the context is live; the probe object is released at once.
    let plain_object_class = unsafe {
        let probe = owned(qjs::JS_NewObject(raw))?;
        let class = qjs::JS_GetClassID(probe);
        qjs::JS_FreeValue(raw, probe);
        class
    };
    let mut writer = Writer {
        ctx: raw,
        out: Vec::new(),
        plain_object_class,
        to_json: OwnedAtom::new(raw, "toJSON")?,
        length: OwnedAtom::new(raw, "length")?,
    };
    if !writer.value(value.as_raw(), 0)? {
        return Ok(None);
    }
    String::from_utf8(writer.out).map(Some).map_err(|_| Refusal::Unusual)
}

struct Writer {
    ctx: *mut qjs::JSContext,
    out: Vec<u8>,
    plain_object_class: qjs::JSClassID,
    to_json: OwnedAtom,
    length: OwnedAtom,
}

impl Writer {
    /// Writes `value` (borrowed); false when JSON has no text for it (`undefined`, a function,
    /// a symbol), which the caller leaves out or writes as `null`.
    fn value(&mut self, value: qjs::JSValue, depth: usize) -> Result<bool, Refusal> {
        // SAFETY: `value` is a live value of this context, borrowed for the call.
        let tag = unsafe { qjs::JS_VALUE_GET_TAG(value) };
        match tag {
            qjs::JS_TAG_NULL => self.out.extend_from_slice(b"null"),
            qjs::JS_TAG_BOOL => {
                // SAFETY: a bool-tagged value.
                let literal: &[u8] = if unsafe { qjs::JS_VALUE_GET_BOOL(value) } {
                    b"true"
                } else {
                    b"false"
                };
                self.out.extend_from_slice(literal);
            }
            // SAFETY: an int-tagged value.
            qjs::JS_TAG_INT => self.integer(i128::from(unsafe { qjs::JS_VALUE_GET_INT(value) })),
            qjs::JS_TAG_FLOAT64 => {
                // SAFETY: a float-tagged value.
                let number = unsafe { qjs::JS_VALUE_GET_FLOAT64(value) };
                if !number.is_finite() {
                    self.out.extend_from_slice(b"null");
                } else if number.fract() == 0.0 && number.abs() < 1e21 {
                    // Integral doubles below 10^21 are written out in full, as JavaScript
                    // does; -0 is 0.
                    self.integer(number as i128);
                } else {
                    // JavaScript's own shortest form (1.5e-7, 1e+21).
                    self.text_of(value, |out, text| out.extend_from_slice(text.as_bytes()))?;
                }
            }
            qjs::JS_TAG_STRING | qjs::JS_TAG_STRING_ROPE => {
                self.text_of(value, quoted)?;
            }
            qjs::JS_TAG_UNDEFINED | qjs::JS_TAG_SYMBOL => return Ok(false),
            qjs::JS_TAG_OBJECT => {
                // SAFETY: the context is live and `value` an object.
                if unsafe { qjs::JS_IsFunction(self.ctx, value) } {
                    return Ok(false);
                }
                if depth >= MAX_DEPTH || self.has_to_json(value)? {
                    return Err(Refusal::Unusual);
                }
                // SAFETY: `value` is an object.
                let class = unsafe { qjs::JS_GetClassID(value) };
                // SAFETY: as above.
                if unsafe { qjs::JS_IsArray(value) } {
                    self.array(value, depth + 1)?;
                } else if class == self.plain_object_class {
                    self.object(value, depth + 1)?;
                } else {
                    return Err(Refusal::Unusual);
                }
            }
            // BigInts (which JSON.stringify refuses) and anything else.
            _ => return Err(Refusal::Unusual),
        }
        Ok(true)
    }

    fn integer(&mut self, number: i128) {
        let _ = write!(self.out, "{number}");
    }

    /// Hands `write` the UTF-8 text of `value` (a string or a number); a string holding a
    /// lone surrogate, which no UTF-8 holds, is QuickJS's to write.
    fn text_of(&mut self, value: qjs::JSValue, write: impl FnOnce(&mut Vec<u8>, &str)) -> Result<(), Refusal> {
        let mut length: qjs::size_t = 0;
        // SAFETY: the context is live; an ASCII string's own bytes are lent, not copied.
        let text = unsafe { qjs::JS_ToCStringLen2(self.ctx, &mut length, value, false) };
        self.lent_text(text, length, write)
    }

    /// Hands `write` the text QuickJS lent at `text` (null: it threw), then releases it.
    fn lent_text(
        &mut self,
        text: *const std::ffi::c_char,
        length: qjs::size_t,
        write: impl FnOnce(&mut Vec<u8>, &str),
    ) -> Result<(), Refusal> {
        if text.is_null() {
            return Err(Refusal::Thrown);
        }
        // SAFETY: QuickJS returned `length` readable bytes at `text`.
        let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), length as usize) };
        let written = match std::str::from_utf8(bytes) {
            Ok(text) => {
                write(&mut self.out, text);
                Ok(())
            }
            Err(_) => Err(Refusal::Unusual),
        };
        // SAFETY: `text` is a C string of this context, released once.
        unsafe { qjs::JS_FreeCString(self.ctx, text) };
        written
    }

    /// Whether `object` or a prototype of it has a `toJSON`, looked up without running
    /// anything: a proxy on the way is QuickJS's.
    fn has_to_json(&self, object: qjs::JSValue) -> Result<bool, Refusal> {
        // SAFETY: the context is live; each prototype reference taken is released.
        unsafe {
            let mut current = qjs::JS_DupValue(self.ctx, object);
            loop {
                let found = if qjs::JS_VALUE_GET_TAG(current) != qjs::JS_TAG_OBJECT {
                    qjs::JS_FreeValue(self.ctx, current);
                    return Ok(false);
                } else if qjs::JS_IsProxy(current) {
                    Err(Refusal::Unusual)
                } else {
                    match qjs::JS_GetOwnProperty(self.ctx, ptr::null_mut(), current, self.to_json.atom) {
                        0 => Ok(false),
                        1 => Ok(true),
                        _ => Err(Refusal::Thrown),
                    }
                };
                if found != Ok(false) {
                    qjs::JS_FreeValue(self.ctx, current);
                    return found;
                }
                let prototype = qjs::JS_GetPrototype(self.ctx, current);
                qjs::JS_FreeValue(self.ctx, current);
                current = owned(prototype)?;
            }
        }
    }

    /// An own data property of `object`: its value (owned), `None` when there is none, or
    /// [`Refusal::Unusual`] for an accessor, whose getter only QuickJS may run.
    fn own_data(&self, object: qjs::JSValue, name: qjs::JSAtom) -> Result<Option<qjs::JSValue>, Refusal> {
        let mut descriptor = qjs::JSPropertyDescriptor {
            flags: 0,
            value: qjs::JS_UNDEFINED,
            getter: qjs::JS_UNDEFINED,
            setter: qjs::JS_UNDEFINED,
        };
        // SAFETY: the context is live; a found descriptor's three values are ours to release.
        unsafe {
            match qjs::JS_GetOwnProperty(self.ctx, &mut descriptor, object, name) {
                0 => return Ok(None),
                1 => {}
                _ => return Err(Refusal::Thrown),
            }
            qjs::JS_FreeValue(self.ctx, descriptor.getter);
            qjs::JS_FreeValue(self.ctx, descriptor.setter);
            if descriptor.flags & qjs::JS_PROP_GETSET as c_int != 0 {
                qjs::JS_FreeValue(self.ctx, descriptor.value);
                return Err(Refusal::Unusual);
            }
        }
        Ok(Some(descriptor.value))
    }

    /// Writes the owned `value` and releases it.
    fn owned_value(&mut self, value: qjs::JSValue, depth: usize) -> Result<bool, Refusal> {
        let written = self.value(value, depth);
        // SAFETY: the value is this writer's.
        unsafe { qjs::JS_FreeValue(self.ctx, value) };
        written
    }

    fn array(&mut self, array: qjs::JSValue, depth: usize) -> Result<(), Refusal> {
        let length = match self.own_data(array, self.length.atom)? {
            // SAFETY: an array's length is an int or a float, never a reference.
            Some(length) => match unsafe { qjs::JS_VALUE_GET_TAG(length) } {
                qjs::JS_TAG_INT => {
                    u32::try_from(unsafe { qjs::JS_VALUE_GET_INT(length) }).map_err(|_| Refusal::Unusual)?
                }
                _ => return Err(Refusal::Unusual),
            },
            None => return Err(Refusal::Unusual),
        };
        self.out.push(b'[');
        for index in 0..length {
            if index > 0 {
                self.out.push(b',');
            }
            let name = OwnedAtom::index(self.ctx, index)?;
            // A hole would be read through the prototype chain: QuickJS's to do.
            let element = self.own_data(array, name.atom)?.ok_or(Refusal::Unusual)?;
            if !self.owned_value(element, depth)? {
                self.out.extend_from_slice(b"null");
            }
        }
        self.out.push(b']');
        Ok(())
    }

    fn object(&mut self, object: qjs::JSValue, depth: usize) -> Result<(), Refusal> {
        let mut names: *mut qjs::JSPropertyEnum = ptr::null_mut();
        let mut count: u32 = 0;
        let flags = (qjs::JS_GPN_STRING_MASK | qjs::JS_GPN_ENUM_ONLY) as c_int;
        // SAFETY: the context is live; the table is released below.
        if unsafe { qjs::JS_GetOwnPropertyNames(self.ctx, &mut names, &mut count, object, flags) } < 0 {
            return Err(Refusal::Thrown);
        }
        let written = self.members(object, names, count, depth);
        // SAFETY: the table came from JS_GetOwnPropertyNames with `count` entries.
        unsafe { qjs::JS_FreePropertyEnum(self.ctx, names, count) };
        written
    }

    fn members(
        &mut self,
        object: qjs::JSValue,
        names: *mut qjs::JSPropertyEnum,
        count: u32,
        depth: usize,
    ) -> Result<(), Refusal> {
        let names = if count == 0 {
            &[][..]
        } else {
            // SAFETY: JS_GetOwnPropertyNames filled `count` entries at `names`.
            unsafe { std::slice::from_raw_parts(names, count as usize) }
        };
        self.out.push(b'{');
        let mut first = true;
        for name in names {
            let Some(member) = self.own_data(object, name.atom)? else {
                continue;
            };
            let start = self.out.len();
            if !first {
                self.out.push(b',');
            }
            self.name(name.atom)?;
            self.out.push(b':');
            if self.owned_value(member, depth)? {
                first = false;
            } else {
                self.out.truncate(start);
            }
        }
        self.out.push(b'}');
        Ok(())
    }

    fn name(&mut self, name: qjs::JSAtom) -> Result<(), Refusal> {
        let mut length: qjs::size_t = 0;
        // SAFETY: the context is live.
        let text = unsafe { qjs::JS_AtomToCStringLen(self.ctx, &mut length, name) };
        self.lent_text(text, length, quoted)
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
                Err(refusal) => assert_eq!((taken, refusal), (false, Refusal::Unusual), "{text}"),
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

    /// What this writer and JSON.stringify make of the value of the script `source`; `taken`
    /// says whether the writer itself must answer.
    #[track_caller]
    fn stringified(source: &str, taken: bool) -> Option<String> {
        let runtime = Runtime::new().expect("a runtime");
        let context = Context::full(&runtime).expect("a context");
        context.with(|ctx| {
            let value: Value = ctx.eval(source).expect("the value");
            match write(&ctx, &value) {
                Ok(_) => assert!(taken, "the writer took {source}"),
                Err(refusal) => assert_eq!((taken, refusal), (false, Refusal::Unusual), "{source}"),
            }
            let ours = stringify(&ctx, value.clone()).expect("stringified");
            let quickjs = ctx
                .json_stringify(value)
                .expect("stringified by QuickJS")
                .map(|text| text.to_string().expect("text"));
            assert_eq!(ours, quickjs, "{source}");
            ours
        })
    }

    #[test]
    fn plain_values_are_written_as_json_stringify_writes_them() {
        for source in [
            r#"({resourceType: 'Patient', name: [{family: 'Smith', given: ['John']}], active: true, photo: null})"#,
            r#"[1, -2, 3.25, 1e3, 2e-3, 1e21, 1e-7, 1.5e-7, 123456789.123456789, 0.1 + 0.2, 2 ** 53 + 2, -0, 1e20, NaN, Infinity, -Infinity]"#,
            r#"({text: 'tab\t quote" backslash\\ line\n \u0001 \u007f \u2028 é € 😀'})"#,
            r#"({b: 1, a: 2, 10: 3, 2: 4, "": 5, "é": 6, __proto__: null})"#,
            r#"({skipped: undefined, f() {}, s: Symbol('x'), [Symbol('k')]: 1, kept: [undefined, () => 1, Symbol('y')]})"#,
            r#"Object.defineProperty({shown: 1}, 'hidden', {value: 2, enumerable: false})"#,
            r#"Object.assign(Object.create(null), {bare: true})"#,
            r#"Object.assign(Object.create({inherited: 1}), {own: 2})"#,
            "({a: {}, b: [], c: [[], [{}]]})",
            // An array's other properties are not written.
            "Object.assign([1, 2], {extra: true})",
            "'a string alone'",
            "42",
            "null",
            "false",
        ] {
            stringified(source, true);
        }
        assert_eq!(stringified("undefined", true), None);
        assert_eq!(stringified("(function () {})", true), None);
        assert_eq!(
            stringified("[-0, 1e21, 1.5e-7]", true).as_deref(),
            Some("[0,1e+21,1.5e-7]")
        );
    }

    #[test]
    fn values_it_does_not_take_get_json_stringify_answer() {
        for source in [
            "({when: new Date(0)})",
            "({own: {toJSON() { return 'mine'; }}})",
            "Object.prototype.toJSON = function () { return 'everyone'; }; ({a: 1})",
            "({wrapped: [new String('s'), new Number(1), new Boolean(false)]})",
            "({map: new Map([[1, 2]]), set: new Set([1])})",
            "[1, , 3]",
            r#"["\ud800", "x\udc00"]"#,
            "({proxied: new Proxy({a: 1}, {})})",
            "Object.setPrototypeOf({a: 1}, new Proxy({}, {}))",
            "(function () { return arguments; })(1, 2)",
        ] {
            stringified(source, false);
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        stringified(&deep, false);
    }

    #[test]
    fn a_getter_runs_once_in_json_stringify_order() {
        let runtime = Runtime::new().expect("a runtime");
        let context = Context::full(&runtime).expect("a context");
        context.with(|ctx| {
            let source = "let reads = 0; const o = {a: 1, get b() { return ++reads; }, c: 3}; [o, o]";
            let value: Value = ctx.eval(source).expect("the value");
            assert_eq!(write(&ctx, &value).err(), Some(Refusal::Unusual));
            let text = stringify(&ctx, value).expect("stringified");
            assert_eq!(text.as_deref(), Some(r#"[{"a":1,"b":1,"c":3},{"a":1,"b":2,"c":3}]"#));
        });
    }

    #[test]
    fn what_json_stringify_refuses_throws_its_own_error() {
        let runtime = Runtime::new().expect("a runtime");
        let context = Context::full(&runtime).expect("a context");
        context.with(|ctx| {
            for source in ["const o = {}; o.self = o; o", "({big: 10n})"] {
                let value: Value = ctx.eval(source).expect("the value");
                assert!(
                    matches!(stringify(&ctx, value), Err(rquickjs::Error::Exception)),
                    "{source}"
                );
                let thrown = ctx.catch().as_exception().map(|exception| exception.to_string());
                assert!(thrown.is_some_and(|message| !message.is_empty()), "{source}");
            }
        });
    }
}
