//! The OperationDefinition model: what the macros build and what Bots register. One
//! definition drives routing, the GET rule, binding, validation, `/metadata` and
//! `GET [base]/OperationDefinition/{id}`.

use serde_json::{Map, Value, json};

use crate::types::{OperationArg, ParamKind, TypeInfo};

/// `OperationDefinition.parameter.use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamUse {
    /// An input parameter.
    In,
    /// An output parameter.
    Out,
}

/// `OperationDefinition.parameter.max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    /// At most this many.
    Count(u32),
    /// `*`
    Unbounded,
}

impl Max {
    /// Whether `count` occurrences exceed this maximum.
    pub fn is_exceeded_by(self, count: usize) -> bool {
        match self {
            Max::Count(max) => count > max as usize,
            Max::Unbounded => false,
        }
    }

    /// The FHIR string form (`1`, `*`).
    pub fn to_fhir(self) -> String {
        match self {
            Max::Count(max) => max.to_string(),
            Max::Unbounded => "*".into(),
        }
    }

    /// Parses the FHIR string form.
    pub fn from_fhir(text: &str) -> Option<Max> {
        match text {
            "*" => Some(Max::Unbounded),
            count => count.parse().ok().map(Max::Count),
        }
    }
}

/// One `OperationDefinition.parameter`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDefinition {
    /// The parameter name.
    pub name: String,
    /// In or out.
    pub use_: ParamUse,
    /// Minimum occurrences.
    pub min: u32,
    /// Maximum occurrences.
    pub max: Max,
    /// Primitive, search, complex, resource or tuple.
    pub kind: ParamKind,
    /// `type` (absent for a tuple).
    pub fhir_type: Option<String>,
    /// `searchType` for search-typed parameters.
    pub search_type: Option<String>,
    /// `documentation`.
    pub documentation: Option<String>,
    /// `part`, for multi-part parameters.
    pub parts: Vec<ParamDefinition>,
}

impl ParamDefinition {
    /// An IN parameter whose cardinality and type come from the Rust argument type.
    pub fn input<T: OperationArg>(name: &str) -> ParamDefinition {
        ParamDefinition::from_type(name, ParamUse::In, T::MIN, T::MAX, T::type_info())
    }

    /// An OUT parameter whose cardinality and type come from the Rust type.
    pub fn output<T: OperationArg>(name: &str) -> ParamDefinition {
        ParamDefinition::from_type(name, ParamUse::Out, T::MIN, T::MAX, T::type_info())
    }

    /// A parameter from its parts.
    pub fn from_type(name: &str, use_: ParamUse, min: u32, max: Max, info: TypeInfo) -> ParamDefinition {
        let parts = info
            .parts
            .into_iter()
            .map(|mut part| {
                part.use_ = use_;
                part
            })
            .collect();
        ParamDefinition {
            name: name.into(),
            use_,
            min,
            max,
            kind: info.kind,
            fhir_type: info.fhir_type.map(Into::into),
            search_type: info.search_type.map(Into::into),
            documentation: None,
            parts,
        }
    }

    /// Sets `documentation`.
    pub fn documentation(mut self, text: &str) -> ParamDefinition {
        if !text.is_empty() {
            self.documentation = Some(text.into());
        }
        self
    }

    /// Overrides `min`.
    pub fn min(mut self, min: u32) -> ParamDefinition {
        self.min = min;
        self
    }

    /// Overrides `max`.
    pub fn max(mut self, max: Max) -> ParamDefinition {
        self.max = max;
        self
    }

    /// The parameter as FHIR JSON.
    pub fn to_json(&self) -> Value {
        let mut parameter = Map::new();
        parameter.insert("name".into(), self.name.as_str().into());
        parameter.insert(
            "use".into(),
            match self.use_ {
                ParamUse::In => "in",
                ParamUse::Out => "out",
            }
            .into(),
        );
        parameter.insert("min".into(), self.min.into());
        parameter.insert("max".into(), self.max.to_fhir().into());
        if let Some(documentation) = &self.documentation {
            parameter.insert("documentation".into(), documentation.as_str().into());
        }
        if let Some(fhir_type) = &self.fhir_type {
            parameter.insert("type".into(), fhir_type.as_str().into());
        }
        if let Some(search_type) = &self.search_type {
            parameter.insert("searchType".into(), search_type.as_str().into());
        }
        if !self.parts.is_empty() {
            parameter.insert("part".into(), self.parts.iter().map(ParamDefinition::to_json).collect());
        }
        Value::Object(parameter)
    }
}

/// Where an operation may be invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// `[base]/$op`
    System,
    /// `[base]/Type/$op`
    Type,
    /// `[base]/Type/id/$op` (and `[base]/Type/id/_history/vid/$op`)
    Instance,
}

impl Level {
    /// The FHIR name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Level::System => "system",
            Level::Type => "type",
            Level::Instance => "instance",
        }
    }
}

/// An `OperationDefinition` resource.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationDefinition {
    /// Logical id (HAPI-style, `Patient-it-everything`).
    pub id: String,
    /// Canonical URL; filled in from the server's base URL when registered.
    pub url: Option<String>,
    /// Computer-friendly name.
    pub name: String,
    /// Human-friendly name.
    pub title: Option<String>,
    /// draft | active | retired | unknown.
    pub status: String,
    /// The code, without `$`.
    pub code: String,
    /// Resource types the operation applies to.
    pub resource: Vec<String>,
    /// Invoke at the system level.
    pub system: bool,
    /// Invoke at the type level.
    pub type_level: bool,
    /// Invoke on an instance.
    pub instance: bool,
    /// Whether the operation changes content (only POST then).
    pub affects_state: bool,
    /// Natural language description.
    pub description: Option<String>,
    /// Parameters, in and out.
    pub parameters: Vec<ParamDefinition>,
    /// Extensions to keep as they are (Bots' implementation link, for instance).
    pub extensions: Vec<Value>,
}

impl OperationDefinition {
    /// Starts a definition for `code` (with or without `$`).
    pub fn builder(code: &str) -> OperationDefinitionBuilder {
        let code = code.trim_start_matches('$').to_owned();
        OperationDefinitionBuilder {
            definition: OperationDefinition {
                id: String::new(),
                url: None,
                name: name_from_code(&code),
                title: None,
                status: "active".into(),
                code,
                resource: Vec::new(),
                system: false,
                type_level: false,
                instance: false,
                affects_state: true,
                description: None,
                parameters: Vec::new(),
                extensions: Vec::new(),
            },
        }
    }

    /// Whether the operation may be invoked at `level` on `resource_type`.
    pub fn supports(&self, level: Level, resource_type: Option<&str>) -> bool {
        match (level, resource_type) {
            (Level::System, _) => self.system,
            (Level::Type, Some(resource_type)) => self.type_level && self.applies_to(resource_type),
            (Level::Instance, Some(resource_type)) => self.instance && self.applies_to(resource_type),
            _ => false,
        }
    }

    fn applies_to(&self, resource_type: &str) -> bool {
        self.resource
            .iter()
            .any(|declared| declared == resource_type || declared == "Resource" || declared == "DomainResource")
    }

    /// The levels declared, for error messages: `system`, `type (Patient)`, ...
    pub fn describe_levels(&self) -> String {
        let types = self.resource.join(", ");
        let mut levels = Vec::new();
        if self.system {
            levels.push("system ([base]/$".to_owned() + &self.code + ")");
        }
        if self.type_level {
            levels.push(format!("type ({types})"));
        }
        if self.instance {
            levels.push(format!("instance ({types})"));
        }
        if levels.is_empty() {
            "no level".into()
        } else {
            levels.join(", ")
        }
    }

    /// The IN parameters.
    pub fn inputs(&self) -> impl Iterator<Item = &ParamDefinition> {
        self.parameters
            .iter()
            .filter(|parameter| parameter.use_ == ParamUse::In)
    }

    /// The OUT parameters.
    pub fn outputs(&self) -> impl Iterator<Item = &ParamDefinition> {
        self.parameters
            .iter()
            .filter(|parameter| parameter.use_ == ParamUse::Out)
    }

    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Value {
        let mut definition = Map::new();
        definition.insert("resourceType".into(), "OperationDefinition".into());
        definition.insert("id".into(), self.id.as_str().into());
        if !self.extensions.is_empty() {
            definition.insert("extension".into(), self.extensions.clone().into());
        }
        if let Some(url) = &self.url {
            definition.insert("url".into(), url.as_str().into());
        }
        definition.insert("name".into(), self.name.as_str().into());
        if let Some(title) = &self.title {
            definition.insert("title".into(), title.as_str().into());
        }
        definition.insert("status".into(), self.status.as_str().into());
        definition.insert("kind".into(), "operation".into());
        if let Some(description) = &self.description {
            definition.insert("description".into(), description.as_str().into());
        }
        definition.insert("affectsState".into(), self.affects_state.into());
        definition.insert("code".into(), self.code.as_str().into());
        if !self.resource.is_empty() {
            definition.insert("resource".into(), self.resource.clone().into());
        }
        definition.insert("system".into(), self.system.into());
        definition.insert("type".into(), self.type_level.into());
        definition.insert("instance".into(), self.instance.into());
        if !self.parameters.is_empty() {
            definition.insert(
                "parameter".into(),
                self.parameters.iter().map(ParamDefinition::to_json).collect(),
            );
        }
        Value::Object(definition)
    }
}

/// The FHIR primitive type names.
pub const PRIMITIVE_TYPES: [&str; 20] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// The kind of a parameter declared with `type`, `searchType` and `part` (for definitions
/// read from JSON, such as Bots').
pub fn kind_of(fhir_type: Option<&str>, search_type: Option<&str>, has_parts: bool) -> ParamKind {
    match (fhir_type, search_type) {
        (_, Some(_)) => ParamKind::Search,
        (None, None) if has_parts => ParamKind::Tuple,
        (Some(fhir_type), None) if PRIMITIVE_TYPES.contains(&fhir_type) => ParamKind::Primitive,
        (Some(fhir_type), None)
            if crate::resource_types::is_r4_resource_type(fhir_type)
                || matches!(fhir_type, "Resource" | "DomainResource") =>
        {
            ParamKind::Resource
        }
        (Some(_), None) => ParamKind::Complex,
        (None, None) => ParamKind::Primitive,
    }
}

impl ParamDefinition {
    /// Reads one `OperationDefinition.parameter`.
    pub fn from_json(json: &Value) -> Result<ParamDefinition, String> {
        let name = json
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or("a parameter needs a name")?;
        let use_ = match json.get("use").and_then(Value::as_str) {
            Some("in") => ParamUse::In,
            Some("out") => ParamUse::Out,
            _ => return Err(format!("parameter '{name}' needs use 'in' or 'out'")),
        };
        let min = json
            .get("min")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("parameter '{name}' needs a min"))? as u32;
        let max = json
            .get("max")
            .and_then(Value::as_str)
            .and_then(Max::from_fhir)
            .ok_or_else(|| format!("parameter '{name}' needs a max such as \"1\" or \"*\""))?;
        let parts = match json.get("part").and_then(Value::as_array) {
            Some(parts) => parts.iter().map(ParamDefinition::from_json).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fhir_type = json.get("type").and_then(Value::as_str).map(str::to_owned);
        let search_type = json.get("searchType").and_then(Value::as_str).map(str::to_owned);
        if fhir_type.is_none() && parts.is_empty() {
            return Err(format!("parameter '{name}' needs a type or parts"));
        }
        Ok(ParamDefinition {
            name: name.to_owned(),
            use_,
            min,
            max,
            kind: kind_of(fhir_type.as_deref(), search_type.as_deref(), !parts.is_empty()),
            fhir_type,
            search_type,
            documentation: json.get("documentation").and_then(Value::as_str).map(str::to_owned),
            parts,
        })
    }
}

impl OperationDefinition {
    /// Reads an `OperationDefinition` resource (one a client stored, for instance).
    pub fn from_json(json: &Value) -> Result<OperationDefinition, String> {
        if json.get("resourceType").and_then(Value::as_str) != Some("OperationDefinition") {
            return Err("expected an OperationDefinition".into());
        }
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
        let code = text("code")
            .map(|code| code.trim_start_matches('$').to_owned())
            .filter(|code| !code.is_empty())
            .ok_or("an OperationDefinition needs a code")?;
        let parameters = match json.get("parameter").and_then(Value::as_array) {
            Some(parameters) => parameters
                .iter()
                .map(ParamDefinition::from_json)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let resource = json
            .get("resource")
            .and_then(Value::as_array)
            .map(|types| types.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(OperationDefinition {
            id: text("id").unwrap_or_default(),
            url: text("url"),
            name: text("name").unwrap_or_else(|| name_from_code(&code)),
            title: text("title"),
            status: text("status").unwrap_or_else(|| "active".into()),
            code,
            resource,
            system: flag("system"),
            type_level: flag("type"),
            instance: flag("instance"),
            affects_state: flag("affectsState"),
            description: text("description"),
            parameters,
            extensions: json
                .get("extension")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// `everything` → `Everything`; `add-identifier` → `AddIdentifier`: FHIR's `name` is
/// computer-friendly (`[A-Z]([A-Za-z0-9_]){0,254}`).
fn name_from_code(code: &str) -> String {
    code.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(crate::types::value_suffix)
        .collect()
}

/// HAPI-style id: resource types, the levels (`s`ystem, `t`ype, `i`nstance) and the code,
/// kept to FHIR's id rule.
fn default_id(definition: &OperationDefinition) -> String {
    let mut levels = String::new();
    if definition.system {
        levels.push('s');
    }
    if definition.instance {
        levels.push('i');
    }
    if definition.type_level {
        levels.push('t');
    }
    let mut parts: Vec<&str> = definition.resource.iter().map(String::as_str).collect();
    parts.push(&levels);
    parts.push(&definition.code);
    let id: String = parts
        .join("-")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    id.chars().take(64).collect()
}

/// Builds an [`OperationDefinition`]; what `#[operation]` expands to.
#[derive(Debug, Clone)]
pub struct OperationDefinitionBuilder {
    definition: OperationDefinition,
}

impl OperationDefinitionBuilder {
    /// Adds a resource type.
    pub fn resource(mut self, resource_type: &str) -> Self {
        self.definition.resource.push(resource_type.into());
        self
    }

    /// Declares the system level.
    pub fn system(mut self, yes: bool) -> Self {
        self.definition.system = yes;
        self
    }

    /// Declares the type level.
    pub fn type_level(mut self, yes: bool) -> Self {
        self.definition.type_level = yes;
        self
    }

    /// Declares the instance level.
    pub fn instance(mut self, yes: bool) -> Self {
        self.definition.instance = yes;
        self
    }

    /// `idempotent = true` means `affectsState = false` (HAPI's spelling).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.definition.affects_state = !yes;
        self
    }

    /// Sets `description` (from the doc comment).
    pub fn description(mut self, text: &str) -> Self {
        if !text.is_empty() {
            self.definition.description = Some(text.into());
        }
        self
    }

    /// Sets `title`.
    pub fn title(mut self, text: &str) -> Self {
        self.definition.title = Some(text.into());
        self
    }

    /// Sets `name`.
    pub fn name(mut self, name: &str) -> Self {
        self.definition.name = name.into();
        self
    }

    /// Sets the logical id.
    pub fn id(mut self, id: &str) -> Self {
        self.definition.id = id.into();
        self
    }

    /// Sets `status`.
    pub fn status(mut self, status: &str) -> Self {
        self.definition.status = status.into();
        self
    }

    /// Sets the canonical URL.
    pub fn url(mut self, url: &str) -> Self {
        self.definition.url = Some(url.into());
        self
    }

    /// Adds a parameter.
    pub fn parameter(mut self, parameter: ParamDefinition) -> Self {
        self.definition.parameters.push(parameter);
        self
    }

    /// Adds OUT parameters (from the return type).
    pub fn outputs(mut self, parameters: Vec<ParamDefinition>) -> Self {
        self.definition.parameters.extend(parameters);
        self
    }

    /// The definition, with a default id when none was set.
    pub fn build(mut self) -> OperationDefinition {
        if self.definition.id.is_empty() {
            self.definition.id = default_id(&self.definition);
        }
        self.definition
    }
}

/// The canonical URL of a definition served by this server.
pub fn canonical_url(base_url: &str, id: &str) -> String {
    format!("{}/OperationDefinition/{id}", base_url.trim_end_matches('/'))
}

/// A Bundle `searchset` of definitions.
pub fn searchset(definitions: &[Value], self_url: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": definitions.len(),
        "link": [{"relation": "self", "url": self_url}],
        "entry": definitions.iter().map(|definition| json!({
            "fullUrl": definition.get("url").cloned().unwrap_or(Value::Null),
            "resource": definition,
            "search": {"mode": "match"},
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_follow_hapi_and_fhir_rules() {
        let definition = OperationDefinition::builder("$everything")
            .resource("Patient")
            .type_level(true)
            .instance(true)
            .build();
        assert_eq!(definition.id, "Patient-it-everything");
        assert_eq!(definition.name, "Everything");
        let system = OperationDefinition::builder("$add-identifier").system(true).build();
        assert_eq!(system.id, "s-add-identifier");
        assert_eq!(system.name, "AddIdentifier");
    }

    #[test]
    fn levels_are_checked_per_type() {
        let definition = OperationDefinition::builder("x")
            .resource("Patient")
            .type_level(true)
            .build();
        assert!(definition.supports(Level::Type, Some("Patient")));
        assert!(!definition.supports(Level::Type, Some("Observation")));
        assert!(!definition.supports(Level::Instance, Some("Patient")));
        assert!(!definition.supports(Level::System, None));
        assert_eq!(definition.describe_levels(), "type (Patient)");
    }
}
