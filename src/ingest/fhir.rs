//! FHIR AuditEvent (R4, and R5 where it differs) into canonical audit rows: a single resource, a Bundle, NDJSON
//! (one resource a line, streamed), and the XML forms, gzip or not, recognised by content.
//!
//! The mapping follows the data contract's table. What it cannot place is kept: every stored row carries its
//! whole resource, compact JSON, in `raw`. A resource that names no patient by NHS number, or no time, is
//! quarantined with that reason. Rows get a content-derived `event_id` (everything but the recorder-dependent
//! channel), so the same access audited by both the client and the server (IHE BALP pairs) or sent twice is
//! stored once, with the channel of the copy read first; the FHIR `id` stays in `raw`.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};

use chrono_tz::Tz;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use super::rows::RowError;
use super::validate;
use crate::records::AuditEvent;
use crate::schema;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Deeper nesting than this is refused (a hostile file cannot exhaust the stack).
pub const MAX_DEPTH: usize = 64;
/// The longest NDJSON line (one resource) read: an AuditEvent is a few KiB; a longer line is quarantined.
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// The largest single JSON or XML document (a resource or a Bundle) read whole; bigger feeds must be NDJSON,
/// which is streamed line by line.
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

fn too_big() -> String {
    format!(
        "the document is larger than {} MiB: send big feeds as NDJSON (one resource per line), which is streamed",
        MAX_DOCUMENT_BYTES >> 20
    )
}

/// One resource out of a FHIR file, with its position (NDJSON line, or entry number in a Bundle).
pub struct Resource {
    pub position: i64,
    pub value: Value,
}

/// How a file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Json,
    NdJson,
    Xml,
}

/// Recognises FHIR content from the first bytes: `<` is XML; `{` is JSON, NDJSON when the first line is a whole
/// object and more lines follow.
pub fn sniff(head: &[u8]) -> Option<Layout> {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        return Some(Layout::Xml);
    }
    if !t.starts_with('{') {
        return None;
    }
    let first = t.lines().next().unwrap_or_default();
    let more_objects = t.lines().skip(1).any(|l| l.trim_start().starts_with('{'));
    if serde_json::from_str::<Value>(first).is_ok() && more_objects {
        Some(Layout::NdJson)
    } else {
        Some(Layout::Json)
    }
}

/// The start of the message for a file holding one resource that is not an AuditEvent (it is passed over).
pub const NOT_AN_EVENT: &str = "not an AuditEvent: a lone ";

/// A failure to read the file as a whole (not a single resource).
pub type FileError = String;

/// Calls `each` for every resource in the file: a resource and its position, or the reason that entry is unreadable.
pub fn for_each_resource(
    reader: Box<dyn Read + Send>,
    layout: Layout,
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    match layout {
        Layout::NdJson => {
            let mut buffered = BufReader::with_capacity(1 << 20, reader);
            let mut line = Vec::new();
            let mut number = 0i64;
            loop {
                line.clear();
                number += 1;
                let n = (&mut buffered)
                    .take(MAX_LINE_BYTES as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("reading stopped at line {number}: {e}"))?;
                if n == 0 {
                    break;
                }
                if line.len() > MAX_LINE_BYTES {
                    buffered
                        .skip_until(b'\n')
                        .map_err(|e| format!("reading stopped at line {number}: {e}"))?;
                    each(
                        number,
                        Err(format!(
                            "the line is longer than {MAX_LINE_BYTES} bytes; reading went on at the next line"
                        )),
                    )?;
                    continue;
                }
                let Ok(text) = std::str::from_utf8(&line) else {
                    each(number, Err("the line is not valid UTF-8 text".to_string()))?;
                    continue;
                };
                if text.trim().is_empty() {
                    continue;
                }
                let parsed =
                    serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}"));
                each(number, parsed.and_then(checked_depth))?;
            }
            Ok(())
        }
        Layout::Json => {
            let mut text = String::new();
            BufReader::new(reader)
                .take(MAX_DOCUMENT_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| format!("not UTF-8 text: {e}"))?;
            if text.len() as u64 > MAX_DOCUMENT_BYTES {
                return Err(too_big());
            }
            let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
                .map_err(|e| format!("not a FHIR JSON resource: {e}"))?;
            unwrap_bundle(checked_depth(value)?, each)
        }
        Layout::Xml => {
            // Reading the byte past the limit (the `Take` used up) proves the document is larger than it.
            let mut limited = reader.take(MAX_DOCUMENT_BYTES + 1);
            let value = xml_to_json(BufReader::new(&mut limited));
            if limited.limit() == 0 {
                return Err(too_big());
            }
            unwrap_bundle(value?, each)
        }
    }
}

fn checked_depth(v: Value) -> Result<Value, String> {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if depth(&v) > MAX_DEPTH {
        return Err(format!("nested more than {MAX_DEPTH} levels deep"));
    }
    Ok(v)
}

/// A Bundle gives its entries' resources, with the Bundle's Patients available for resolving references; a lone
/// resource is itself.
fn unwrap_bundle(
    value: Value,
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        Some("AuditEvent") | None => return each(1, Ok(value)),
        // A lone Patient, Device, ...: supporting material, not an event.
        Some(other) => return Err(format!("{NOT_AN_EVENT}{other}")),
    }
    let entries = list(value.get("entry"));
    let patients: Map<String, Value> = entries
        .iter()
        .filter_map(|e| e.get("resource"))
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
        .filter_map(|r| {
            let id = r.get("id").and_then(Value::as_str)?;
            Some((format!("Patient/{id}"), r.clone()))
        })
        .collect();
    for (i, e) in entries.iter().enumerate() {
        let Some(resource) = e.get("resource") else {
            each(i as i64 + 1, Err("Bundle entry has no resource".into()))?;
            continue;
        };
        if resource.get("resourceType").and_then(Value::as_str) != Some("AuditEvent") {
            continue; // Patients and other supporting resources are context, not events.
        }
        let mut r = resource.clone();
        if let Some(obj) = r.as_object_mut() {
            obj.insert("_bundlePatients".into(), Value::Object(patients.clone()));
        }
        each(i as i64 + 1, Ok(r))?;
    }
    Ok(())
}

/// How many resources a file yields that are not AuditEvents (Patients in a Bundle are not counted as rows).
pub fn is_audit_event(v: &Value) -> bool {
    v.get("resourceType").and_then(Value::as_str) == Some("AuditEvent")
}

/// FHIR XML to the JSON shape: an element with a `value` attribute is a primitive; repeated elements become arrays;
/// a `<resource>` wrapper's child names the resource type; the narrative `div` is dropped.
pub fn xml_to_json(reader: impl BufRead) -> Result<Value, String> {
    let mut xml = quick_xml::Reader::from_reader(reader);
    xml.config_mut().trim_text(true);
    let mut buf = Vec::new();
    // Each open element: its name and the children collected so far.
    let mut stack: Vec<(String, Map<String, Value>, Option<String>)> = Vec::new();
    let mut root: Option<Value> = None;
    let mut skip_depth = 0usize;
    loop {
        let event = xml
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            // Inside the XHTML narrative: count its elements to find where it ends.
            Event::Start(_) if skip_depth > 0 => skip_depth += 1,
            Event::Empty(_) if skip_depth > 0 => {}
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                if name == "div" {
                    skip_depth = 1;
                    buf.clear();
                    continue;
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} levels deep"));
                }
                let value = attr_value(&e)?;
                stack.push((name, Map::new(), value));
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                let value = attr_value(&e)?;
                let v = match value {
                    Some(s) => Value::String(s),
                    None => Value::Object(Map::new()),
                };
                match stack.last_mut() {
                    Some((_, children, _)) => add_child(children, &name, v),
                    None => root = Some(v),
                }
            }
            Event::End(_) if skip_depth > 0 => skip_depth -= 1,
            Event::End(_) => {
                let Some((name, children, value)) = stack.pop() else {
                    continue;
                };
                let v = if children.is_empty() {
                    value
                        .map(Value::String)
                        .unwrap_or(Value::Object(Map::new()))
                } else {
                    Value::Object(children)
                };
                match stack.last_mut() {
                    Some((parent, siblings, _))
                        if parent == "resource" || parent == "contained" =>
                    {
                        // <resource><AuditEvent>...</AuditEvent></resource>: the child names the type.
                        let mut v = v;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("resourceType".into(), Value::String(name));
                        }
                        for (k, x) in v.as_object().cloned().unwrap_or_default() {
                            siblings.insert(k, x);
                        }
                    }
                    Some((_, siblings, _)) => add_child(siblings, &name, v),
                    None => {
                        let mut v = v;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("resourceType".into(), Value::String(name));
                        }
                        root = Some(v);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    root.ok_or_else(|| "the XML holds no element".to_string())
}

fn attr_value(e: &quick_xml::events::BytesStart) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|err| format!("bad XML attribute: {err}"))?;
        if a.key.as_ref() == b"value" {
            return a
                .unescape_value()
                .map(|v| Some(v.to_string()))
                .map_err(|err| format!("bad XML attribute: {err}"));
        }
    }
    Ok(None)
}

fn add_child(children: &mut Map<String, Value>, name: &str, v: Value) {
    match children.get_mut(name) {
        Some(Value::Array(a)) => a.push(v),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, v]);
        }
        None => {
            children.insert(name.to_string(), v);
        }
    }
}

/// An element as a list whether it came as one object or an array (XML cannot tell them apart).
pub fn list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

fn s(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn is_true(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || s(v) == Some("true")
}

/// Every code in a Coding, a CodeableConcept, or a list of either.
fn codes(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    for item in list(v) {
        if let Some(c) = s(item.get("code")) {
            out.push(c.to_string());
        }
        for coding in list(item.get("coding")) {
            if let Some(c) = s(coding.get("code")) {
                out.push(c.to_string());
            }
        }
    }
    out
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

/// Settings the mapping needs.
pub struct FhirSettings {
    pub timezone: Tz,
    pub session_extension: String,
}

/// Maps one resource to a canonical audit row, or says why it cannot be stored.
pub fn map_audit_event(
    v: &Value,
    line: i64,
    settings: &FhirSettings,
) -> Result<AuditEvent, RowError> {
    match v.get("resourceType").and_then(Value::as_str) {
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
    let agents = list(v.get("agent"));
    let entities = list(v.get("entity"));
    // STU3 named agents by `reference`/`userId` and entities by `reference`/`identifier`, without `who`/`what`.
    let stu3 = agents
        .iter()
        .any(|a| a.get("userId").is_some() || a.get("reference").is_some())
        || entities.iter().any(|e| {
            e.get("what").is_none()
                && (e.get("reference").is_some() || e.get("identifier").is_some())
        });
    if stu3 {
        return Err(fault("agent", "looks like FHIR STU3 (agent.userId / entity.reference): only R4 and R5 AuditEvents are read"));
    }
    let time = s(v.get("recorded"))
        .or_else(|| s(v.get("occurredDateTime")))
        .ok_or_else(|| fault("recorded", "the AuditEvent has no time (recorded)"))?;
    let occurred_at =
        validate::timestamp(time, settings.timezone).map_err(|r| fault("recorded", r))?;
    let nhs_number = patient_nhs(v, &agents, &entities)?;

    let requestor = agents.iter().find(|a| is_true(a.get("requestor")));
    let who = requestor.and_then(|a| a.get("who"));
    let account_id = who
        .and_then(|w| {
            s(w.get("identifier").and_then(|i| i.get("value"))).or_else(|| s(w.get("reference")))
        })
        .map(str::to_string);
    let role_codes: Vec<String> = requestor
        .map(|a| [codes(a.get("type")), codes(a.get("role"))].concat())
        .unwrap_or_default();
    let actor_role = if role_codes
        .iter()
        .any(|c| ["AGNT", "GUARD", "REP", "proxy", "PROXY"].contains(&c.as_str()))
    {
        "proxy"
    } else {
        "patient"
    };
    let ip_address = requestor.and_then(|a| {
        let net = a.get("network");
        let typed = net.and_then(|n| s(n.get("address")).filter(|_| s(n.get("type")) == Some("2")));
        let r5 = s(a.get("networkString"));
        typed
            .or(r5)
            .and_then(|addr| validate::ip_address(addr).ok())
    });
    let device = agents.iter().find(|a| {
        codes(a.get("type"))
            .iter()
            .any(|c| c == "DEV" || c == "110150")
    });
    let device_id = device
        .and_then(|d| d.get("who"))
        .and_then(|w| {
            s(w.get("identifier").and_then(|i| i.get("value"))).or_else(|| s(w.get("reference")))
        })
        .map(str::to_string);
    let user_agent = device.and_then(|d| s(d.get("name"))).map(str::to_string);
    let observer = v.get("source").and_then(|src| src.get("observer"));
    let channel = observer
        .and_then(|o| {
            s(o.get("identifier").and_then(|i| i.get("value"))).or_else(|| s(o.get("display")))
        })
        .map(validate::normalise_token);
    let session_id = list(v.get("extension"))
        .into_iter()
        .filter(|_| !settings.session_extension.is_empty())
        .find(|e| s(e.get("url")) == Some(settings.session_extension.as_str()))
        .and_then(|e| s(e.get("valueString")).or_else(|| s(e.get("valueId"))))
        .map(str::to_string);

    let success = outcome_is_success(v);
    let entity_types: BTreeSet<String> = entities
        .iter()
        .filter_map(|e| {
            s(e.get("what").and_then(|w| w.get("reference")))
                .and_then(reference_type)
                .map(str::to_string)
                .or_else(|| {
                    codes(e.get("type"))
                        .into_iter()
                        .find(|c| c.chars().next().is_some_and(char::is_uppercase))
                })
        })
        .collect();
    let action = action_of(v, &entity_types, success);
    let section = entities
        .iter()
        .find_map(|e| {
            let named = codes(e.get("role"))
                .iter()
                .any(|c| c == "4")
                .then(|| s(e.get("name")).and_then(|n| validate::one_of(n, schema::SECTIONS).ok()))
                .flatten();
            named.or_else(|| {
                s(e.get("what").and_then(|w| w.get("reference")))
                    .and_then(reference_type)
                    .and_then(section_of_type)
            })
        })
        .filter(|_| matches!(action, "view" | "download"));
    let mut raw = v.clone();
    if let Some(o) = raw.as_object_mut() {
        o.remove("_bundlePatients");
    }
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
        raw: Some(raw.to_string()),
        source_line: line,
    };
    // The observer (who wrote the audit record) differs between the client's and the server's record of one
    // access, so the channel it gives is left out of the identity: the pair is one event.
    let channel = e.channel.take();
    e.event_id = e.derived_id();
    e.channel = channel;
    Ok(e)
}

fn outcome_is_success(v: &Value) -> bool {
    match v.get("outcome") {
        None | Some(Value::Null) => true,
        Some(Value::String(code)) => code.trim() == "0",
        // R5: outcome { code: Coding }.
        Some(o) => codes(o.get("code"))
            .iter()
            .all(|c| ["0", "success", "information", "informational"].contains(&c.as_str())),
    }
}

fn action_of(v: &Value, entity_types: &BTreeSet<String>, success: bool) -> &'static str {
    let mut all = codes(v.get("type"));
    all.extend(codes(v.get("subtype")));
    all.extend(codes(v.get("category")));
    all.extend(codes(v.get("code")));
    let has = |c: &str| all.iter().any(|x| x == c);
    let verb = s(v.get("action")).unwrap_or_default();
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
fn patient_nhs(v: &Value, agents: &[&Value], entities: &[&Value]) -> Result<String, RowError> {
    fn nhs_of_identifier(id: Option<&Value>) -> Option<&str> {
        list(id)
            .into_iter()
            .find(|i| s(i.get("system")) == Some(NHS_NUMBER_SYSTEM))
            .and_then(|i| s(i.get("value")))
    }
    let resolve = |reference: &str| -> Option<String> {
        let key = reference
            .rsplit_once("/_history/")
            .map(|(a, _)| a)
            .unwrap_or(reference);
        let from_bundle = v.get("_bundlePatients").and_then(|b| b.get(key));
        let contained = list(v.get("contained")).into_iter().find(|c| {
            key.strip_prefix('#')
                .is_some_and(|id| s(c.get("id")) == Some(id))
        });
        from_bundle
            .or(contained)
            .and_then(|p| nhs_of_identifier(p.get("identifier")))
            .map(str::to_string)
    };
    let mut named: Vec<String> = Vec::new();
    let patient_entities = entities
        .iter()
        .filter(|e| codes(e.get("role")).iter().any(|c| c == "1"));
    let mut candidates: Vec<&Value> = patient_entities.filter_map(|e| e.get("what")).collect();
    if let Some(p) = v.get("patient") {
        candidates.push(p);
    }
    for what in candidates {
        if let Some(n) = nhs_of_identifier(what.get("identifier")) {
            return validate::nhs_number(n).map_err(|r| fault("nhs_number", r));
        }
        if let Some(r) = s(what.get("reference")) {
            if let Some(n) = resolve(r) {
                return validate::nhs_number(&n).map_err(|r| fault("nhs_number", r));
            }
            named.push(r.to_string());
        } else if let Some(i) = s(what.get("identifier").and_then(|i| i.get("value"))) {
            named.push(format!(
                "an identifier of another system ({} characters)",
                i.len()
            ));
        }
    }
    for a in agents {
        if let Some(n) = a
            .get("who")
            .and_then(|w| nhs_of_identifier(w.get("identifier")))
        {
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

/// A resource index for quarantine rows: the FHIR id if any, never an identifier of a person.
pub fn describe(v: &Value) -> String {
    let mut r = v.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("_bundlePatients");
        o.remove("text");
    }
    r.to_string()
}

/// Which Patient references a file's Bundles resolve (for tests).
pub fn bundle_patients(v: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(Value::Object(ps)) = v.get("_bundlePatients") {
        for (k, p) in ps {
            if let Some(n) = list(p.get("identifier"))
                .into_iter()
                .find(|i| s(i.get("system")) == Some(NHS_NUMBER_SYSTEM))
                .and_then(|i| s(i.get("value")))
            {
                out.insert(k.clone(), n.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn layouts_are_sniffed_from_content() {
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?><AuditEvent/>"),
            Some(Layout::Xml)
        );
        assert_eq!(
            sniff(b"{\"resourceType\":\"AuditEvent\"}\n{\"resourceType\":\"AuditEvent\"}\n"),
            Some(Layout::NdJson)
        );
        assert_eq!(
            sniff(b"{\n  \"resourceType\": \"Bundle\"\n}"),
            Some(Layout::Json)
        );
        assert_eq!(sniff(b"event_id,occurred_at"), None);
    }

    #[test]
    fn xml_becomes_the_json_shape() {
        let xml = r#"<AuditEvent xmlns="http://hl7.org/fhir"><id value="x"/><text><div xmlns="http://www.w3.org/1999/xhtml"><p>narrative <b>bold</b></p></div></text><agent><requestor value="true"/></agent><agent><requestor value="false"/></agent></AuditEvent>"#;
        let v = xml_to_json(xml.as_bytes()).unwrap();
        assert_eq!(v["resourceType"], "AuditEvent");
        assert_eq!(v["id"], "x");
        assert_eq!(v["agent"].as_array().unwrap().len(), 2);
        assert_eq!(v["agent"][0]["requestor"], "true");
        assert!(v.get("text").is_none_or(|t| t.get("div").is_none()));
    }
}
