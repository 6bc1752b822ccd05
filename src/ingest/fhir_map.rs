//! One AuditEvent resource to one canonical audit row: the data contract's mapping table, over a typed, borrowed
//! view of only the elements it reads.
//!
//! The view is read straight from an NDJSON line's text (no `serde_json::Value` tree is built for the resource,
//! and its strings borrow the line where they hold no escapes), or from a tree (a document's resource, or XML made
//! into the JSON shape) through the same `Deserialize` impls. Either way it is as lenient as a walk over a tree:
//! an element of an unexpected JSON type reads as absent, an element that may repeat reads the same as one object
//! or an array of them (XML cannot tell them apart), and booleans may be the strings XML gives. Elements the
//! mapping does not read are skipped by the parser without being built.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::fhir::{FhirSettings, NHS_NUMBER_SYSTEM};
use super::rows::RowError;
use super::validate;
use crate::records::AuditEvent;
use crate::schema;

/// Any JSON value, as far as a lenient element cares: text, a boolean, null, an object read as `T`, or something
/// else (skipped).
enum Any<'a, T> {
    Text(Cow<'a, str>),
    Bool(bool),
    Null,
    Object(T),
    Other,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Any<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = Any<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Any::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Any::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Any::Text(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Any::Bool(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Any::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Any::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Any::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Any::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Any::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Any::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(a)).map(Any::Object)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A string element, trimmed; any other JSON type, or an empty string, is absent.
#[derive(Default)]
struct Str<'a>(Option<Cow<'a, str>>);

impl Str<'_> {
    fn get(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Any::<Ignored>::deserialize(d)? {
            Any::Text(t) => Str(Some(t)),
            _ => Str(None),
        })
    }
}

/// A boolean element: JSON `true`, or the text `true` (XML's form).
#[derive(Default)]
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Flag(match Any::<Ignored>::deserialize(d)? {
            Any::Bool(b) => b,
            Any::Text(t) => t.trim() == "true",
            _ => false,
        }))
    }
}

/// An object element; any other JSON type reads as an empty one.
#[derive(Default)]
struct Obj<T>(T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Obj(match Any::<T>::deserialize(d)? {
            Any::Object(t) => t,
            _ => T::default(),
        }))
    }
}

/// An element that may repeat: an array's items, or one value as a list of one (null or absent: none). `single`
/// says it came as one value, not an array.
struct List<T> {
    items: Vec<T>,
    single: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            single: false,
        }
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        fn one<T>(t: T) -> List<T> {
            List {
                items: vec![t],
                single: true,
            }
        }
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(t) = a.next_element()? {
                    items.push(t);
                }
                Ok(List {
                    items,
                    single: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(a)).map(one)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(one(T::default()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(one(T::default()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(one(T::default()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(one(T::default()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(one(T::default()))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(List::default())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(List::default())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<T> List<T> {
    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
    /// The value when it came as one, not as an array.
    fn lone(&self) -> Option<&T> {
        self.items.first().filter(|_| self.single)
    }
}

/// An element that is there (whatever its value, `null` included) or not, and what it holds read as an object.
#[derive(Default)]
struct Field<T> {
    present: bool,
    value: T,
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Obj(value) = Obj::<T>::deserialize(d)?;
        Ok(Field {
            present: true,
            value,
        })
    }
}

type Present = Field<Ignored>;

/// Anything, skipped.
#[derive(Default)]
struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Coding<'a> {
    #[serde(borrow)]
    code: Str<'a>,
    #[serde(borrow)]
    coding: List<Obj<Coded<'a>>>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Coded<'a> {
    #[serde(borrow)]
    code: Str<'a>,
}

/// A Coding, a CodeableConcept, or a list of either.
type Codes<'a> = List<Obj<Coding<'a>>>;

/// Every code in [`Codes`].
fn codes<'v>(v: &'v Codes<'_>) -> Vec<&'v str> {
    let mut out = Vec::new();
    for Obj(item) in v.iter() {
        out.extend(item.code.get());
        out.extend(item.coding.iter().filter_map(|Obj(c)| c.code.get()));
    }
    out
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Identifier<'a> {
    #[serde(borrow)]
    system: Str<'a>,
    #[serde(borrow)]
    value: Str<'a>,
}

/// A Reference: by identifier or by literal reference.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Reference<'a> {
    #[serde(borrow)]
    identifier: List<Obj<Identifier<'a>>>,
    #[serde(borrow)]
    reference: Str<'a>,
    #[serde(borrow)]
    display: Str<'a>,
}

impl Reference<'_> {
    /// The identifier's value when there is one identifier, else the literal reference.
    fn id(&self) -> Option<&str> {
        self.identifier
            .lone()
            .and_then(|Obj(i)| i.value.get())
            .or_else(|| self.reference.get())
    }

    fn nhs_number(&self) -> Option<&str> {
        nhs_of_identifier(&self.identifier)
    }
}

fn nhs_of_identifier<'v>(ids: &'v List<Obj<Identifier<'_>>>) -> Option<&'v str> {
    ids.iter()
        .find(|Obj(i)| i.system.get() == Some(NHS_NUMBER_SYSTEM))
        .and_then(|Obj(i)| i.value.get())
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Network<'a> {
    #[serde(borrow)]
    address: Str<'a>,
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Agent<'a> {
    #[serde(rename = "userId")]
    user_id: Present,
    reference: Present,
    requestor: Flag,
    #[serde(borrow)]
    who: Obj<Reference<'a>>,
    #[serde(borrow, rename = "type")]
    kind: Codes<'a>,
    #[serde(borrow)]
    role: Codes<'a>,
    #[serde(borrow)]
    network: Obj<Network<'a>>,
    #[serde(borrow, rename = "networkString")]
    network_string: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Entity<'a> {
    #[serde(borrow)]
    what: Field<Reference<'a>>,
    reference: Present,
    identifier: Present,
    #[serde(borrow)]
    role: Codes<'a>,
    #[serde(borrow, rename = "type")]
    kind: Codes<'a>,
    #[serde(borrow)]
    name: Str<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Extension<'a> {
    #[serde(borrow)]
    url: Str<'a>,
    #[serde(borrow, rename = "valueString")]
    value_string: Str<'a>,
    #[serde(borrow, rename = "valueId")]
    value_id: Str<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct EventSource<'a> {
    #[serde(borrow)]
    observer: Obj<Reference<'a>>,
}

/// A contained resource or a Bundle's Patient: its id and identifiers.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    identifier: List<Obj<Identifier<'a>>>,
}

/// `outcome`: R4's code as text, or R5's `{ code: Coding }`.
#[derive(Default)]
enum Outcome<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Coded(Codes<'a>),
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct CodedOutcome<'a> {
    #[serde(borrow)]
    code: Codes<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Outcome<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Any::<CodedOutcome>::deserialize(d)? {
            Any::Null => Outcome::Absent,
            Any::Text(t) => Outcome::Text(t),
            Any::Object(o) => Outcome::Coded(o.code),
            Any::Bool(_) | Any::Other => Outcome::Coded(List::default()),
        })
    }
}

/// The elements of an AuditEvent the mapping reads.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(borrow, rename = "resourceType")]
    resource_type: Str<'a>,
    #[serde(borrow)]
    agent: List<Obj<Agent<'a>>>,
    #[serde(borrow)]
    entity: List<Obj<Entity<'a>>>,
    #[serde(borrow)]
    recorded: Str<'a>,
    #[serde(borrow, rename = "occurredDateTime")]
    occurred: Str<'a>,
    #[serde(borrow)]
    source: Obj<EventSource<'a>>,
    #[serde(borrow)]
    extension: List<Obj<Extension<'a>>>,
    #[serde(borrow, rename = "type")]
    kind: Codes<'a>,
    #[serde(borrow)]
    subtype: Codes<'a>,
    #[serde(borrow)]
    category: Codes<'a>,
    #[serde(borrow)]
    code: Codes<'a>,
    #[serde(borrow)]
    action: Str<'a>,
    #[serde(borrow)]
    outcome: Outcome<'a>,
    /// R5's patient.
    #[serde(borrow)]
    patient: Field<Reference<'a>>,
    #[serde(borrow)]
    contained: List<Obj<Named<'a>>>,
    /// The Bundle's Patients this event refers to, attached by the document reader.
    #[serde(borrow, rename = "_bundlePatients")]
    bundle_patients: Obj<HashMap<String, Obj<Named<'a>>>>,
}

/// Maps a resource's text (an NDJSON line) to a canonical audit row; `raw` is that text. Invalid JSON is "not
/// JSON"; valid JSON of an unexpected shape is mapped as leniently as a tree is.
pub fn map_text(text: &str, line: i64, settings: &FhirSettings) -> Result<AuditEvent, RowError> {
    let Obj(event) = serde_json::from_str::<Obj<Event>>(text).map_err(|e| RowError {
        column: None,
        reason: if e.is_data() {
            format!("not a readable FHIR resource: {e}")
        } else {
            format!("not JSON: {e}")
        },
    })?;
    map_event(&event, line, settings, || text.trim().to_string())
}

/// Maps a resource's tree to a canonical audit row; `raw` is the tree as compact JSON, without the Bundle's
/// patients attached for the mapping.
pub fn map_tree(v: &Value, line: i64, settings: &FhirSettings) -> Result<AuditEvent, RowError> {
    let Obj(event) = Obj::<Event>::deserialize(v).map_err(|e| RowError {
        column: None,
        reason: format!("not a readable FHIR resource: {e}"),
    })?;
    map_event(&event, line, settings, || match v.as_object() {
        Some(o) => serde_json::to_string(&Without(o, "_bundlePatients")).unwrap_or_default(),
        None => v.to_string(),
    })
}

/// A JSON object serialised without one of its keys, in its own order.
struct Without<'a>(&'a serde_json::Map<String, Value>, &'a str);

impl serde::Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != self.1 {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// The FHIR resource type a reference points at ("Observation/12" -> "Observation").
fn reference_type(r: &str) -> Option<&str> {
    let r = r.rsplit_once("/_history/").map(|(a, _)| a).unwrap_or(r);
    let parts: Vec<&str> = r.trim_end_matches('/').split('/').collect();
    (parts.len() >= 2)
        .then(|| parts[parts.len() - 2])
        .filter(|t| t.chars().next().is_some_and(char::is_uppercase))
}

fn section_of_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "Observation" | "DiagnosticReport" => "test_results",
        "DocumentReference" | "Binary" => "documents",
        "Encounter" | "Composition" => "consultations",
        "MedicationStatement" | "MedicationRequest" => "medications",
        "Condition" => "problems",
        "AllergyIntolerance" => "allergies",
        "Immunization" => "immunisations",
        "Appointment" => "appointments",
        _ => return None,
    })
}

/// Where a mapping stopped: the FHIR element at fault and why.
fn fault(column: &'static str, reason: impl Into<String>) -> RowError {
    RowError {
        column: Some(column),
        reason: reason.into(),
    }
}

fn map_event(
    v: &Event,
    line: i64,
    settings: &FhirSettings,
    raw: impl FnOnce() -> String,
) -> Result<AuditEvent, RowError> {
    match v.resource_type.0.as_deref() {
        Some("AuditEvent") => {}
        Some(other) => {
            return Err(fault(
                "resourceType",
                format!("a {other} resource, not an AuditEvent"),
            ))
        }
        None => {
            return Err(fault(
                "resourceType",
                "not a FHIR resource (no resourceType)",
            ))
        }
    }
    let agents: Vec<&Agent> = v.agent.iter().map(|Obj(a)| a).collect();
    let entities: Vec<&Entity> = v.entity.iter().map(|Obj(e)| e).collect();
    // STU3 named agents by `reference`/`userId` and entities by `reference`/`identifier`, without `who`/`what`.
    let stu3 = agents
        .iter()
        .any(|a| a.user_id.present || a.reference.present)
        || entities
            .iter()
            .any(|e| !e.what.present && (e.reference.present || e.identifier.present));
    if stu3 {
        return Err(fault("agent", "looks like FHIR STU3 (agent.userId / entity.reference): only R4 and R5 AuditEvents are read"));
    }
    let time = v
        .recorded
        .get()
        .or_else(|| v.occurred.get())
        .ok_or_else(|| fault("recorded", "the AuditEvent has no time (recorded)"))?;
    let occurred_at =
        validate::timestamp(time, settings.timezone).map_err(|r| fault("recorded", r))?;
    let nhs_number = patient_nhs(v, &agents, &entities)?;

    let requestor = agents.iter().find(|a| a.requestor.0);
    let account_id = requestor.and_then(|a| a.who.0.id()).map(str::to_string);
    let actor_role = if requestor.is_some_and(|a| {
        codes(&a.kind)
            .into_iter()
            .chain(codes(&a.role))
            .any(|c| ["AGNT", "GUARD", "REP", "proxy", "PROXY"].contains(&c))
    }) {
        "proxy"
    } else {
        "patient"
    };
    let ip_address = requestor.and_then(|a| {
        let Obj(net) = &a.network;
        let typed = net.address.get().filter(|_| net.kind.get() == Some("2"));
        typed
            .or(a.network_string.get())
            .and_then(|addr| validate::ip_address(addr).ok())
    });
    let device = agents
        .iter()
        .find(|a| codes(&a.kind).iter().any(|c| *c == "DEV" || *c == "110150"));
    let device_id = device.and_then(|d| d.who.0.id()).map(str::to_string);
    let user_agent = device.and_then(|d| d.name.get()).map(str::to_string);
    let Obj(observer) = &v.source.0.observer;
    let channel = observer
        .identifier
        .lone()
        .and_then(|Obj(i)| i.value.get())
        .or_else(|| observer.display.get())
        .map(validate::normalise_token);
    let session_id = v
        .extension
        .iter()
        .filter(|_| !settings.session_extension.is_empty())
        .find(|Obj(e)| e.url.get() == Some(settings.session_extension.as_str()))
        .and_then(|Obj(e)| e.value_string.get().or_else(|| e.value_id.get()))
        .map(str::to_string);

    let success = match &v.outcome {
        Outcome::Absent => true,
        Outcome::Text(code) => code.trim() == "0",
        Outcome::Coded(c) => codes(c)
            .iter()
            .all(|c| ["0", "success", "information", "informational"].contains(c)),
    };
    let entity_types: BTreeSet<&str> = entities
        .iter()
        .filter_map(|e| {
            e.what
                .value
                .reference
                .get()
                .and_then(reference_type)
                .or_else(|| {
                    codes(&e.kind)
                        .into_iter()
                        .find(|c| c.chars().next().is_some_and(char::is_uppercase))
                })
        })
        .collect();
    let action = action_of(v, &entity_types, success);
    let section = entities
        .iter()
        .find_map(|e| {
            let named = codes(&e.role)
                .contains(&"4")
                .then(|| {
                    e.name
                        .get()
                        .and_then(|n| validate::one_of(n, schema::SECTIONS).ok())
                })
                .flatten();
            named.or_else(|| {
                e.what
                    .value
                    .reference
                    .get()
                    .and_then(reference_type)
                    .and_then(section_of_type)
            })
        })
        .filter(|_| matches!(action, "view" | "download"));
    let mut e = AuditEvent {
        event_id: String::new(),
        occurred_at,
        nhs_number,
        account_id,
        actor_role,
        device_id,
        user_agent,
        ip_address,
        channel,
        session_id,
        action,
        section,
        outcome: if success { "success" } else { "failure" },
        raw: Some(raw()),
        source_line: line,
    };
    // The observer (who wrote the audit record) differs between the client's and the server's record of one
    // access, so the channel it gives is left out of the identity: the pair is one event.
    let channel = e.channel.take();
    e.event_id = e.derived_id();
    e.channel = channel;
    Ok(e)
}

fn action_of(v: &Event, entity_types: &BTreeSet<&str>, success: bool) -> &'static str {
    let mut all = codes(&v.kind);
    all.extend(codes(&v.subtype));
    all.extend(codes(&v.category));
    all.extend(codes(&v.code));
    let has = |c: &str| all.contains(&c);
    let verb = v.action.get().unwrap_or_default();
    let on = |t: &str| entity_types.contains(t);
    if has("110114") || has("110122") || has("110123") {
        if has("110123") {
            return "logout";
        }
        return if success { "login" } else { "login_failed" };
    }
    if has("110113") {
        if has("110137") {
            return "change_password";
        }
        if has("110136") {
            return match verb {
                "C" => "proxy_granted",
                "D" => "proxy_revoked",
                _ => "other",
            };
        }
    }
    if has("110106") {
        return "download";
    }
    if has("update") && on("Patient") {
        return "change_contact_details";
    }
    if has("create") {
        if on("Appointment") {
            return "book_appointment";
        }
        if on("MedicationRequest") {
            return "order_prescription";
        }
        if on("Communication") {
            return "send_message";
        }
    }
    if has("delete") && on("Appointment") {
        return "cancel_appointment";
    }
    if [
        "read",
        "vread",
        "search",
        "search-type",
        "search-system",
        "history-instance",
    ]
    .iter()
    .any(|c| has(c))
    {
        return "view";
    }
    if verb == "R" && entity_types.iter().any(|t| section_of_type(t).is_some()) {
        return "view";
    }
    "other"
}

/// The patient's NHS number: the entity with role 1 (by identifier, or a Patient reference resolvable in the
/// Bundle or contained resources), R5 `patient`, or an agent identified by NHS number.
fn patient_nhs(v: &Event, agents: &[&Agent], entities: &[&Entity]) -> Result<String, RowError> {
    let resolve = |reference: &str| -> Option<&str> {
        let key = reference
            .rsplit_once("/_history/")
            .map(|(a, _)| a)
            .unwrap_or(reference);
        let from_bundle = v.bundle_patients.0.get(key).map(|Obj(p)| p);
        let contained = v.contained.iter().map(|Obj(c)| c).find(|c| {
            key.strip_prefix('#')
                .is_some_and(|id| c.id.get() == Some(id))
        });
        from_bundle
            .or(contained)
            .and_then(|p| nhs_of_identifier(&p.identifier))
    };
    let mut named: Vec<String> = Vec::new();
    let mut candidates: Vec<&Reference> = entities
        .iter()
        .filter(|e| codes(&e.role).contains(&"1") && e.what.present)
        .map(|e| &e.what.value)
        .collect();
    if v.patient.present {
        candidates.push(&v.patient.value);
    }
    for what in candidates {
        if let Some(n) = what.nhs_number() {
            return validate::nhs_number(n).map_err(|r| fault("nhs_number", r));
        }
        if let Some(r) = what.reference.get() {
            if let Some(n) = resolve(r) {
                return validate::nhs_number(n).map_err(|r| fault("nhs_number", r));
            }
            named.push(r.to_string());
        } else if let Some(i) = what.identifier.lone().and_then(|Obj(i)| i.value.get()) {
            named.push(format!(
                "an identifier of another system ({} characters)",
                i.len()
            ));
        }
    }
    for a in agents {
        if let Some(n) = a.who.0.nhs_number() {
            return validate::nhs_number(n).map_err(|r| fault("nhs_number", r));
        }
    }
    Err(if named.is_empty() {
        fault("nhs_number", "the AuditEvent names no patient (no entity with role 1, no patient, no agent with an NHS number)")
    } else {
        fault(
            "nhs_number",
            format!(
                "the patient is named ({}) but not by NHS number",
                named.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FhirSettings {
        FhirSettings {
            timezone: chrono_tz::Europe::London,
            session_extension: "https://example.org/session".into(),
        }
    }

    #[test]
    fn references_name_their_type() {
        assert_eq!(reference_type("Observation/12"), Some("Observation"));
        assert_eq!(
            reference_type("Patient/example/_history/1"),
            Some("Patient")
        );
        assert_eq!(
            reference_type("http://x.org/fhir/DocumentReference/9"),
            Some("DocumentReference")
        );
        assert_eq!(reference_type("ABCDEF"), None);
    }

    /// A resource read from its text and from its tree maps to the same row (but for `raw`), in JSON's forms and in
    /// the forms XML gives (one object for a list of one, "true" for true), and elements of unexpected types are
    /// absent rather than fatal.
    #[test]
    fn text_and_tree_map_alike_and_leniently() {
        let forms = [
            r#"{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":[{"code":"read"}],"recorded":"2026-03-01T10:00:00Z",
               "extension":[{"url":"https://example.org/session","valueString":"s-1"}],
               "agent":[{"requestor":true,"who":{"identifier":{"value":"acct-1"}},"network":{"address":"10.0.0.1","type":"2"}},
                        {"requestor":false,"type":{"coding":[{"code":"DEV"}]},"who":{"identifier":{"value":"dev-1"}},"name":"App/1.0"}],
               "source":{"observer":{"display":"nhs_app"}},
               "entity":[{"what":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},"role":{"code":"1"}},
                         {"what":{"reference":"Observation/7"},"role":{"code":"4"}}]}"#,
            // XML's shape: lists of one as objects, booleans as text, numbers where text was expected.
            r#"{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":{"code":"read"},"recorded":"2026-03-01T10:00:00Z",
               "extension":{"url":"https://example.org/session","valueString":"s-1"},"action":7,"outcome":null,
               "agent":[{"requestor":"true","who":{"identifier":{"value":"acct-1"}},"network":{"address":"10.0.0.1","type":"2"}},
                        {"requestor":"false","type":{"coding":{"code":"DEV"}},"who":{"identifier":{"value":"dev-1"}},"name":"App/1.0"},
                        "not an object"],
               "source":{"observer":{"display":"nhs_app"}},
               "entity":[{"what":{"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}]},"role":{"code":"1"}},
                         {"what":{"reference":"Observation/7"},"role":[{"code":"4"}],"name":12}]}"#,
        ];
        let mut rows = Vec::new();
        for text in forms {
            let by_text = map_text(text, 3, &settings()).unwrap();
            let tree: Value = serde_json::from_str(text).unwrap();
            let by_tree = map_tree(&tree, 3, &settings()).unwrap();
            assert_eq!(by_text.raw.as_deref(), Some(text.trim()));
            let view = |e: &AuditEvent| {
                format!(
                    "{} {} {} {:?} {} {:?} {:?} {:?} {:?} {:?} {} {:?} {}",
                    e.event_id,
                    e.occurred_at,
                    e.nhs_number,
                    e.account_id,
                    e.actor_role,
                    e.device_id,
                    e.user_agent,
                    e.ip_address,
                    e.channel,
                    e.session_id,
                    e.action,
                    e.section,
                    e.outcome
                )
            };
            assert_eq!(view(&by_text), view(&by_tree));
            rows.push(view(&by_text));
        }
        assert_eq!(rows[0], rows[1], "XML's shapes read as JSON's");
        assert!(rows[0].contains("Some(\"dev-1\")") && rows[0].contains("Some(\"s-1\")"));
        assert!(rows[0].contains(" view Some(\"test_results\") success"));
    }

    #[test]
    fn stu3_and_non_events_are_refused_by_name() {
        let stu3 = r#"{"resourceType":"AuditEvent","recorded":"2026-03-01T10:00:00Z","agent":[{"userId":null}]}"#;
        assert!(map_text(stu3, 1, &settings())
            .unwrap_err()
            .reason
            .contains("STU3"));
        let patient = r#"{"resourceType":"Patient"}"#;
        assert_eq!(
            map_text(patient, 1, &settings()).unwrap_err().reason,
            "a Patient resource, not an AuditEvent"
        );
        for not_object in ["[1,2]", "\"x\"", "3"] {
            assert!(map_text(not_object, 1, &settings())
                .unwrap_err()
                .reason
                .contains("no resourceType"));
        }
        assert!(map_text("{\"resourceType\":", 1, &settings())
            .unwrap_err()
            .reason
            .starts_with("not JSON"));
        // A tree keeps the last of two copies of a key; the text's reader refuses the ambiguity, by name.
        let twice = r#"{"resourceType":"AuditEvent","recorded":"2026-03-01T10:00:00Z","recorded":"2026-03-02T10:00:00Z"}"#;
        let reason = map_text(twice, 1, &settings()).unwrap_err().reason;
        assert!(
            reason.starts_with("not a readable FHIR resource: duplicate field `recorded`"),
            "{reason}"
        );
    }
}
