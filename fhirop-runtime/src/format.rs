//! Content negotiation and the JSON wire format: which media type and layout a response
//! uses, what a request body may be, and how a resource is written.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::outcome::{IssueType, OperationError};

/// `application/fhir+json; charset=utf-8`
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// `application/json; charset=utf-8`
pub const PLAIN_JSON: &str = "application/json; charset=utf-8";

/// The deepest JSON nesting a request body may have, unless the server sets another.
pub const MAX_JSON_DEPTH: usize = 100;

/// How much a request body may ask of the server before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// `Parameters.parameter` entries (beyond → 400 `too-costly`).
    pub max_parameters: usize,
    /// JSON nesting depth (beyond → 400 `structure`).
    pub max_json_depth: usize,
}

impl Default for InputLimits {
    fn default() -> InputLimits {
        InputLimits {
            max_parameters: crate::binding::MAX_PARAMETER_ENTRIES,
            max_json_depth: MAX_JSON_DEPTH,
        }
    }
}

/// How a response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseFormat {
    /// `application/json` instead of `application/fhir+json`, because the client asked.
    pub plain_json: bool,
    /// `_pretty=true`.
    pub pretty: bool,
}

impl ResponseFormat {
    /// The Content-Type header value.
    pub fn content_type(self) -> &'static str {
        if self.plain_json { PLAIN_JSON } else { FHIR_JSON }
    }

    /// [`ResponseFormat::content_type`] as a header value, checked once at compile time rather
    /// than byte by byte on every response.
    fn content_type_header(self) -> HeaderValue {
        const FHIR_JSON_HEADER: HeaderValue = HeaderValue::from_static(FHIR_JSON);
        const PLAIN_JSON_HEADER: HeaderValue = HeaderValue::from_static(PLAIN_JSON);
        if self.plain_json {
            PLAIN_JSON_HEADER
        } else {
            FHIR_JSON_HEADER
        }
    }

    /// Writes `body` as the response.
    pub fn respond(self, status: StatusCode, body: &Value) -> HttpResponse {
        let bytes = if self.pretty {
            serde_json::to_vec_pretty(body)
        } else {
            serde_json::to_vec(body)
        };
        match bytes {
            Ok(bytes) => self.respond_bytes(status, body_bytes(bytes)),
            Err(error) => HttpResponse::InternalServerError()
                .content_type(FHIR_JSON)
                .body(format!(
                    r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"exception","diagnostics":"the response could not be serialized: {}"}}]}}"#,
                    error.to_string().replace('"', "'")
                )),
        }
    }

    /// Writes already-serialized JSON as the response.
    pub fn respond_bytes(self, status: StatusCode, body: impl Into<bytes::Bytes>) -> HttpResponse {
        // Built directly rather than through HttpResponseBuilder, whose Option and Result
        // around the response cost more than the one header it sets here.
        let mut response = HttpResponse::with_body(status, actix_web::body::BoxBody::new(body.into()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, self.content_type_header());
        response
    }

    /// Writes pre-serialized bytes that are gzip-encoded (for a client that [`accepts_gzip`]).
    pub fn respond_gzip(self, status: StatusCode, body: impl Into<bytes::Bytes>) -> HttpResponse {
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, self.content_type_header()))
            .insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")))
            .body(body.into())
    }

    /// Writes an error as an OperationOutcome with its status and headers.
    pub fn respond_error(self, error: &OperationError) -> HttpResponse {
        tracing::debug!(target: "fhirop::outcome", status = error.status.as_u16(), "{error}");
        let mut response = self.respond(error.status, &error.outcome.to_json());
        for (name, value) in &error.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::try_from(*name),
                HeaderValue::try_from(value.as_str()),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Serialized text as a body, in one block of its exact size. `Bytes` made from a `Vec` with
/// room to spare allocates a shared header beside it and frees it with an atomic count (perf:
/// 13 ns of a native call's 5.7 µs); shrinking the block first costs a few instructions, since
/// the allocator shrinks in place what it can, which is all text that grew by doubling.
pub fn body_bytes(text: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(text.into_boxed_slice())
}

/// Whether the request's `Accept-Encoding` takes gzip (`gzip` or `*` with a non-zero `q`, and
/// no `gzip;q=0`).
pub fn accepts_gzip(request: &HttpRequest) -> bool {
    let mut accepted = false;
    for value in request.headers().get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|parameter| {
                let parameter = parameter.trim();
                parameter
                    .strip_prefix("q=")
                    .or_else(|| parameter.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if coding.eq_ignore_ascii_case("gzip") {
                if refused {
                    return false;
                }
                accepted = true;
            } else if coding == "*" && !refused {
                accepted = true;
            }
        }
    }
    accepted
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acceptable {
    FhirJson,
    PlainJson,
    Xml,
    Other,
}

fn classify(media_type: &str) -> Acceptable {
    const KINDS: [(&[&str], Acceptable); 3] = [
        (
            &[
                "application/fhir+json",
                "application/json+fhir",
                "json",
                "*/*",
                "application/*",
            ],
            Acceptable::FhirJson,
        ),
        (&["application/json", "text/json"], Acceptable::PlainJson),
        (
            &[
                "application/fhir+xml",
                "application/xml+fhir",
                "application/xml",
                "text/xml",
                "xml",
                "html",
                "text/html",
            ],
            Acceptable::Xml,
        ),
    ];
    let media_type = media_type.trim();
    KINDS
        .iter()
        .find(|(names, _)| names.iter().any(|name| same_media_type(media_type, name)))
        .map_or(Acceptable::Other, |(_, kind)| *kind)
}

/// Whether `given` names `known`, ignoring case. `_format=application/fhir+json` typed without
/// percent-encoding arrives with a space for the `+`.
fn same_media_type(given: &str, known: &str) -> bool {
    given.len() == known.len()
        && given
            .bytes()
            .zip(known.bytes())
            .all(|(given, known)| given.eq_ignore_ascii_case(&known) || (given == b' ' && known == b'+'))
}

/// The name–value pairs of a query string, as `form_urlencoded::parse` reads them (`+` is a
/// space, percent escapes are decoded with invalid UTF-8 replaced, a pair without `=` has an
/// empty value, empty pairs are skipped). A pair without `+` or `%`, nearly every one, is
/// borrowed as it stands instead of going through the decoder.
pub fn query_pairs(query: &str) -> QueryPairs<'_> {
    QueryPairs { rest: query }
}

/// The iterator of [`query_pairs`].
#[derive(Debug, Clone)]
pub struct QueryPairs<'q> {
    rest: &'q str,
}

impl<'q> Iterator for QueryPairs<'q> {
    type Item = (Cow<'q, str>, Cow<'q, str>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            // One pass over the bytes finds the pair's end, its `=` and whether it needs
            // decoding: every request with a query string comes through here, and `str::split`
            // with `contains` and `split_once` scanned it three times, decoding chars.
            let mut end = self.rest.len();
            let mut equals = None;
            let mut encoded = false;
            for (index, byte) in self.rest.bytes().enumerate() {
                match byte {
                    b'&' => {
                        end = index;
                        break;
                    }
                    b'=' if equals.is_none() => equals = Some(index),
                    b'+' | b'%' => encoded = true,
                    _ => {}
                }
            }
            // `&` and `=` are ASCII, so every index above is a char boundary.
            let pair = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if pair.is_empty() {
                continue;
            }
            if encoded {
                // The pair holds no `&`: the decoder sees it alone.
                return form_urlencoded::parse(pair.as_bytes()).next();
            }
            return Some(match equals {
                Some(equals) => (Cow::Borrowed(&pair[..equals]), Cow::Borrowed(&pair[equals + 1..])),
                None => (Cow::Borrowed(pair), Cow::Borrowed("")),
            });
        }
        None
    }
}

/// Chooses the response format from `_format`, `_pretty` and `Accept` (with q-values):
/// anything that admits JSON gets JSON; only XML (or nothing fhirop writes) → 406.
pub fn negotiate(request: &HttpRequest) -> Result<ResponseFormat, OperationError> {
    let mut format_param = None;
    let mut pretty = false;
    let query = request.query_string();
    // `_format` and `_pretty` start with `_` (or its escape): most queries need no parsing here.
    // A byte scan: `str::contains` with a set of chars decodes every char first.
    let pairs = if query.bytes().any(|byte| byte == b'_' || byte == b'%') {
        Some(query_pairs(query))
    } else {
        None
    };
    for (key, value) in pairs.into_iter().flatten() {
        match key.as_ref() {
            "_format" => format_param = Some(value.into_owned()),
            "_pretty" => pretty = value == "true",
            _ => {}
        }
    }
    let plain_json = match format_param {
        Some(format) => match classify(&format) {
            Acceptable::FhirJson => false,
            Acceptable::PlainJson => true,
            _ => return Err(not_acceptable(&format!("_format={format}"))),
        },
        None => match request
            .headers()
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
        {
            None => false,
            Some(accept) if accept.trim().is_empty() => false,
            Some(accept) => negotiate_accept(accept)?,
        },
    };
    Ok(ResponseFormat { plain_json, pretty })
}

/// Picks plain JSON (`true`) or FHIR JSON (`false`) from an Accept header.
fn negotiate_accept(accept: &str) -> Result<bool, OperationError> {
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut pieces = range.split(';');
        let media_type = pieces.next().unwrap_or_default();
        let quality = pieces
            .filter_map(|piece| piece.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if quality <= 0.0 {
            continue;
        }
        let plain = match classify(media_type) {
            Acceptable::FhirJson => false,
            Acceptable::PlainJson => true,
            Acceptable::Xml | Acceptable::Other => continue,
        };
        // On equal quality FHIR JSON wins: it is the more specific answer for a FHIR server.
        let better = match best {
            None => true,
            Some((best_quality, best_plain)) => {
                quality > best_quality || (quality == best_quality && best_plain && !plain)
            }
        };
        if better {
            best = Some((quality, plain));
        }
    }
    best.map(|(_, plain)| plain)
        .ok_or_else(|| not_acceptable(&format!("Accept: {accept}")))
}

fn not_acceptable(asked: &str) -> OperationError {
    OperationError::new(
        StatusCode::NOT_ACCEPTABLE,
        IssueType::NotSupported,
        format!(
            "{asked} admits no format this server writes; it writes application/fhir+json and application/json (XML is not supported)"
        ),
    )
}

/// Checks that a request body is declared as JSON (`application/fhir+json` or
/// `application/json`; a body without a Content-Type is read as JSON).
pub fn check_content_type(request: &HttpRequest) -> Result<(), OperationError> {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    // Compared in place, as bytes: every request with a body passes here.
    let bytes = content_type.as_bytes();
    let media_type = bytes
        .iter()
        .position(|&byte| byte == b';')
        .map_or(bytes, |end| &bytes[..end])
        .trim_ascii();
    if [
        &b"application/fhir+json"[..],
        b"application/json",
        b"application/json+fhir",
    ]
    .iter()
    .any(|accepted| media_type.eq_ignore_ascii_case(accepted))
    {
        return Ok(());
    }
    Err(OperationError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IssueType::NotSupported,
        format!(
            "Content-Type '{}' is not supported; send application/fhir+json or application/json",
            String::from_utf8_lossy(media_type).to_ascii_lowercase()
        ),
    ))
}

/// The compact JSON text of `value`, written straight into a `String`. `Value`'s `Display`
/// goes through `fmt::Write`, a formatter call per token, and costs about twice as much.
pub fn json_text(value: &Value) -> String {
    // A `Value` always serializes (its keys are strings); Display would write the same text.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Parses a request body as a JSON object, refusing nesting deeper than [`MAX_JSON_DEPTH`]
/// before the parser sees it.
pub fn parse_json_object(body: &[u8]) -> Result<Value, OperationError> {
    parse_json_object_within(body, MAX_JSON_DEPTH)
}

/// Parses a request body as a JSON object, refusing nesting deeper than `max_depth`.
///
/// The depth is counted while the tree is built, in the parser's one pass over the body: a
/// separate scan before parsing cost as much as a small body's parse.
pub fn parse_json_object_within(body: &[u8], max_depth: usize) -> Result<Value, OperationError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let too_deep = std::cell::Cell::new(false);
    let parsed = serde::de::DeserializeSeed::deserialize(
        DepthLimited {
            levels_left: max_depth,
            too_deep: &too_deep,
        },
        &mut deserializer,
    )
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(OperationError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            "the body must be a JSON object (a FHIR resource)",
        )),
        Err(_) if too_deep.get() => Err(OperationError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the JSON body is nested deeper than {max_depth} levels"),
        )),
        Err(error) => Err(OperationError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the body is not valid JSON: {error}"),
        )),
    }
}

/// The member name under which serde_json passes a number's text to a visitor when its
/// `arbitrary_precision` feature is on (a test below pins it).
const ARBITRARY_PRECISION_NUMBER: &str = "$serde_json::private::Number";

/// Deserializes a JSON `Value` with at most `levels_left` levels of arrays and objects,
/// recording in `too_deep` that it refused a deeper one.
#[derive(Clone, Copy)]
struct DepthLimited<'a> {
    levels_left: usize,
    too_deep: &'a std::cell::Cell<bool>,
}

impl DepthLimited<'_> {
    /// The seed for the members of an array or object this seed opens.
    fn enter<E: serde::de::Error>(self) -> Result<Self, E> {
        match self.levels_left.checked_sub(1) {
            Some(levels_left) => Ok(DepthLimited { levels_left, ..self }),
            None => {
                self.too_deep.set(true);
                Err(E::custom("the JSON body is nested too deeply"))
            }
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for DepthLimited<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DepthLimited<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so every number it holds is a JSON number.
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut values = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(value) = items.next_element_seed(inner)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let Some(first) = members.next_key::<String>()? else {
            return Ok(Value::Object(serde_json::Map::new()));
        };
        // With `arbitrary_precision` (which keeps decimals exactly as written) serde_json
        // hands a number over as a one-member map under this key, holding the number's text.
        if first == ARBITRARY_PRECISION_NUMBER {
            let text: String = members.next_value()?;
            return text
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .map_err(serde::de::Error::custom);
        }
        let inner = self.enter()?;
        let mut object = serde_json::Map::new();
        let value = members.next_value_seed(inner)?;
        object.insert(first, value);
        while let Some(key) = members.next_key::<String>()? {
            let value = members.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    proptest::proptest! {
        #[test]
        fn query_pairs_are_what_form_urlencoded_reads(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![
                    b'a', b'Z', b'0', b'_', b'&', b'&', b'=', b'=', b'+', b'%', b'2', b'4', b'C', b'3', b'A',
                    b'F', b'g', b' ', 0xC3, 0xA9, 0xFF,
                ]),
                0..24,
            )
        ) {
            // A query string is text; its escapes may still decode to invalid UTF-8 (`%FF`).
            let query = String::from_utf8_lossy(&bytes);
            let ours: Vec<(String, String)> =
                query_pairs(&query).map(|(name, value)| (name.into_owned(), value.into_owned())).collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn plain_query_pairs_are_borrowed() {
        let pairs: Vec<_> = query_pairs("name=World&flag&_format=json&&x=a=b").collect();
        assert_eq!(
            pairs,
            [("name", "World"), ("flag", ""), ("_format", "json"), ("x", "a=b")]
                .map(|(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value)))
        );
        assert!(
            pairs
                .iter()
                .all(|(name, value)| matches!((name, value), (Cow::Borrowed(_), Cow::Borrowed(_))))
        );
    }

    #[test]
    fn content_types_match_without_regard_to_case_and_parameters() {
        let check = |content_type: &str| {
            let request = actix_web::test::TestRequest::default()
                .insert_header((header::CONTENT_TYPE, content_type))
                .to_http_request();
            check_content_type(&request).map_err(|error| (error.status, error.to_string()))
        };
        assert_eq!(check("application/fhir+json"), Ok(()));
        assert_eq!(check("Application/FHIR+JSON; charset=utf-8"), Ok(()));
        assert_eq!(check(" application/json ;fhirVersion=4.0"), Ok(()));
        assert_eq!(check("application/json+fhir"), Ok(()));
        let (status, message) = check("Text/Plain; charset=utf-8").unwrap_err();
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            message.contains("Content-Type 'text/plain' is not supported"),
            "{message}"
        );
        assert!(check("application/fhir+jsonx").is_err());
        let request = actix_web::test::TestRequest::default().to_http_request();
        assert!(check_content_type(&request).is_ok(), "no Content-Type is no claim");
    }

    #[test]
    fn accept_with_q_values() {
        let plain = |accept: &str| negotiate_accept(accept).unwrap();
        assert!(!plain("application/fhir+json"));
        assert!(plain("application/json"));
        assert!(plain("application/json;q=0.9, application/fhir+json;q=0.8"));
        assert!(plain("application/fhir+xml, application/json;q=0.1"));
        assert!(!plain(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert_eq!(
            negotiate_accept("application/fhir+xml").unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert!(negotiate_accept("application/json;q=0").is_err());
    }

    #[test]
    fn depth_counts_arrays_and_objects_not_brackets_in_strings() {
        let nested = |levels: usize| {
            format!(
                "{{\"a\":{}\"[[{{{{\"{}}}",
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        assert_eq!(
            parse_json_object_within(nested(3).as_bytes(), 3).unwrap(),
            json!({"a": [["[[{{"]]})
        );
        let error = parse_json_object_within(nested(4).as_bytes(), 3).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.outcome.issues[0].code, IssueType::Structure);
        assert_eq!(
            error.outcome.issues[0].diagnostics.as_deref(),
            Some("the JSON body is nested deeper than 3 levels")
        );
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert_eq!(
            parse_json_object(deep.as_bytes()).unwrap_err().outcome.issues[0].code,
            IssueType::Structure
        );
    }

    #[test]
    fn the_parse_keeps_member_order_numbers_and_rejects_what_follows_the_object() {
        let text = r#"{"z":1,"a":-2,"m":1.50,"big":18446744073709551615,"n":null,"t":true,"s":"\u00e9"}"#;
        let parsed = parse_json_object(text.as_bytes()).unwrap();
        assert_eq!(parsed, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(
            json_text(&parsed),
            text.replace("\\u00e9", "é"),
            "decimals keep their written precision"
        );
        assert_eq!(
            parsed.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["z", "a", "m", "big", "n", "t", "s"]
        );
        let trailing = parse_json_object(b"{} {}").unwrap_err();
        assert!(
            trailing.outcome.issues[0]
                .diagnostics
                .as_deref()
                .unwrap_or_default()
                .starts_with("the body is not valid JSON: trailing characters"),
            "{:?}",
            trailing.outcome.issues[0].diagnostics
        );
        assert_eq!(
            parse_json_object(b"[1]").unwrap_err().outcome.issues[0]
                .diagnostics
                .as_deref(),
            Some("the body must be a JSON object (a FHIR resource)")
        );
    }

    #[test]
    fn parser_errors_carry_line_and_column() {
        let error = parse_json_object(b"{\n  \"a\": }").unwrap_err();
        let diagnostics = error.outcome.issues[0].diagnostics.clone().unwrap();
        assert!(diagnostics.contains("line 2 column 8"), "{diagnostics}");
    }
}
