//! FHIR's lexical rules for primitive values (R4 datatypes.html, the regexes in the
//! "Primitive Types" table), written out by hand so that every value is checked in one pass
//! without a regex engine. Each check returns what was expected, for the OperationOutcome.

/// Checks `text` against the lexical rule of the FHIR primitive type `fhir_type`.
/// Unknown type names pass: they are not primitives.
pub fn check(fhir_type: &str, text: &str) -> Result<(), String> {
    let ok = match fhir_type {
        "boolean" => text == "true" || text == "false",
        "integer" => is_integer(text),
        "unsignedInt" => is_unsigned_int(text),
        "positiveInt" => is_positive_int(text),
        "decimal" => is_decimal(text),
        "date" => is_date(text),
        "dateTime" => is_date_time(text),
        "instant" => is_instant(text),
        "time" => is_time(text),
        "code" => is_code(text),
        "id" => is_id(text),
        "oid" => is_oid(text),
        "uuid" => is_uuid(text),
        "uri" | "url" | "canonical" => !text.is_empty() && !text.chars().any(char::is_whitespace),
        "base64Binary" => is_base64(text),
        "string" | "markdown" => !text.is_empty(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{text}' is not a valid FHIR {fhir_type}: {}",
            expected(fhir_type)
        ))
    }
}

/// What a valid value of `fhir_type` looks like, for error messages.
pub fn expected(fhir_type: &str) -> &'static str {
    match fhir_type {
        "boolean" => "expected true or false",
        "integer" => "expected a whole number between -2147483648 and 2147483647",
        "unsignedInt" => "expected a whole number between 0 and 2147483647",
        "positiveInt" => "expected a whole number between 1 and 2147483647",
        "decimal" => "expected a decimal number such as 1.50",
        "date" => "expected YYYY, YYYY-MM or YYYY-MM-DD",
        "dateTime" => "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz",
        "instant" => "expected YYYY-MM-DDThh:mm:ss(.sss)Z or with an offset",
        "time" => "expected hh:mm:ss(.sss)",
        "code" => "expected a token without leading, trailing or double whitespace",
        "id" => "expected 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'",
        "oid" => "expected urn:oid: followed by dotted digits",
        "uuid" => "expected urn:uuid: followed by a lower-case UUID",
        "uri" | "url" | "canonical" => "expected a URI without whitespace",
        "base64Binary" => "expected base64 data",
        _ => "expected a non-empty string",
    }
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// `-?([0]|([1-9][0-9]*))`, within 32 bits.
pub(crate) fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    no_leading_zero(digits) && text.parse::<i32>().is_ok()
}

fn no_leading_zero(digits: &str) -> bool {
    all_digits(digits) && (digits == "0" || !digits.starts_with('0'))
}

fn is_unsigned_int(text: &str) -> bool {
    no_leading_zero(text) && text.parse::<i32>().is_ok()
}

fn is_positive_int(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    no_leading_zero(digits) && digits != "0" && digits.parse::<i32>().is_ok()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
pub(crate) fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    no_leading_zero(whole)
        && fraction.is_none_or(all_digits)
        && exponent.is_none_or(|exponent| all_digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)))
}

fn number_in(text: &str, digits: usize, low: u32, high: u32) -> bool {
    text.len() == digits && all_digits(text) && text.parse::<u32>().is_ok_and(|value| (low..=high).contains(&value))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with real months and days.
pub(crate) fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let Some(year) = parts.next().filter(|year| number_in(year, 4, 1, 9999)) else {
        return false;
    };
    let Some(month) = parts.next() else {
        return true;
    };
    if !number_in(month, 2, 1, 12) {
        return false;
    }
    let Some(day) = parts.next() else {
        return true;
    };
    let (Ok(year), Ok(month)) = (year.parse::<i64>(), month.parse::<i64>()) else {
        return false;
    };
    parts.next().is_none() && number_in(day, 2, 1, super::time::days_in_month(year, month) as u32)
}

/// `hh:mm:ss(.s+)?`
pub(crate) fn is_time(text: &str) -> bool {
    let (clock, fraction) = match text.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let mut parts = clock.split(':');
    let valid = matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(hours), Some(minutes), Some(seconds), None)
            if number_in(hours, 2, 0, 23) && number_in(minutes, 2, 0, 59) && number_in(seconds, 2, 0, 60)
    );
    valid && fraction.is_none_or(all_digits)
}

/// `Z`, `+hh:mm` or `-hh:mm`.
fn is_zone(text: &str) -> bool {
    if text == "Z" {
        return true;
    }
    let Some(offset) = text.strip_prefix(['+', '-']) else {
        return false;
    };
    matches!(offset.split_once(':'), Some((hours, minutes))
        if number_in(hours, 2, 0, 14) && number_in(minutes, 2, 0, 59))
}

/// A full date and time with zone: what `instant` requires and `dateTime` allows.
fn is_full_date_time(text: &str) -> bool {
    let Some((date, rest)) = text.split_once('T') else {
        return false;
    };
    let Some(zone_at) = rest.find(['Z', '+', '-']) else {
        return false;
    };
    date.len() == 10 && is_date(date) && is_time(&rest[..zone_at]) && is_zone(&rest[zone_at..])
}

/// A date of any precision, or a full date-time with a zone.
pub(crate) fn is_date_time(text: &str) -> bool {
    if text.contains('T') {
        is_full_date_time(text)
    } else {
        is_date(text)
    }
}

fn is_instant(text: &str) -> bool {
    is_full_date_time(text)
}

/// `[^\s]+(\s[^\s]+)*`
fn is_code(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(char::is_whitespace)
        && !text.ends_with(char::is_whitespace)
        && !text
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0].is_ascii_whitespace() && pair[1].is_ascii_whitespace())
        && !text.chars().any(|c| c.is_whitespace() && c != ' ')
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn is_oid(text: &str) -> bool {
    let Some(arcs) = text.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut parts = arcs.split('.');
    let first_ok = parts.next().is_some_and(|first| matches!(first, "0" | "1" | "2"));
    let mut rest = parts.peekable();
    first_ok && rest.peek().is_some() && rest.all(no_leading_zero)
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
fn is_uuid(text: &str) -> bool {
    let Some(uuid) = text.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, length)| {
            group.len() == length && group.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Base64 characters in groups of four, whitespace ignored.
fn is_base64(text: &str) -> bool {
    let data: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    let padding = data.iter().rev().take_while(|&&byte| byte == b'=').count();
    !data.is_empty()
        && data.len().is_multiple_of(4)
        && padding <= 2
        && data[..data.len() - padding]
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
}

#[cfg(test)]
mod tests {
    use super::check;

    fn valid(fhir_type: &str, values: &[&str]) {
        for value in values {
            assert!(check(fhir_type, value).is_ok(), "{fhir_type} should accept {value:?}");
        }
    }

    fn invalid(fhir_type: &str, values: &[&str]) {
        for value in values {
            assert!(check(fhir_type, value).is_err(), "{fhir_type} should reject {value:?}");
        }
    }

    #[test]
    fn numbers() {
        valid("integer", &["0", "-5", "2147483647", "-2147483648"]);
        invalid("integer", &["", "01", "1.0", "2147483648", "+1", "-0x1", "1e3"]);
        valid("unsignedInt", &["0", "42"]);
        invalid("unsignedInt", &["-1", "007", "2147483648"]);
        valid("positiveInt", &["1", "+7", "2147483647"]);
        invalid("positiveInt", &["0", "-1", "01"]);
        valid("decimal", &["0", "1.50", "-0.001", "1e10", "6.02E+23", "-3.0e-2"]);
        invalid("decimal", &["", ".5", "1.", "01.5", "1,5", "NaN", "1e"]);
    }

    #[test]
    fn dates_and_times() {
        valid("date", &["2024", "2024-02", "2024-02-29", "2000-02-29"]);
        invalid(
            "date",
            &[
                "24",
                "2024-13",
                "2023-02-29",
                "1900-02-29",
                "2024-1-01",
                "2024-01-01T00:00:00Z",
            ],
        );
        valid(
            "dateTime",
            &[
                "2024",
                "2024-05-06",
                "2024-05-06T07:08:09Z",
                "2024-05-06T07:08:09.123+02:00",
            ],
        );
        invalid(
            "dateTime",
            &["2024-05-06T07:08:09", "2024-05-06T07:08Z", "2024-05-06T25:00:00Z"],
        );
        valid("instant", &["2024-05-06T07:08:09.5Z", "2024-05-06T07:08:09-05:00"]);
        invalid("instant", &["2024-05-06", "2024-05-06T07:08:09"]);
        valid("time", &["00:00:00", "23:59:59.999"]);
        invalid("time", &["24:00:00", "12:00", "12:00:00Z"]);
    }

    #[test]
    fn identifiers_and_strings() {
        valid("id", &["a", "Patient-1.2", &"x".repeat(64)]);
        invalid("id", &["", "a b", "a_b", &"x".repeat(65), "é"]);
        valid("code", &["active", "two words"]);
        invalid("code", &["", " lead", "trail ", "two  spaces", "tab\there"]);
        valid("oid", &["urn:oid:1.2.840.10008"]);
        invalid("oid", &["1.2.3", "urn:oid:3.1", "urn:oid:1", "urn:oid:1.02"]);
        valid("uuid", &["urn:uuid:c757873d-ec9a-4326-a141-556f43239520"]);
        invalid(
            "uuid",
            &[
                "c757873d-ec9a-4326-a141-556f43239520",
                "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
            ],
        );
        valid("uri", &["http://example.com/a", "urn:x"]);
        invalid("uri", &["", "has space"]);
        valid("base64Binary", &["aGVsbG8=", "aGVs bG8h"]);
        invalid("base64Binary", &["abc", "a===", "ab$d"]);
        valid("string", &["anything at all"]);
        invalid("string", &[""]);
    }
}
