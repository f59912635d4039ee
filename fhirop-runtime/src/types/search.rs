//! FHIR search-parameter types as operation parameters (R4 search.html; HAPI's `TokenParam`,
//! `DateParam`, ... and `TokenOrListParam`).
//!
//! In a query string a search-typed value is written as in a search; in a `Parameters` body
//! it is a `valueString` with the same text.

use std::fmt;

use super::lexical;
use super::primitives::{DatePrecision, Decimal};
use super::{FhirParam, GetSafe, ParamValue, ToParamValue, TypeInfo};

/// A search value type: parsed from its text and the name's `:modifier`.
pub trait SearchValue: Sized {
    /// `OperationDefinition.parameter.searchType`.
    const SEARCH_TYPE: &'static str;

    /// Parses one value (one item of an OR list).
    fn parse(text: &str, modifier: Option<&str>) -> Result<Self, String>;
}

/// Reads the text and modifier of a search-typed occurrence.
fn search_text(value: &ParamValue) -> Result<(String, Option<String>), String> {
    match value {
        ParamValue::Text { text, modifier } => Ok((text.clone(), modifier.clone())),
        other => other
            .primitive_text()
            .map(|text| (text.into_owned(), None))
            .ok_or_else(|| format!("expected a search value as valueString, got {}", other.describe())),
    }
}

/// Checks a search value's text against `search_type` (for definitions that name a
/// `searchType` but have no Rust type, such as Bots').
pub fn check(search_type: &str, text: &str) -> Result<(), String> {
    for item in split_or(text) {
        match search_type {
            "token" => TokenParam::parse(&item, None).map(drop)?,
            "date" => DateParam::parse(&item, None).map(drop)?,
            "number" => NumberParam::parse(&item, None).map(drop)?,
            "quantity" => QuantityParam::parse(&item, None).map(drop)?,
            "reference" => ReferenceParam::parse(&item, None).map(drop)?,
            _ => {}
        }
    }
    Ok(())
}

/// Splits an OR list at commas that are not escaped with `\`, unescaping `\,` `\|` `\$` `\\`.
pub fn split_or(text: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ (',' | '$' | '\\')) => items.last_mut().into_iter().for_each(|item| item.push(escaped)),
                Some(other) => items.last_mut().into_iter().for_each(|item| {
                    item.push('\\');
                    item.push(other);
                }),
                None => items.last_mut().into_iter().for_each(|item| item.push('\\')),
            },
            ',' => items.push(String::new()),
            other => items.last_mut().into_iter().for_each(|item| item.push(other)),
        }
    }
    items
}

/// Splits at the first `|` not escaped with `\`.
fn split_pipe(text: &str) -> Option<(String, String)> {
    let bytes = text.as_bytes();
    let at = (0..bytes.len()).find(|&index| bytes[index] == b'|' && (index == 0 || bytes[index - 1] != b'\\'))?;
    Some((text[..at].replace("\\|", "|"), text[at + 1..].replace("\\|", "|")))
}

/// Implements [`FhirParam`], [`ToParamValue`] and [`GetSafe`] for a [`SearchValue`].
macro_rules! search_param {
    ($name:ident) => {
        impl FhirParam for $name {
            fn type_info() -> TypeInfo {
                TypeInfo::search(<$name as SearchValue>::SEARCH_TYPE)
            }
            fn from_param(value: ParamValue) -> Result<$name, String> {
                let (text, modifier) = search_text(&value)?;
                <$name as SearchValue>::parse(&text, modifier.as_deref())
            }
        }

        impl ToParamValue for $name {
            fn to_param_value(self) -> ParamValue {
                ParamValue::Text {
                    text: self.to_string(),
                    modifier: None,
                }
            }
        }

        impl GetSafe for $name {}
    };
}

/// A search comparison prefix (`eq` when none is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefix {
    /// equal
    #[default]
    Eq,
    /// not equal
    Ne,
    /// greater than
    Gt,
    /// less than
    Lt,
    /// greater or equal
    Ge,
    /// less or equal
    Le,
    /// starts after
    Sa,
    /// ends before
    Eb,
    /// approximately
    Ap,
}

impl Prefix {
    const ALL: [(Prefix, &'static str); 9] = [
        (Prefix::Eq, "eq"),
        (Prefix::Ne, "ne"),
        (Prefix::Gt, "gt"),
        (Prefix::Lt, "lt"),
        (Prefix::Ge, "ge"),
        (Prefix::Le, "le"),
        (Prefix::Sa, "sa"),
        (Prefix::Eb, "eb"),
        (Prefix::Ap, "ap"),
    ];

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        Prefix::ALL
            .iter()
            .find(|(prefix, _)| *prefix == self)
            .map_or("eq", |(_, code)| code)
    }

    /// Splits a prefix off a value whose text then starts with a digit or sign.
    fn split(text: &str) -> (Prefix, &str) {
        if text.len() > 2 && text.is_char_boundary(2) {
            let (head, rest) = text.split_at(2);
            if let Some((prefix, _)) = Prefix::ALL.iter().find(|(_, code)| *code == head) {
                return (*prefix, rest);
            }
        }
        (Prefix::Eq, text)
    }
}

/// A token: `[system]|[code]`, `|[code]`, `[system]|` or `[code]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenParam {
    /// The system; `Some("")` for `|code` (no system), `None` for any system.
    pub system: Option<String>,
    /// The code; `None` for `system|`.
    pub code: Option<String>,
    /// `:text`, `:not`, `:of-type`, ...
    pub modifier: Option<String>,
}

impl SearchValue for TokenParam {
    const SEARCH_TYPE: &'static str = "token";

    fn parse(text: &str, modifier: Option<&str>) -> Result<TokenParam, String> {
        if text.is_empty() {
            return Err("a token needs a code or a system".into());
        }
        let (system, code) = match split_pipe(text) {
            Some((system, code)) => (Some(system), (!code.is_empty()).then_some(code)),
            None => (None, Some(text.to_owned())),
        };
        Ok(TokenParam {
            system,
            code,
            modifier: modifier.map(Into::into),
        })
    }
}

impl fmt::Display for TokenParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(system) = &self.system {
            write!(f, "{system}|")?;
        }
        f.write_str(self.code.as_deref().unwrap_or_default())
    }
}

/// A string search value: case- and accent-insensitive prefix match unless `:exact` or
/// `:contains`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringParam {
    /// The text searched for.
    pub value: String,
    /// `exact`, `contains`, or none.
    pub modifier: Option<String>,
}

impl StringParam {
    /// `:exact`
    pub fn is_exact(&self) -> bool {
        self.modifier.as_deref() == Some("exact")
    }

    /// `:contains`
    pub fn is_contains(&self) -> bool {
        self.modifier.as_deref() == Some("contains")
    }
}

impl SearchValue for StringParam {
    const SEARCH_TYPE: &'static str = "string";

    fn parse(text: &str, modifier: Option<&str>) -> Result<StringParam, String> {
        Ok(StringParam {
            value: text.to_owned(),
            modifier: modifier.map(Into::into),
        })
    }
}

impl fmt::Display for StringParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// A date search value: a prefix and a date or date-time of any precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateParam {
    /// `eq`, `ge`, `lt`, ...
    pub prefix: Prefix,
    /// The date as written (a FHIR `dateTime`; the seconds and zone may be left out).
    pub value: String,
}

impl DateParam {
    /// The precision the value was written with.
    pub fn precision(&self) -> DatePrecision {
        match self.value.len() {
            4 => DatePrecision::Year,
            7 => DatePrecision::Month,
            10 => DatePrecision::Day,
            _ => DatePrecision::Time,
        }
    }
}

impl SearchValue for DateParam {
    const SEARCH_TYPE: &'static str = "date";

    fn parse(text: &str, _modifier: Option<&str>) -> Result<DateParam, String> {
        let (prefix, value) = Prefix::split(text);
        // Search dates may leave out seconds and the zone (search.html, "date").
        let completed = complete_search_date(value);
        if lexical::is_date_time(&completed) {
            Ok(DateParam {
                prefix,
                value: value.to_owned(),
            })
        } else {
            Err(format!(
                "'{text}' is not a search date: expected an optional prefix (eq, ne, gt, lt, ge, le, sa, eb, ap) and YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][zone]"
            ))
        }
    }
}

fn complete_search_date(value: &str) -> String {
    let Some((date, time)) = value.split_once('T') else {
        return value.to_owned();
    };
    let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let clock = if clock.len() == 5 {
        format!("{clock}:00")
    } else {
        clock.to_owned()
    };
    let zone = if zone.is_empty() { "Z" } else { zone };
    format!("{date}T{clock}{zone}")
}

impl fmt::Display for DateParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix != Prefix::Eq {
            f.write_str(self.prefix.code())?;
        }
        f.write_str(&self.value)
    }
}

/// A reference search value: `Type/id`, `id`, or an absolute URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceParam {
    /// The resource type (from `Type/id` or the `:Type` modifier).
    pub resource_type: Option<String>,
    /// The logical id, when the value is not an absolute URL.
    pub id: Option<String>,
    /// The value as written.
    pub value: String,
}

impl SearchValue for ReferenceParam {
    const SEARCH_TYPE: &'static str = "reference";

    fn parse(text: &str, modifier: Option<&str>) -> Result<ReferenceParam, String> {
        if text.is_empty() {
            return Err("a reference cannot be empty".into());
        }
        let modifier_type = modifier.filter(|m| m.starts_with(|c: char| c.is_ascii_uppercase()));
        let (resource_type, id) = if text.contains("://") {
            (None, None)
        } else {
            match text.rsplit_once('/') {
                Some((resource_type, id)) => (Some(resource_type.to_owned()), Some(id.to_owned())),
                None => (modifier_type.map(Into::into), Some(text.to_owned())),
            }
        };
        if let Some(id) = &id
            && !lexical::is_id(id)
        {
            return Err(format!("'{id}' is not a valid resource id"));
        }
        Ok(ReferenceParam {
            resource_type,
            id,
            value: text.to_owned(),
        })
    }
}

impl fmt::Display for ReferenceParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// A number search value: a prefix and a decimal (whose precision defines the range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberParam {
    /// `eq`, `gt`, ...
    pub prefix: Prefix,
    /// The number as written.
    pub value: Decimal,
}

impl SearchValue for NumberParam {
    const SEARCH_TYPE: &'static str = "number";

    fn parse(text: &str, _modifier: Option<&str>) -> Result<NumberParam, String> {
        let (prefix, number) = Prefix::split(text);
        Ok(NumberParam {
            prefix,
            value: Decimal::parse(number)?,
        })
    }
}

impl fmt::Display for NumberParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix != Prefix::Eq {
            f.write_str(self.prefix.code())?;
        }
        f.write_str(self.value.as_str())
    }
}

/// A quantity search value: `[prefix][number]|[system]|[code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityParam {
    /// `eq`, `gt`, ...
    pub prefix: Prefix,
    /// The number as written.
    pub value: Decimal,
    /// The unit system, if given.
    pub system: Option<String>,
    /// The unit code, if given.
    pub code: Option<String>,
}

impl SearchValue for QuantityParam {
    const SEARCH_TYPE: &'static str = "quantity";

    fn parse(text: &str, _modifier: Option<&str>) -> Result<QuantityParam, String> {
        let (prefix, rest) = Prefix::split(text);
        let mut pieces = rest.splitn(3, '|');
        let number = pieces.next().unwrap_or_default();
        let non_empty = |piece: Option<&str>| piece.filter(|piece| !piece.is_empty()).map(str::to_owned);
        let system = non_empty(pieces.next());
        let code = non_empty(pieces.next());
        Ok(QuantityParam {
            prefix,
            value: Decimal::parse(number)
                .map_err(|_| format!("'{text}' is not a quantity: expected [prefix]number[|system|code]"))?,
            system,
            code,
        })
    }
}

impl fmt::Display for QuantityParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix != Prefix::Eq {
            f.write_str(self.prefix.code())?;
        }
        f.write_str(self.value.as_str())?;
        if self.system.is_some() || self.code.is_some() {
            write!(
                f,
                "|{}|{}",
                self.system.as_deref().unwrap_or_default(),
                self.code.as_deref().unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// A URI search value (`:below`, `:above` modifiers kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UriParam {
    /// The URI.
    pub value: String,
    /// `below`, `above`, or none.
    pub modifier: Option<String>,
}

impl SearchValue for UriParam {
    const SEARCH_TYPE: &'static str = "uri";

    fn parse(text: &str, modifier: Option<&str>) -> Result<UriParam, String> {
        lexical::check("uri", text)?;
        Ok(UriParam {
            value: text.to_owned(),
            modifier: modifier.map(Into::into),
        })
    }
}

impl fmt::Display for UriParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

search_param!(TokenParam);
search_param!(StringParam);
search_param!(DateParam);
search_param!(ReferenceParam);
search_param!(NumberParam);
search_param!(QuantityParam);
search_param!(UriParam);

/// Comma-separated values of one occurrence, any of which may match (OR; HAPI's
/// `TokenOrListParam`). Repeat the parameter for AND: `Vec<OrList<TokenParam>>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrList<T>(pub Vec<T>);

impl<T> OrList<T> {
    /// The alternatives.
    pub fn values(&self) -> &[T] {
        &self.0
    }
}

impl<T> IntoIterator for OrList<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<T: SearchValue> FhirParam for OrList<T> {
    fn type_info() -> TypeInfo {
        TypeInfo::search(T::SEARCH_TYPE)
    }
    fn from_param(value: ParamValue) -> Result<OrList<T>, String> {
        let (text, modifier) = search_text(&value)?;
        split_or(&text)
            .iter()
            .map(|item| T::parse(item, modifier.as_deref()))
            .collect::<Result<_, _>>()
            .map(OrList)
    }
}

impl<T: SearchValue + fmt::Display> ToParamValue for OrList<T> {
    fn to_param_value(self) -> ParamValue {
        let text = self
            .0
            .iter()
            .map(|item| item.to_string().replace(',', "\\,"))
            .collect::<Vec<_>>()
            .join(",");
        ParamValue::Text { text, modifier: None }
    }
}

impl<T: SearchValue> GetSafe for OrList<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<T: FhirParam>(text: &str) -> Result<T, String> {
        T::from_param(ParamValue::Text {
            text: text.into(),
            modifier: None,
        })
    }

    #[test]
    fn tokens() {
        let token: TokenParam = query("http://loinc.org|1234-5").unwrap();
        assert_eq!(
            (token.system.as_deref(), token.code.as_deref()),
            (Some("http://loinc.org"), Some("1234-5"))
        );
        let no_system: TokenParam = query("|x").unwrap();
        assert_eq!(no_system.system.as_deref(), Some(""));
        let any_system: TokenParam = query("x").unwrap();
        assert_eq!(any_system.system, None);
        let system_only: TokenParam = query("urn:s|").unwrap();
        assert_eq!(system_only.code, None);
        assert!(query::<TokenParam>("").is_err());
    }

    #[test]
    fn dates_take_prefixes_and_partial_precision() {
        let date: DateParam = query("ge2024-05").unwrap();
        assert_eq!(
            (date.prefix, date.value.as_str(), date.precision()),
            (Prefix::Ge, "2024-05", DatePrecision::Month)
        );
        for prefix in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"] {
            let parsed: DateParam = query(&format!("{prefix}2024-05-06T10:00")).unwrap();
            assert_eq!(parsed.prefix.code(), prefix);
        }
        assert!(query::<DateParam>("xx2024").is_err());
        assert!(query::<DateParam>("2024-13").is_err());
    }

    #[test]
    fn or_lists_split_on_unescaped_commas() {
        let list: OrList<TokenParam> = query("a|1,b|2\\,3").unwrap();
        let codes: Vec<_> = list.values().iter().map(|token| token.code.clone().unwrap()).collect();
        assert_eq!(codes, ["1", "2,3"]);
    }

    #[test]
    fn numbers_quantities_references() {
        let number: NumberParam = query("gt1.50").unwrap();
        assert_eq!((number.prefix, number.value.as_str()), (Prefix::Gt, "1.50"));
        let quantity: QuantityParam = query("le5.4|http://unitsofmeasure.org|mg").unwrap();
        assert_eq!(quantity.code.as_deref(), Some("mg"));
        assert_eq!(quantity.to_string(), "le5.4|http://unitsofmeasure.org|mg");
        let reference: ReferenceParam = query("Patient/123").unwrap();
        assert_eq!(
            (reference.resource_type.as_deref(), reference.id.as_deref()),
            (Some("Patient"), Some("123"))
        );
        assert!(query::<ReferenceParam>("Patient/bad id").is_err());
        assert!(query::<NumberParam>("abc").is_err());
    }
}
