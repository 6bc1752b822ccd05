//! FHIR AuditEvent (R4, and R5 where it differs) into canonical audit rows: a single resource, a Bundle, NDJSON
//! (one resource a line, streamed), and the XML forms, gzip or not, recognised by content.
//!
//! The mapping (`fhir_map`) follows the data contract's table. What it cannot place is kept: every stored row
//! carries its whole resource in `raw` (an NDJSON line's own text; a document's resource as compact JSON). A resource that names no patient by NHS number, or no time, is
//! quarantined with that reason. Rows get a content-derived `event_id` (everything but the recorder-dependent
//! channel), so the same access audited by both the client and the server (IHE BALP pairs) or sent twice is
//! stored once, with the channel of the copy read first; the FHIR `id` stays in `raw`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use chrono_tz::Tz;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use super::rows::RowError;
use crate::records::AuditEvent;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Deeper nesting than this is refused (a hostile file cannot exhaust the stack).
pub const MAX_DEPTH: usize = 64;
/// The longest NDJSON line (one resource) read: an AuditEvent is a few KiB; a longer line is quarantined.
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// The largest single JSON or XML document (a resource or a Bundle). Its text is held once, and only one resource
/// at a time becomes a tree, so reading one takes about its size in memory; bigger feeds must be NDJSON, which is
/// streamed line by line.
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// The largest resource in a document (a lone resource, or one Bundle entry's) made into a tree; a bigger one is
/// quarantined with that reason and reading goes on at the next entry. An AuditEvent is a few KiB.
pub const MAX_RESOURCE_BYTES: usize = MAX_LINE_BYTES;

fn too_big() -> String {
    format!(
        "the document is larger than {} MiB: send big feeds as NDJSON (one resource per line), which is streamed",
        MAX_DOCUMENT_BYTES >> 20
    )
}

fn resource_too_big() -> String {
    format!(
        "the resource is larger than {} MiB (an AuditEvent is a few KiB); reading went on at the next one",
        MAX_RESOURCE_BYTES >> 20
    )
}

/// The whole document's bytes, refused past [`MAX_DOCUMENT_BYTES`].
fn read_document(reader: Box<dyn Read + Send>) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the file could not be read: {e}"))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
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
    // A JSON array of resources (what some exports give instead of a Bundle).
    if t.starts_with('[') && t[1..].trim_start().starts_with('{') {
        return Some(Layout::Json);
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

/// A resource as [`for_each_mapped`] hands it over: an NDJSON line's text, not yet parsed (the mapping reads it
/// straight into the elements it needs), or a tree (a document's resource, or XML in the JSON shape).
pub enum Parsed<'a> {
    Line(&'a str),
    Tree(Value),
}

/// Nested more than [`MAX_DEPTH`] levels: counted over the text without building it (brackets in strings do not
/// count), and only when there are that many brackets at all.
fn too_deep(text: &str) -> bool {
    let bytes = text.as_bytes();
    if memchr::memchr2_iter(b'{', b'[', bytes).count() <= MAX_DEPTH {
        return false;
    }
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &c in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest > MAX_DEPTH
}

fn nested_too_deep() -> String {
    format!("nested more than {MAX_DEPTH} levels deep")
}

/// Lines of NDJSON parsed and mapped together, on both cores: at most this many lines, or about this many bytes.
const CHUNK_LINES: usize = 4096;
const CHUNK_BYTES: usize = 8 << 20;

/// Calls `each` for every resource in the file, in file order, with `map` applied to it first. For NDJSON, lines are read in chunks
/// and parsed and mapped in parallel (memory stays bounded by one chunk); `each` still sees them one by one, in
/// file order. Documents (JSON, XML) are read one resource at a time, as before.
pub fn for_each_mapped<T: Send>(
    reader: Box<dyn Read + Send>,
    layout: Layout,
    map: &(dyn Fn(i64, Result<Parsed, String>) -> T + Sync),
    each: &mut dyn FnMut(i64, T) -> Result<(), FileError>,
) -> Result<(), FileError> {
    use rayon::prelude::*;
    enum Item {
        Line(std::ops::Range<usize>),
        Unreadable(String),
    }
    match layout {
        Layout::NdJson => {
            let mut buffered = BufReader::with_capacity(1 << 20, reader);
            let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + MAX_LINE_BYTES);
            let mut items: Vec<(i64, Item)> = Vec::with_capacity(CHUNK_LINES);
            let mut number = 0i64;
            let mut done = false;
            while !done {
                chunk.clear();
                items.clear();
                while items.len() < CHUNK_LINES && chunk.len() < CHUNK_BYTES {
                    let start = chunk.len();
                    let n = (&mut buffered)
                        .take(MAX_LINE_BYTES as u64 + 1)
                        .read_until(b'\n', &mut chunk)
                        .map_err(|e| format!("reading stopped at line {}: {e}", number + 1))?;
                    if n == 0 {
                        done = true;
                        break;
                    }
                    number += 1;
                    if chunk.len() - start > MAX_LINE_BYTES {
                        chunk.truncate(start);
                        buffered
                            .skip_until(b'\n')
                            .map_err(|e| format!("reading stopped at line {number}: {e}"))?;
                        items.push((
                            number,
                            Item::Unreadable(format!(
                                "the line is longer than {MAX_LINE_BYTES} bytes; reading went on at the next line"
                            )),
                        ));
                        continue;
                    }
                    items.push((number, Item::Line(start..chunk.len())));
                }
                let mapped: Vec<(i64, Option<T>)> = items
                    .par_iter()
                    .map(|(number, item)| {
                        let parsed = match item {
                            Item::Unreadable(reason) => Some(Err(reason.clone())),
                            Item::Line(range) => match std::str::from_utf8(&chunk[range.clone()]) {
                                Err(_) => Some(Err("the line is not valid UTF-8 text".to_string())),
                                Ok(text) if text.trim().is_empty() => None,
                                Ok(text) if too_deep(text) => Some(Err(nested_too_deep())),
                                Ok(text) => Some(Ok(Parsed::Line(text))),
                            },
                        };
                        (*number, parsed.map(|p| map(*number, p)))
                    })
                    .collect();
                for (number, t) in mapped {
                    if let Some(t) = t {
                        each(number, t)?;
                    }
                }
            }
            Ok(())
        }
        Layout::Json => {
            let bytes = read_document(reader)?;
            let text = std::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
            json_document(text.trim_start_matches('\u{feff}'), &mut |n, parsed| {
                each(n, map(n, parsed.map(Parsed::Tree)))
            })
        }
        Layout::Xml => {
            let bytes = read_document(reader)?;
            xml_document(&bytes, &mut |n, parsed| {
                each(n, map(n, parsed.map(Parsed::Tree)))
            })
        }
    }
}

/// What a JSON document's top level says about it: its type, and a Bundle's entries as slices of the text.
/// Everything else is skipped without being built.
#[derive(serde::Deserialize)]
struct DocumentHead<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(borrow)]
    entry: Option<Vec<&'a serde_json::value::RawValue>>,
}

#[derive(serde::Deserialize)]
struct EntryHead<'a> {
    #[serde(borrow)]
    resource: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct ResourceHead {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
}

fn json_resource(text: &str) -> Result<Value, String> {
    if text.len() > MAX_RESOURCE_BYTES {
        return Err(resource_too_big());
    }
    serde_json::from_str::<Value>(text)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(checked_depth)
}

/// A Bundle entry's resource: its type and its text, or why it cannot be read.
fn json_entry_resource(
    entry: &serde_json::value::RawValue,
) -> Result<(Option<String>, &str), String> {
    let head: EntryHead = serde_json::from_str(entry.get())
        .map_err(|e| format!("the Bundle entry is not a JSON object: {e}"))?;
    let resource = head
        .resource
        .ok_or_else(|| "Bundle entry has no resource".to_string())?;
    if resource.get().len() > MAX_RESOURCE_BYTES {
        return Err(resource_too_big());
    }
    let kind: ResourceHead = serde_json::from_str(resource.get())
        .map_err(|e| format!("not a FHIR JSON resource: {e}"))?;
    Ok((kind.resource_type, resource.get()))
}

/// A JSON document: a lone resource, or a Bundle read entry by entry (one entry's tree at a time).
fn json_document(
    text: &str,
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    if text.trim_start().starts_with('[') {
        return json_array(text, each);
    }
    let head: DocumentHead = serde_json::from_str(text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            format!("nested more than {MAX_DEPTH} levels deep")
        } else {
            format!("not a FHIR JSON resource: {e}")
        }
    })?;
    match head.resource_type.as_deref() {
        Some("Bundle") => {}
        Some("AuditEvent") | None => {
            // Too big to be an AuditEvent: quarantined; nested too deep: the file is refused.
            if text.len() > MAX_RESOURCE_BYTES {
                return each(1, Err(resource_too_big()));
            }
            let v = json_resource(text)?;
            return each(1, Ok(v));
        }
        // A lone Patient, Device, ...: supporting material, not an event.
        Some(other) => return Err(format!("{NOT_AN_EVENT}{other}")),
    }
    let resources = head
        .entry
        .unwrap_or_default()
        .into_iter()
        .map(json_entry_resource)
        .collect();
    json_resources(resources, each)
}

/// A JSON array of resources: read like a Bundle's entries, one resource's tree at a time.
fn json_array(
    text: &str,
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
        .map_err(|e| format!("not a JSON array of FHIR resources: {e}"))?;
    let resources = items
        .into_iter()
        .map(|item| {
            if item.get().len() > MAX_RESOURCE_BYTES {
                return Err(resource_too_big());
            }
            serde_json::from_str::<ResourceHead>(item.get())
                .map(|h| (h.resource_type, item.get()))
                .map_err(|e| format!("not a FHIR JSON resource: {e}"))
        })
        .collect();
    json_resources(resources, each)
}

/// The resources of a Bundle or an array, each its type and text or why it cannot be read: first the Patients are
/// collected (an event may name one that comes after it), then each AuditEvent is made a tree, one at a time.
fn json_resources(
    resources: Vec<Result<(Option<String>, &str), String>>,
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let mut patients = BundlePatients::default();
    for (_, text) in resources
        .iter()
        .flatten()
        .filter(|(t, _)| t.as_deref() == Some("Patient"))
    {
        if let Ok(v) = json_resource(text) {
            patients.add(&v);
        }
    }
    for (i, resource) in resources.into_iter().enumerate() {
        let position = i as i64 + 1;
        match resource {
            Err(reason) => each(position, Err(reason))?,
            // Patients and other supporting resources are context, not events.
            Ok((t, _)) if t.as_deref() != Some("AuditEvent") => {}
            Ok((_, text)) => each(position, json_resource(text).map(|v| patients.attach(v)))?,
        }
    }
    Ok(())
}

/// A Bundle's Patients, by reference (`Patient/<id>`), each kept as no more than its NHS number identifier.
#[derive(Default)]
struct BundlePatients(Map<String, Value>);

impl BundlePatients {
    fn add(&mut self, patient: &Value) {
        let Some(id) = patient.get("id").and_then(Value::as_str) else {
            return;
        };
        let nhs: Vec<Value> = list(patient.get("identifier"))
            .into_iter()
            .filter(|i| s(i.get("system")) == Some(NHS_NUMBER_SYSTEM))
            .take(1)
            .cloned()
            .collect();
        let mut kept = Map::new();
        kept.insert("identifier".into(), Value::Array(nhs));
        self.0.insert(format!("Patient/{id}"), Value::Object(kept));
    }

    /// Gives the event the Bundle's Patients it refers to (`_bundlePatients`), for resolving its patient.
    fn attach(&self, mut event: Value) -> Value {
        fn references<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
            match v {
                Value::Object(o) => {
                    for (k, x) in o {
                        match (k.as_str(), x) {
                            ("reference", Value::String(r)) => out.push(r),
                            _ => references(x, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| references(x, out)),
                _ => {}
            }
        }
        if self.0.is_empty() {
            return event;
        }
        let mut named = Vec::new();
        references(&event, &mut named);
        let found: Map<String, Value> = named
            .into_iter()
            .map(|r| r.rsplit_once("/_history/").map(|(a, _)| a).unwrap_or(r))
            .filter_map(|r| self.0.get(r).map(|p| (r.to_string(), p.clone())))
            .collect();
        if let (false, Some(o)) = (found.is_empty(), event.as_object_mut()) {
            o.insert("_bundlePatients".into(), Value::Object(found));
        }
        event
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
        return Err(nested_too_deep());
    }
    Ok(v)
}

/// How many resources a file yields that are not AuditEvents (Patients in a Bundle are not counted as rows).
pub fn is_audit_event(v: &Value) -> bool {
    v.get("resourceType").and_then(Value::as_str) == Some("AuditEvent")
}

/// FHIR XML to the JSON shape, one element's tree: an element with a `value` attribute is a primitive; repeated
/// elements become arrays; a `<resource>` wrapper's child names the resource type; the narrative `div` is dropped.
#[derive(Default)]
struct TreeBuilder {
    /// Each open element: its name, the children collected so far, and its `value` attribute.
    stack: Vec<(String, Map<String, Value>, Option<String>)>,
    root: Option<Value>,
    skip_depth: usize,
}

impl TreeBuilder {
    fn event(&mut self, event: &Event) -> Result<(), String> {
        match event {
            // Inside the XHTML narrative: count its elements to find where it ends.
            Event::Start(_) if self.skip_depth > 0 => self.skip_depth += 1,
            Event::Empty(_) if self.skip_depth > 0 => {}
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                if name == "div" {
                    self.skip_depth = 1;
                    return Ok(());
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} levels deep"));
                }
                let value = attr_value(e)?;
                self.stack.push((name, Map::new(), value));
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                let v = match attr_value(e)? {
                    Some(s) => Value::String(s),
                    None => Value::Object(Map::new()),
                };
                match self.stack.last_mut() {
                    Some((_, children, _)) => add_child(children, &name, v),
                    None => self.root = Some(named(v, name)),
                }
            }
            Event::End(_) if self.skip_depth > 0 => self.skip_depth -= 1,
            Event::End(_) => {
                let Some((name, children, value)) = self.stack.pop() else {
                    return Ok(());
                };
                let v = if children.is_empty() {
                    value
                        .map(Value::String)
                        .unwrap_or(Value::Object(Map::new()))
                } else {
                    Value::Object(children)
                };
                match self.stack.last_mut() {
                    Some((parent, siblings, _))
                        if parent == "resource" || parent == "contained" =>
                    {
                        // <resource><AuditEvent>...</AuditEvent></resource>: the child names the type.
                        if let Value::Object(o) = named(v, name) {
                            siblings.extend(o);
                        }
                    }
                    Some((_, siblings, _)) => add_child(siblings, &name, v),
                    None => self.root = Some(named(v, name)),
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Value, String> {
        self.root
            .ok_or_else(|| "the XML holds no element".to_string())
    }
}

fn named(mut v: Value, name: String) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("resourceType".into(), Value::String(name));
    }
    v
}

/// A whole XML document as one tree (a lone resource; tests).
pub fn xml_to_json(reader: impl BufRead) -> Result<Value, String> {
    let mut xml = quick_xml::Reader::from_reader(reader);
    xml.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut tree = TreeBuilder::default();
    loop {
        let event = xml
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        if matches!(event, Event::Eof) {
            break;
        }
        tree.event(&event)?;
        buf.clear();
    }
    tree.finish()
}

/// The name of the document's root element.
fn xml_root(bytes: &[u8]) -> Result<String, FileError> {
    let mut xml = quick_xml::Reader::from_reader(bytes);
    let mut buf = Vec::new();
    loop {
        match xml
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?
        {
            Event::Start(e) | Event::Empty(e) => {
                return Ok(String::from_utf8_lossy(e.local_name().as_ref()).to_string())
            }
            Event::Eof => return Err("the XML holds no element".into()),
            _ => {}
        }
        buf.clear();
    }
}

/// An XML document: a lone resource, or a Bundle read entry by entry (one entry's tree at a time).
fn xml_document(
    bytes: &[u8],
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    match xml_root(bytes)?.as_str() {
        "Bundle" => {}
        "AuditEvent" => {
            // Too big to be an AuditEvent: quarantined; not XML, or nested too deep: the file is refused.
            if bytes.len() > MAX_RESOURCE_BYTES {
                return each(1, Err(resource_too_big()));
            }
            let v = xml_to_json(bytes)?;
            return each(1, Ok(v));
        }
        other => return Err(format!("{NOT_AN_EVENT}{other}")),
    }
    let resource_of = |entry: Result<Value, String>| -> Result<Value, String> {
        let mut entry = entry?;
        entry
            .get_mut("resource")
            .map(Value::take)
            .ok_or_else(|| "Bundle entry has no resource".to_string())
    };
    // First the Bundle's Patients (an event may name one that comes after it), then its events.
    let mut patients = BundlePatients::default();
    xml_entries(bytes, &mut |_, entry| {
        if let Ok(r) = resource_of(entry) {
            if r.get("resourceType").and_then(Value::as_str) == Some("Patient") {
                patients.add(&r);
            }
        }
        Ok(())
    })?;
    xml_entries(bytes, &mut |position, entry| match resource_of(entry) {
        Err(reason) => each(position, Err(reason)),
        Ok(r) if !is_audit_event(&r) => Ok(()),
        Ok(r) => each(position, Ok(patients.attach(r))),
    })
}

/// Calls `each` with every `<entry>` of a Bundle as a tree, or the reason it cannot be one (bigger than
/// [`MAX_RESOURCE_BYTES`], nested too deep, a bad attribute); the rest of a refused entry is passed over.
fn xml_entries(
    bytes: &[u8],
    each: &mut dyn FnMut(i64, Result<Value, String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let mut xml = quick_xml::Reader::from_reader(bytes);
    xml.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut number = 0i64;
    // The entry being read: its tree and where it started; `None` while passing over a refused one.
    let mut current: Option<(TreeBuilder, u64)> = None;
    let mut in_entry = false;
    loop {
        let event = xml
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        let is_entry = |e: &quick_xml::events::BytesStart| e.local_name().as_ref() == b"entry";
        match &event {
            Event::Eof => break,
            Event::Start(e) => {
                depth += 1;
                if depth > 4 * MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} levels deep"));
                }
                if depth == 2 && is_entry(e) {
                    number += 1;
                    in_entry = true;
                    current = Some((TreeBuilder::default(), xml.buffer_position()));
                }
            }
            Event::Empty(e) if depth == 1 && is_entry(e) => {
                number += 1;
                each(number, Err("Bundle entry has no resource".into()))?;
                buf.clear();
                continue;
            }
            _ => {}
        }
        if let Some((tree, start)) = current.as_mut() {
            let refused = match tree.event(&event) {
                Err(reason) => Some(reason),
                Ok(()) if xml.buffer_position() - *start > MAX_RESOURCE_BYTES as u64 => {
                    Some(resource_too_big())
                }
                Ok(()) => None,
            };
            if let Some(reason) = refused {
                current = None;
                each(number, Err(reason))?;
            }
        }
        if let Event::End(_) = &event {
            if depth == 2 && in_entry {
                in_entry = false;
                if let Some((tree, _)) = current.take() {
                    each(number, tree.finish())?;
                }
            }
            depth = depth.saturating_sub(1);
        }
        buf.clear();
    }
    Ok(())
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

/// Settings the mapping needs.
pub struct FhirSettings {
    pub timezone: Tz,
    pub session_extension: String,
}

/// Maps one resource as [`for_each_mapped`] hands it over to a canonical audit row, or says why it cannot be stored;
/// with the quarantine's copy of the resource, made only for a row that is quarantined (text that is not JSON has
/// none).
pub fn map_parsed(
    position: i64,
    parsed: Result<Parsed, String>,
    settings: &FhirSettings,
) -> (Result<AuditEvent, RowError>, String) {
    match parsed {
        Ok(Parsed::Line(text)) => {
            let result = super::fhir_map::map_text(text, position, settings);
            let raw = match result {
                Err(_) => serde_json::from_str(text)
                    .map(|v| describe(&v))
                    .unwrap_or_default(),
                Ok(_) => String::new(),
            };
            (result, raw)
        }
        Ok(Parsed::Tree(v)) => {
            let result = super::fhir_map::map_tree(&v, position, settings);
            let raw = if result.is_err() {
                describe(&v)
            } else {
                String::new()
            };
            (result, raw)
        }
        Err(reason) => (
            Err(RowError {
                column: None,
                reason,
            }),
            String::new(),
        ),
    }
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
