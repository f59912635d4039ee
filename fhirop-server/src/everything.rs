//! `Patient/$everything` (R4 OperationDefinition Patient-everything): the patient, every
//! resource in its compartment (by the R4 CompartmentDefinition), and the resources those
//! reference, as a searchset Bundle.

use std::collections::{HashSet, VecDeque};

use fhirop::prelude::*;
use fhirop::store::{ReadResult, SearchQuery, StoreHandle, StoredResource};
use fhirop::types::time::date_range;
use serde_json::Value;

use crate::store::search_parameters::PATIENT_COMPARTMENT;

/// The page size when `_count` is not given.
const DEFAULT_COUNT: u32 = 100;
/// How many matches one store search fetches at a time.
const SEARCH_PAGE: usize = 500;

/// This operation is used to return all the information related to one or more patients
/// described in the resource or context on which this operation is invoked. The response is a
/// bundle of type "searchset". At a minimum, the patient resource(s) itself is returned, along
/// with any other resources that the server has that are related to the patient(s), and that
/// are available for the given user.
#[operation(
    name = "$everything",
    idempotent = true,
    resource = "Patient",
    type_level = true,
    instance = true
)]
#[allow(clippy::too_many_arguments)]
pub async fn everything(
    #[id_param] id: Option<IdParam>,
    /// The date range relates to care dates, not record currency dates - e.g. all records
    /// relating to care provided in a certain date range. If no start date is provided, all
    /// records prior to the end date are in scope.
    #[op_param(name = "start")]
    start: Option<Date>,
    /// The date range relates to care dates, not record currency dates - e.g. all records
    /// relating to care provided in a certain date range. If no end date is provided, all
    /// records subsequent to the start date are in scope.
    #[op_param(name = "end")]
    end: Option<Date>,
    /// Resources updated after this period will be included in the response.
    #[op_param(name = "_since")]
    since: Option<Instant>,
    /// One or more parameters, each containing one or more comma-delimited FHIR resource
    /// types to include in the return resources.
    #[op_param(name = "_type")]
    types: Vec<Code>,
    /// See discussion below on the utility of paging through the results of the $everything
    /// operation.
    #[op_param(name = "_count")]
    count: Option<i32>,
    /// Where the page starts: fhirop's addition to the R4 definition, used by its paging links.
    #[op_param(name = "_offset")]
    offset: Option<u32>,
    context: OperationContext,
) -> Result<Bundle, OperationError> {
    let store = context.store()?.clone();
    let tenant = context.tenant();
    let access = crate::access::Access::of(context.request()).into_owned();
    access.require_read("Patient")?;
    let filter = Filter {
        access,
        types: types
            .iter()
            .flat_map(|types| types.split(','))
            .map(|resource_type| resource_type.trim().to_owned())
            .collect(),
        since: since.map(Instant::into_string),
        start: start.map(Date::into_string),
        end: end.map(Date::into_string),
    };
    let patients = match &id {
        Some(id) => match store.read(&tenant, "Patient", &id.id).await? {
            ReadResult::Found(patient) => vec![patient],
            ReadResult::Deleted(_) => {
                return Err(OperationError::new(
                    fhirop::actix_web::http::StatusCode::GONE,
                    IssueType::Deleted,
                    format!("Patient/{} was deleted", id.id),
                ));
            }
            ReadResult::NotFound => return Err(OperationError::not_found(format!("Patient/{} is not known", id.id))),
        },
        None => all_of(&store, &tenant, "Patient", Vec::new()).await?,
    };
    let mut collected = Vec::new();
    for patient in patients {
        collect_patient(&store, &tenant, patient, &filter, &mut collected).await?;
    }
    let count = count.map_or(DEFAULT_COUNT, |count| count.max(1) as u32) as usize;
    let offset = offset.unwrap_or(0) as usize;
    let base_url = context.base_url().to_owned();
    // Paging links carry the request's filters, so every page is a page of the same result.
    let mut filters = form_urlencoded::Serializer::new(String::new());
    for resource_type in &filter.types {
        filters.append_pair("_type", resource_type);
    }
    for (name, value) in [
        ("_since", &filter.since),
        ("start", &filter.start),
        ("end", &filter.end),
    ] {
        if let Some(value) = value {
            filters.append_pair(name, value);
        }
    }
    let filters = filters.finish();
    let page_url = |offset: usize| {
        let target = match &id {
            Some(id) => format!("{base_url}/Patient/{}/$everything", id.id),
            None => format!("{base_url}/Patient/$everything"),
        };
        let separator = if filters.is_empty() { "" } else { "&" };
        format!("{target}?{filters}{separator}_count={count}&_offset={offset}")
    };
    let mut bundle = Bundle::searchset().link("self", &page_url(offset));
    if offset + count < collected.len() {
        bundle = bundle.link("next", &page_url(offset + count));
    }
    if offset > 0 {
        bundle = bundle.link("previous", &page_url(offset.saturating_sub(count)));
    }
    bundle.total = Some(collected.len() as u64);
    for (stored, mode) in collected.into_iter().skip(offset).take(count) {
        if let Some(resource) = stored.resource {
            let full_url = format!("{base_url}/{}/{}", stored.resource_type, stored.id);
            bundle.push_entry(Some(full_url), resource, mode);
        }
    }
    Ok(bundle)
}

/// `_type`, `_since`, `start`, `end`, and what the caller may read.
struct Filter {
    access: crate::access::Access,
    types: Vec<String>,
    since: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

impl Filter {
    fn admits_type(&self, resource_type: &str) -> bool {
        self.access.can_read(resource_type)
            && (self.types.is_empty() || self.types.iter().any(|admitted| admitted == resource_type))
    }

    /// The store parameters that carry `_since`, `start` and `end` for a type.
    fn search_params(&self, store: &StoreHandle, resource_type: &str) -> Vec<(String, String)> {
        let mut params = Vec::new();
        if let Some(since) = &self.since {
            params.push(("_lastUpdated".to_owned(), format!("ge{since}")));
        }
        if store.supports_search_param(resource_type, "date") {
            if let Some(start) = &self.start {
                params.push(("date".to_owned(), format!("ge{start}")));
            }
            if let Some(end) = &self.end {
                params.push(("date".to_owned(), format!("le{end}")));
            }
        }
        params
    }
}

/// Every current resource of a type matching `params`, fetched page by page.
async fn all_of(
    store: &StoreHandle,
    tenant: &str,
    resource_type: &str,
    params: Vec<(String, String)>,
) -> Result<Vec<StoredResource>, OperationError> {
    let mut query = SearchQuery {
        resource_type: resource_type.to_owned(),
        params,
        count: SEARCH_PAGE,
        ..SearchQuery::default()
    };
    let mut found = Vec::new();
    loop {
        let result = store.search(tenant, &query).await?;
        found.extend(result.resources);
        if !result.has_more {
            return Ok(found);
        }
        query.offset += SEARCH_PAGE;
    }
}

/// Adds one patient, its compartment and what they reference to `collected`.
async fn collect_patient(
    store: &StoreHandle,
    tenant: &str,
    patient: StoredResource,
    filter: &Filter,
    collected: &mut Vec<(StoredResource, &'static str)>,
) -> Result<(), OperationError> {
    let mut seen: HashSet<String> = collected
        .iter()
        .map(|(stored, _)| reference_key(&stored.resource_type, &stored.id))
        .collect();
    let patient_id = patient.id.clone();
    let patient_reference = format!("Patient/{patient_id}");
    seen.insert(patient_reference.clone());
    // The patient itself is always returned, whatever _type and _since say.
    collected.push((patient, "match"));
    let members_start = collected.len();
    if filter.start.is_none() && filter.end.is_none() {
        // No care-date range: one store call reads the whole compartment.
        let since = filter.since.as_deref().and_then(date_range).map(|(low, _)| low);
        let members = store
            .referencing(tenant, "Patient", &patient_id, PATIENT_COMPARTMENT)
            .await?;
        for stored in members {
            let updated_since =
                since.is_none_or(|since| date_range(&stored.last_updated).is_some_and(|(updated, _)| updated >= since));
            if filter.admits_type(&stored.resource_type)
                && updated_since
                && seen.insert(reference_key(&stored.resource_type, &stored.id))
            {
                collected.push((stored, "match"));
            }
        }
    } else {
        collect_by_search(store, tenant, &patient_reference, filter, &mut seen, collected).await?;
    }
    include_referenced(store, tenant, filter, members_start, &mut seen, collected).await
}

/// The compartment by one search per (type, link parameter), for filters the reference index
/// alone cannot apply (care dates).
async fn collect_by_search(
    store: &StoreHandle,
    tenant: &str,
    patient_reference: &str,
    filter: &Filter,
    seen: &mut HashSet<String>,
    collected: &mut Vec<(StoredResource, &'static str)>,
) -> Result<(), OperationError> {
    for (resource_type, params) in PATIENT_COMPARTMENT {
        if !filter.admits_type(resource_type) {
            continue;
        }
        for param in *params {
            if *resource_type == "Patient" {
                continue;
            }
            let mut search_params = vec![((*param).to_owned(), patient_reference.to_owned())];
            search_params.extend(filter.search_params(store, resource_type));
            for stored in all_of(store, tenant, resource_type, search_params).await? {
                if seen.insert(reference_key(&stored.resource_type, &stored.id)) {
                    collected.push((stored, "match"));
                }
            }
        }
    }
    Ok(())
}

/// Adds the resources the patient and its compartment reference (practitioners,
/// organizations, medications, ...) as `include` entries.
async fn include_referenced(
    store: &StoreHandle,
    tenant: &str,
    filter: &Filter,
    members_start: usize,
    seen: &mut HashSet<String>,
    collected: &mut Vec<(StoredResource, &'static str)>,
) -> Result<(), OperationError> {
    let mut references: VecDeque<String> = VecDeque::new();
    for (stored, _) in &collected[members_start - 1..] {
        if let Some(resource) = &stored.resource {
            references_in(resource, seen, &mut references);
        }
    }
    while let Some(reference) = references.pop_front() {
        let Some((resource_type, id)) = reference.split_once('/') else {
            continue;
        };
        if !filter.admits_type(resource_type) {
            continue;
        }
        if let ReadResult::Found(stored) = store.read(tenant, resource_type, id).await? {
            collected.push((stored, "include"));
        }
    }
    Ok(())
}

/// `Type/id`: how `seen` names a resource, the way relative references do.
fn reference_key(resource_type: &str, id: &str) -> String {
    format!("{resource_type}/{id}")
}

/// Pushes every relative `Type/id` reference in `value` that is not in `seen` yet, and adds
/// it there: every compartment member references its patient, which is looked up once
/// rather than once per member.
fn references_in(value: &Value, seen: &mut HashSet<String>, references: &mut VecDeque<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                match member {
                    Value::String(reference) if key == "reference" => {
                        if reference.split('/').count() == 2
                            && !reference.contains(':')
                            && !seen.contains(reference.as_str())
                        {
                            seen.insert(reference.clone());
                            references.push_back(reference.clone());
                        }
                    }
                    other => references_in(other, seen, references),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references_in(item, seen, references)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_relative_reference_is_collected_once_and_known_ones_not_at_all() {
        let mut seen: HashSet<String> = [reference_key("Patient", "p1")].into_iter().collect();
        let mut references = VecDeque::new();
        let observations = [
            json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
                   "performer": [{"reference": "Practitioner/d1"}, {"reference": "Organization/o1"}]}),
            json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
                   "performer": [{"reference": "Practitioner/d1"}],
                   "basedOn": [{"reference": "https://other.example/fhir/ServiceRequest/s1"},
                               {"reference": "ServiceRequest/s1/_history/2"}]}),
        ];
        for observation in &observations {
            references_in(observation, &mut seen, &mut references);
        }
        assert_eq!(
            references.into_iter().collect::<Vec<_>>(),
            ["Practitioner/d1", "Organization/o1"]
        );
        assert!(seen.contains("Practitioner/d1") && seen.contains("Organization/o1"));
    }
}
