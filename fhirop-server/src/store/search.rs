//! Search: which values a resource is indexed under, and how a search parameter becomes a
//! SQL condition on those index rows (R4 search.html).

use fhirop::types::search::{DateParam, Prefix, ReferenceParam, SearchValue, TokenParam, split_or};
use fhirop::types::time::date_range;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::search_parameters::SEARCH_PARAMETERS;

/// The search parameter types the store indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchParamType {
    /// `system|code`
    Token,
    /// Case- and accent-insensitive text.
    String,
    /// A date range.
    Date,
    /// `Type/id`
    Reference,
}

impl SearchParamType {
    /// The FHIR name.
    pub fn name(self) -> &'static str {
        match self {
            SearchParamType::Token => "token",
            SearchParamType::String => "string",
            SearchParamType::Date => "date",
            SearchParamType::Reference => "reference",
        }
    }
}

/// One search parameter: where its values are in a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    /// The resource type.
    pub resource_type: &'static str,
    /// The parameter name.
    pub name: &'static str,
    /// Its type.
    pub kind: SearchParamType,
    /// Element paths (dot-separated, arrays walked through, a choice element matching every
    /// `name[x]`).
    pub paths: &'static [&'static str],
}

/// The parameter `name` of `resource_type`.
pub fn find_param(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    SEARCH_PARAMETERS
        .iter()
        .find(|param| param.resource_type == resource_type && param.name == name)
}

/// The parameters of `resource_type`.
pub fn params_of(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> {
    let resource_type = resource_type.to_owned();
    SEARCH_PARAMETERS
        .iter()
        .filter(move |param| param.resource_type == resource_type)
}

/// The values at `path` in `value`, walking through arrays.
fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            let Value::Object(members) = value else { continue };
            let found: Vec<&Value> = match members.get(segment) {
                Some(found) => vec![found],
                // A choice element: `effective` matches `effectiveDateTime`, `effectivePeriod`, ...
                None => members
                    .iter()
                    .filter(|(key, _)| {
                        key.strip_prefix(segment)
                            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                    })
                    .map(|(_, value)| value)
                    .collect(),
            };
            for value in found {
                match value {
                    Value::Array(items) => next.extend(items.iter()),
                    other => next.push(other),
                }
            }
        }
        current = next;
    }
    current
}

/// An index row.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `search_token(system, code)`
    Token { system: Option<String>, code: String },
    /// `search_string(normalized, exact)`
    String { normalized: String, exact: String },
    /// `search_date(low, high)` in epoch milliseconds, both inclusive.
    Date { low: i64, high: i64 },
    /// `search_reference(target_type, target_id)`
    Reference { target_type: String, target_id: String },
}

/// Lower case without accents: what string search compares.
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !('\u{0300}'..='\u{036f}').contains(c))
        .collect::<String>()
        .to_lowercase()
}

/// Every index row of `resource`: `(parameter name, value)`.
pub fn index_values(resource_type: &str, resource: &Value) -> Vec<(&'static str, IndexValue)> {
    let mut rows = Vec::new();
    for param in params_of(resource_type) {
        for path in param.paths {
            for value in values_at(resource, path) {
                let values = match param.kind {
                    SearchParamType::Token => token_values(value),
                    SearchParamType::String => string_values(value),
                    SearchParamType::Date => date_values(value),
                    SearchParamType::Reference => {
                        let mut values = reference_values(value);
                        if let Some(target) = implied_target(param.name) {
                            values.retain(
                                |value| matches!(value, IndexValue::Reference { target_type, .. } if target_type == target),
                            );
                        }
                        values
                    }
                };
                rows.extend(values.into_iter().map(|value| (param.name, value)));
            }
        }
    }
    rows
}

/// Every index row of a resource given as JSON text, which this also checks is one JSON
/// object. Only the members the type's parameters start from are read into a tree; the
/// parser skips the others without building them.
pub fn index_values_of_json(
    resource_type: &str,
    json: &str,
) -> Result<Vec<(&'static str, IndexValue)>, serde_json::Error> {
    // A reference parameter that keeps only references to one type (`patient`: Patient)
    // indexes nothing from a text that never names that type (a Bot's AuditEvent, mostly).
    let may_index = |param: &SearchParam| match (param.kind, implied_target(param.name)) {
        (SearchParamType::Reference, Some(target)) => json.contains(&format!("{target}/")),
        _ => true,
    };
    let starts: Vec<&str> = params_of(resource_type)
        .filter(|param| may_index(param))
        .flat_map(|param| param.paths.iter())
        .map(|path| path.split('.').next().unwrap_or(path))
        .collect();
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let indexed = serde::de::DeserializeSeed::deserialize(IndexedMembers { starts: &starts }, &mut deserializer)?;
    deserializer.end()?;
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(index_values(resource_type, &indexed))
}

/// The members of a JSON object some path starts from (as `values_at` matches a path's first
/// segment: by name, or as a choice element's prefix).
struct IndexedMembers<'a> {
    starts: &'a [&'a str],
}

impl IndexedMembers<'_> {
    fn wants(&self, name: &str) -> bool {
        self.starts.iter().any(|start| {
            name.strip_prefix(start)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for IndexedMembers<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IndexedMembers<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a resource as a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut kept = serde_json::Map::new();
        while let Some(MemberName(name)) = members.next_key::<MemberName<'de>>()? {
            if self.wants(&name) {
                let value = members.next_value::<Value>()?;
                kept.insert(name.into_owned(), value);
            } else {
                members.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(kept))
    }
}

/// A member's name, borrowed from the text unless escapes make it differ: most members are
/// skipped, and their names need no copy.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct MemberName<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

fn token_values(value: &Value) -> Vec<IndexValue> {
    let token = |system: Option<&Value>, code: Option<&Value>| {
        code.and_then(Value::as_str).map(|code| IndexValue::Token {
            system: system.and_then(Value::as_str).map(str::to_owned),
            code: code.to_owned(),
        })
    };
    match value {
        Value::String(code) => vec![IndexValue::Token {
            system: None,
            code: code.clone(),
        }],
        Value::Bool(flag) => vec![IndexValue::Token {
            system: None,
            code: flag.to_string(),
        }],
        Value::Object(members) => {
            if let Some(Value::Array(codings)) = members.get("coding") {
                codings
                    .iter()
                    .filter_map(|coding| token(coding.get("system"), coding.get("code")))
                    .collect()
            } else if members.contains_key("value") {
                token(members.get("system"), members.get("value")).into_iter().collect()
            } else {
                token(members.get("system"), members.get("code")).into_iter().collect()
            }
        }
        _ => Vec::new(),
    }
}

fn string_values(value: &Value) -> Vec<IndexValue> {
    let mut texts = Vec::new();
    match value {
        Value::String(text) => texts.push(text.as_str()),
        Value::Object(members) => {
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match members.get(key) {
                    Some(Value::String(text)) => texts.push(text),
                    Some(Value::Array(items)) => texts.extend(items.iter().filter_map(Value::as_str)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    texts
        .into_iter()
        .map(|text| IndexValue::String {
            normalized: normalize(text),
            exact: text.to_owned(),
        })
        .collect()
}

fn date_values(value: &Value) -> Vec<IndexValue> {
    match value {
        Value::String(text) => date_range(text)
            .map(|(low, high)| IndexValue::Date { low, high })
            .into_iter()
            .collect(),
        Value::Object(period) => {
            let low = period
                .get("start")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|(low, _)| low);
            let high = period
                .get("end")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|(_, high)| high);
            if low.is_none() && high.is_none() {
                return Vec::new();
            }
            vec![IndexValue::Date {
                low: low.unwrap_or(i64::MIN),
                high: high.unwrap_or(i64::MAX),
            }]
        }
        _ => Vec::new(),
    }
}

fn reference_values(value: &Value) -> Vec<IndexValue> {
    let Some(reference) = value.get("reference").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut segments = reference.rsplit('/');
    match (segments.next(), segments.next()) {
        (Some(id), Some(target_type)) if !id.is_empty() && !target_type.is_empty() => vec![IndexValue::Reference {
            target_type: target_type.to_owned(),
            target_id: id.to_owned(),
        }],
        _ => Vec::new(),
    }
}

/// A value bound to a SQL placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// TEXT
    Text(String),
    /// INTEGER
    Integer(i64),
    /// NULL
    Null,
}

/// A search compiled to SQL conditions on `resource_current r`.
#[derive(Debug, Default)]
pub struct CompiledSearch {
    /// One condition per parameter, all of which must hold.
    pub conditions: Vec<Condition>,
    /// The parameters that were used.
    pub used: Vec<(String, String)>,
}

/// One search parameter's condition (its comma-separated values are alternatives).
#[derive(Debug)]
pub enum Condition {
    /// On the resource row itself (`_id`, `_lastUpdated`).
    Row { sql: String, values: Vec<SqlValue> },
    /// Through an index table: `matches` selects the index rows (`i.param = ? AND ...`) that
    /// make a resource match; `negated` for `:not`.
    Index {
        table: &'static str,
        matches: String,
        values: Vec<SqlValue>,
        negated: bool,
    },
}

/// How an index condition is written. Both select the same resources; they differ in what
/// SQLite does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexForm {
    /// `r.id IN (SELECT i.id ...)`: SQLite collects every matching id into a temporary
    /// b-tree first. Cheap when few resources match.
    IdList,
    /// `EXISTS (SELECT 1 ... i.id = r.id ...)`: one index probe per resource walked in page
    /// order, stopping at the page's end. Cheap when many match: a page of a name search over
    /// 1,000 matching patients takes a twentieth of the time.
    ///
    /// The walk covers the first `window` resources of the type in page order at most, so a
    /// sparse condition costs a bounded walk: it ends at the key of the window's last
    /// resource, which a subquery finds by stepping over the keys before it. The rows come in
    /// the table's own order, which is page order, so ordering by [`WALK_ORDER`] needs no sort
    /// and a page found early never reads the rest of the window.
    Probe { window: usize },
}

/// The page order of a [`IndexForm::Probe`] filter's rows, oldest first.
pub const WALK_ORDER: &str = "r.last_updated_ms, r.id";

impl CompiledSearch {
    /// `FROM ... r WHERE ...` for the current, undeleted resources of `resource_type` that
    /// meet every condition (`r` is `resource_current`), and the values to bind in order.
    pub fn filter(&self, tenant: &str, resource_type: &str, form: IndexForm) -> (String, Vec<SqlValue>) {
        let mut sql = match form {
            IndexForm::IdList => {
                "FROM resource_current r WHERE r.tenant = ? AND r.resource_type = ? AND r.deleted = 0".to_owned()
            }
            // With fewer resources than the window the subquery finds no key, and the
            // `UNION ALL` row, past every key, bounds nothing.
            IndexForm::Probe { window } => format!(
                "FROM resource_current r WHERE r.tenant = ? AND r.resource_type = ? \
                 AND (r.last_updated_ms, r.id) <= (SELECT last_updated_ms, id FROM \
                 (SELECT last_updated_ms, id FROM resource_current WHERE tenant = ? AND resource_type = ? \
                 ORDER BY last_updated_ms, id LIMIT 1 OFFSET {}) \
                 UNION ALL SELECT {}, '' LIMIT 1) AND r.deleted = 0",
                window.saturating_sub(1),
                i64::MAX
            ),
        };
        let owner = [
            SqlValue::Text(tenant.to_owned()),
            SqlValue::Text(resource_type.to_owned()),
        ];
        let mut bound = owner.to_vec();
        if let IndexForm::Probe { .. } = form {
            bound.extend(owner);
        }
        for condition in &self.conditions {
            sql.push_str(" AND ");
            match condition {
                Condition::Row { sql: row, values } => {
                    sql.push_str(row);
                    bound.extend(values.iter().cloned());
                }
                Condition::Index {
                    table,
                    matches,
                    values,
                    negated,
                } => {
                    let not = if *negated { "NOT " } else { "" };
                    match form {
                        IndexForm::IdList => {
                            sql.push_str(&format!(
                                "r.id {not}IN (SELECT i.id FROM {table} i WHERE i.tenant = ? AND i.resource_type = ? AND {matches})"
                            ));
                            bound.extend(with_owner(tenant, resource_type, values));
                        }
                        IndexForm::Probe { .. } => {
                            sql.push_str(&format!(
                                "{not}EXISTS (SELECT 1 FROM {table} i WHERE i.tenant = r.tenant AND i.resource_type = r.resource_type AND i.id = r.id AND {matches})"
                            ));
                            bound.extend(values.iter().cloned());
                        }
                    }
                }
            }
        }
        (sql, bound)
    }

    /// The first condition that selects through an index (and is not `:not`).
    fn first_index_condition(&self) -> Option<(&'static str, &str, &[SqlValue])> {
        self.conditions.iter().find_map(|condition| match condition {
            Condition::Index {
                table,
                matches,
                values,
                negated: false,
            } => Some((*table, matches.as_str(), values.as_slice())),
            _ => None,
        })
    }

    /// Whether some condition selects through an index (so [`IndexForm`] matters).
    pub fn selects_through_index(&self) -> bool {
        self.first_index_condition().is_some()
    }

    /// When the search is a single index condition: a statement counting its matches from
    /// the index alone, with its values. Index rows exist only for current, undeleted
    /// resources, so no resource row needs reading.
    pub fn index_only_count(&self, tenant: &str, resource_type: &str) -> Option<(String, Vec<SqlValue>)> {
        if self.conditions.len() != 1 {
            return None;
        }
        let (table, matches, values) = self.first_index_condition()?;
        Some((
            format!(
                "SELECT COUNT(DISTINCT i.id) AS total FROM {table} i WHERE i.tenant = ? AND i.resource_type = ? AND {matches}"
            ),
            with_owner(tenant, resource_type, values),
        ))
    }

    /// A condition that holds when the first index condition has at least `rows` index rows
    /// (the length of the id list SQLite would build for it), read from the index alone and no
    /// further than `rows`: the row at offset `rows - 1` exists (a quarter cheaper than counting
    /// them). It refers to no resource, so SQLite evaluates it once.
    pub fn has_index_rows(&self, tenant: &str, resource_type: &str, rows: usize) -> Option<(String, Vec<SqlValue>)> {
        let (table, matches, values) = self.first_index_condition()?;
        Some((
            format!(
                "EXISTS (SELECT 1 FROM {table} i WHERE i.tenant = ? AND i.resource_type = ? AND {matches} LIMIT 1 OFFSET {})",
                rows.saturating_sub(1)
            ),
            with_owner(tenant, resource_type, values),
        ))
    }
}

/// `values` after the tenant and resource type an index subquery starts with.
fn with_owner(tenant: &str, resource_type: &str, values: &[SqlValue]) -> Vec<SqlValue> {
    let mut bound = vec![
        SqlValue::Text(tenant.to_owned()),
        SqlValue::Text(resource_type.to_owned()),
    ];
    bound.extend(values.iter().cloned());
    bound
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The condition for a date range `[low, high]` against a search value with a prefix.
fn date_condition(
    prefix: Prefix,
    low_column: &str,
    high_column: &str,
    (low, high): (i64, i64),
) -> (String, Vec<SqlValue>) {
    use SqlValue::Integer;
    match prefix {
        Prefix::Eq => (
            format!("({low_column} >= ? AND {high_column} <= ?)"),
            vec![Integer(low), Integer(high)],
        ),
        Prefix::Ne => (
            format!("NOT ({low_column} >= ? AND {high_column} <= ?)"),
            vec![Integer(low), Integer(high)],
        ),
        Prefix::Gt => (format!("{high_column} > ?"), vec![Integer(high)]),
        Prefix::Lt => (format!("{low_column} < ?"), vec![Integer(low)]),
        Prefix::Ge => (format!("{high_column} >= ?"), vec![Integer(low)]),
        Prefix::Le => (format!("{low_column} <= ?"), vec![Integer(high)]),
        Prefix::Sa => (format!("{low_column} > ?"), vec![Integer(high)]),
        Prefix::Eb => (format!("{high_column} < ?"), vec![Integer(low)]),
        Prefix::Ap => (
            format!("({low_column} <= ? AND {high_column} >= ?)"),
            vec![Integer(high), Integer(low)],
        ),
    }
}

/// Compiles the search parameters of `resource_type`; unknown ones are ignored (and listed
/// in the error when `strict`).
pub fn compile(resource_type: &str, params: &[(String, String)], strict: bool) -> Result<CompiledSearch, String> {
    let mut compiled = CompiledSearch::default();
    let mut unknown = Vec::new();
    for (key, text) in params {
        let (name, modifier) = match key.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (key.as_str(), None),
        };
        if text.is_empty() {
            continue;
        }
        let items = split_or(text);
        let condition = match name {
            "_id" => Condition::Row {
                sql: format!("({})", vec!["r.id = ?"; items.len()].join(" OR ")),
                values: items.iter().map(|id| SqlValue::Text(id.clone())).collect(),
            },
            "_lastUpdated" => {
                let (mut alternatives, mut values) = (Vec::new(), Vec::new());
                for item in &items {
                    let date = DateParam::parse(item, None)?;
                    let range = date_range(&date.value).ok_or_else(|| format!("'{item}' is not a date"))?;
                    let (condition, bound) =
                        date_condition(date.prefix, "r.last_updated_ms", "r.last_updated_ms", range);
                    alternatives.push(condition);
                    values.extend(bound);
                }
                Condition::Row {
                    sql: format!("({})", alternatives.join(" OR ")),
                    values,
                }
            }
            _ => {
                let Some(param) = find_param(resource_type, name) else {
                    unknown.push(key.clone());
                    continue;
                };
                param_condition(param, modifier, &items)?
            }
        };
        compiled.conditions.push(condition);
        compiled.used.push((key.clone(), text.clone()));
    }
    if strict && !unknown.is_empty() {
        return Err(format!(
            "unknown search parameter(s) for {resource_type}: {}",
            unknown.join(", ")
        ));
    }
    Ok(compiled)
}

/// Whether the store implements `modifier` for a parameter of `kind`; the rest are refused
/// rather than silently read as plain matches.
fn check_modifier(param: &SearchParam, modifier: Option<&str>) -> Result<(), String> {
    let supported = match (param.kind, modifier) {
        (_, None) => true,
        (SearchParamType::Token, Some("not")) => true,
        (SearchParamType::String, Some("exact" | "contains")) => true,
        (SearchParamType::Reference, Some(target)) => target.starts_with(|c: char| c.is_ascii_uppercase()),
        _ => false,
    };
    if supported {
        Ok(())
    } else {
        Err(format!(
            "modifier :{} is not supported on {} parameter '{}'",
            modifier.unwrap_or_default(),
            param.kind.name(),
            param.name
        ))
    }
}

/// `EXISTS (...)` on the parameter's index table with the OR of the items (`NOT EXISTS` for
/// a token's `:not`).
fn param_condition(param: &SearchParam, modifier: Option<&str>, items: &[String]) -> Result<Condition, String> {
    check_modifier(param, modifier)?;
    let (table, mut alternatives, mut values) = (index_table(param.kind), Vec::new(), Vec::new());
    for item in items {
        match param.kind {
            SearchParamType::Token => {
                let token = TokenParam::parse(item, modifier)?;
                let mut condition = Vec::new();
                if let Some(code) = &token.code {
                    condition.push("i.code = ?");
                    values.push(SqlValue::Text(code.clone()));
                }
                match token.system.as_deref() {
                    Some("") => condition.push("i.system IS NULL"),
                    Some(system) => {
                        condition.push("i.system = ?");
                        values.push(SqlValue::Text(system.to_owned()));
                    }
                    None => {}
                }
                alternatives.push(format!("({})", condition.join(" AND ")));
            }
            SearchParamType::String => match modifier {
                Some("exact") => {
                    alternatives.push("i.exact = ?".to_owned());
                    values.push(SqlValue::Text(item.clone()));
                }
                Some("contains") => {
                    alternatives.push("i.normalized LIKE ? ESCAPE '\\'".to_owned());
                    values.push(SqlValue::Text(format!("%{}%", like_escape(&normalize(item)))));
                }
                None => {
                    // A prefix as a range, so the (param, normalized) index answers it.
                    let prefix = normalize(item);
                    alternatives.push("(i.normalized >= ? AND i.normalized < ?)".to_owned());
                    let upper = format!("{prefix}\u{10FFFF}");
                    values.push(SqlValue::Text(prefix));
                    values.push(SqlValue::Text(upper));
                }
                Some(other) => {
                    return Err(format!(
                        "modifier :{other} is not supported on string parameter {}",
                        param.name
                    ));
                }
            },
            SearchParamType::Date => {
                let date = DateParam::parse(item, None)?;
                let range = date_range(&date.value).ok_or_else(|| format!("'{item}' is not a date"))?;
                let (condition, bound) = date_condition(date.prefix, "i.low", "i.high", range);
                alternatives.push(condition);
                values.extend(bound);
            }
            SearchParamType::Reference => {
                let reference = ReferenceParam::parse(item, modifier)?;
                let (target_type, target_id) = match (&reference.resource_type, &reference.id) {
                    (Some(target_type), Some(id)) => (Some(target_type.clone()), id.clone()),
                    (None, Some(id)) => (implied_target(param.name).map(str::to_owned), id.clone()),
                    _ => {
                        // An absolute URL: its last two segments are Type/id.
                        let mut segments = reference.value.rsplit('/');
                        match (segments.next(), segments.next()) {
                            (Some(id), Some(target_type)) => (Some(target_type.to_owned()), id.to_owned()),
                            _ => return Err(format!("'{item}' is not a reference")),
                        }
                    }
                };
                match target_type {
                    Some(target_type) => {
                        alternatives.push("(i.target_type = ? AND i.target_id = ?)".to_owned());
                        values.push(SqlValue::Text(target_type));
                        values.push(SqlValue::Text(target_id));
                    }
                    None => {
                        alternatives.push("i.target_id = ?".to_owned());
                        values.push(SqlValue::Text(target_id));
                    }
                }
            }
        }
    }
    let mut values_with_param = vec![SqlValue::Text(param.name.to_owned())];
    values_with_param.extend(values);
    Ok(Condition::Index {
        table,
        matches: format!("i.param = ? AND ({})", alternatives.join(" OR ")),
        values: values_with_param,
        negated: modifier == Some("not"),
    })
}

/// The one target type R4 restricts a reference parameter to (`AuditEvent.patient` is
/// `agent.who.where(resolve() is Patient) | ...`): `patient=123` means `Patient/123`, and only
/// references to a Patient are indexed under `patient`.
fn implied_target(param_name: &str) -> Option<&'static str> {
    match param_name {
        "patient" => Some("Patient"),
        "encounter" => Some("Encounter"),
        _ => None,
    }
}

/// The index table of a parameter type.
pub fn index_table(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::Token => "search_token",
        SearchParamType::String => "search_string",
        SearchParamType::Date => "search_date",
        SearchParamType::Reference => "search_reference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn member_names_with_escapes_are_indexed_as_their_text_says() {
        let escaped = r#"{"resourceType":"Observation","st\u0061tus":"final","code":{"text":"x"},"subj\u0065ct":{"reference":"Patient/p"}}"#;
        let plain = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                           "subject": {"reference": "Patient/p"}});
        let from_text = index_values_of_json("Observation", escaped).unwrap();
        assert_eq!(from_text, index_values("Observation", &plain));
        assert!(from_text.iter().any(|(param, _)| *param == "status"), "{from_text:?}");
        assert!(from_text.iter().any(|(param, _)| *param == "patient"), "{from_text:?}");
    }

    #[test]
    fn index_values_cover_names_tokens_references_and_periods() {
        let patient = json!({"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Anna"]}],
            "identifier": [{"system": "urn:s", "value": "1"}], "gender": "female", "birthDate": "1980-05"});
        let rows = index_values("Patient", &patient);
        assert!(rows.contains(&(
            "family",
            IndexValue::String {
                normalized: "muller".into(),
                exact: "Müller".into()
            }
        )));
        assert!(rows.contains(&(
            "identifier",
            IndexValue::Token {
                system: Some("urn:s".into()),
                code: "1".into()
            }
        )));
        assert!(rows.contains(&(
            "gender",
            IndexValue::Token {
                system: None,
                code: "female".into()
            }
        )));
        let encounter = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/p1"},
            "period": {"start": "2024-01-01T00:00:00Z"}});
        let rows = index_values("Encounter", &encounter);
        assert!(rows.contains(&(
            "patient",
            IndexValue::Reference {
                target_type: "Patient".into(),
                target_id: "p1".into()
            }
        )));
        assert!(
            rows.iter()
                .any(|(name, value)| *name == "date" && matches!(value, IndexValue::Date { high: i64::MAX, .. }))
        );
    }

    #[test]
    fn patient_parameters_index_only_references_to_patients() {
        let event = json!({"resourceType": "AuditEvent",
            "agent": [{"who": {"reference": "Patient/p1"}}, {"who": {"reference": "Bot/b1"}}],
            "entity": [{"what": {"reference": "Bot/b1"}}]});
        assert_eq!(
            index_values("AuditEvent", &event),
            vec![(
                "patient",
                IndexValue::Reference {
                    target_type: "Patient".into(),
                    target_id: "p1".into()
                }
            )]
        );
        // `subject` is not restricted: a Group subject is indexed there, not under `patient`.
        let observation = json!({"resourceType": "Observation", "subject": {"reference": "Group/g1"}});
        let rows = index_values("Observation", &observation);
        assert!(rows.iter().any(|(name, _)| *name == "subject"), "{rows:?}");
        assert!(!rows.iter().any(|(name, _)| *name == "patient"), "{rows:?}");
    }

    #[test]
    fn unknown_parameters_fail_only_when_strict() {
        let params = vec![
            ("bogus".to_owned(), "1".to_owned()),
            ("family".to_owned(), "smi".to_owned()),
        ];
        let lenient = compile("Patient", &params, false).unwrap();
        assert_eq!(lenient.used, vec![("family".to_owned(), "smi".to_owned())]);
        assert!(compile("Patient", &params, true).unwrap_err().contains("bogus"));
    }
}
