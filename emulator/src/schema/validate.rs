//! Instance validation against the compiled schema arena.
//!
//! The walk follows the instance, so it terminates on any finite body even
//! though the schemas are recursive (`ErrorDetail.details` is a list of
//! `ErrorDetail`); [`MAX_DEPTH`] additionally bounds the native stack for
//! pathologically deep bodies built in memory (serde_json's parser already
//! stops at 128 levels). Every violation is collected; nothing stops early
//! except descending into a value whose type is already wrong.

use serde_json::{Map, Value};

use super::Violation;
use super::compile::{Additional, Compiled, Format, JsonType, NodeId, escape_pointer};
use super::formats;

/// Deeper bodies are reported rather than validated. Azure Backup bodies are
/// fewer than 15 levels deep.
pub(crate) const MAX_DEPTH: usize = 200;

pub(crate) struct Validator<'a> {
    c: &'a Compiled,
    strict_unknown_properties: bool,
    /// JSON pointer of the value being checked; segments are pushed and
    /// truncated in place so the walk allocates only when reporting.
    path: String,
    out: Vec<Violation>,
}

/// Whether a JSON `null` is acceptable where no `x-nullable` says otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NullDefault {
    /// An optional property: services serialize unset members as `null`
    /// (`"nextLink": null`), and AutoRest clients accept it.
    Allowed,
    /// A required property, an array item, a map value or the root.
    Rejected(&'static str),
}

impl<'a> Validator<'a> {
    pub(crate) fn run(c: &'a Compiled, strict_unknown_properties: bool, node: NodeId, value: &Value) -> Vec<Violation> {
        let mut v = Validator { c, strict_unknown_properties, path: String::new(), out: Vec::new() };
        v.check(node, value, NullDefault::Rejected("the body"), 0);
        v.out
    }

    fn report(&mut self, message: String) {
        self.out.push(Violation { path: self.path.clone(), message });
    }

    fn push(&mut self, segment: &str) -> usize {
        let len = self.path.len();
        self.path.push('/');
        self.path.push_str(&escape_pointer(segment));
        len
    }

    fn check(&mut self, node: NodeId, value: &Value, null_default: NullDefault, depth: usize) {
        let c = self.c;
        let (Some(&target), Some(&nullable)) = (c.resolved.get(node), c.nullable.get(node)) else {
            // Only reachable with a SchemaRef taken from another Spec.
            self.report(format!("schema node {node} does not belong to this spec"));
            return;
        };
        if depth > MAX_DEPTH && (value.is_array() || value.is_object()) {
            self.report(format!("nesting deeper than {MAX_DEPTH} levels; not validated"));
            return;
        }
        if value.is_null() {
            match (nullable, null_default) {
                (Some(true), _) | (None, NullDefault::Allowed) => {}
                (Some(false), _) => self.report("null is not allowed (x-nullable: false)".into()),
                (None, NullDefault::Rejected(what)) => {
                    self.report(format!("null is not allowed for {what}"));
                }
            }
            return;
        }
        let n = &c.nodes[target];
        let view = c.views[target].as_ref();
        let ty = n.ty.or(view.map(|_| JsonType::Object));
        let type_ok = match ty {
            None => true,
            Some(JsonType::String) => match value.as_str() {
                Some(s) => {
                    self.check_string(n.format, n.min_length, n.max_length, s);
                    true
                }
                None => false,
            },
            Some(JsonType::Integer) => {
                if value.is_i64() || value.is_u64() {
                    self.check_integer(n.format, value);
                    self.check_range(n, value);
                    true
                } else if value.is_number() {
                    self.report(format!("expected an integer, found the non-integer number {value}"));
                    return;
                } else {
                    false
                }
            }
            Some(JsonType::Number) => {
                let ok = value.is_number();
                if ok {
                    self.check_range(n, value);
                }
                ok
            }
            Some(JsonType::Boolean) => value.is_boolean(),
            Some(JsonType::Array) => match value.as_array() {
                Some(items) => {
                    self.check_array(n.items, n.min_items, n.max_items, items, depth);
                    true
                }
                None => false,
            },
            Some(JsonType::Object) => match value.as_object() {
                Some(map) => {
                    self.check_object(target, value, map, depth);
                    true
                }
                None => false,
            },
        };
        if !type_ok {
            if let Some(ty) = ty {
                self.report(format!("expected {}, found {}", ty.name(), kind(value)));
            }
            return;
        }
        if let Some(rule) = &n.enum_rule
            && !rule.values.contains(value)
        {
            let allowed: Vec<String> = rule.values.iter().map(display_value).collect();
            let name = rule.name.as_deref().unwrap_or("enum");
            let hint = if rule.model_as_string {
                " (x-ms-enum modelAsString: clients must tolerate new values, \
                 but a simulator must only send documented ones)"
            } else {
                ""
            };
            self.report(format!("{} is not a value of {name}; allowed: {}{hint}", display_value(value), allowed.join(", ")));
        }
    }

    fn check_string(&mut self, format: Option<Format>, min: Option<u64>, max: Option<u64>, s: &str) {
        let (ok, expected) = match format {
            Some(Format::DateTime) => (formats::is_date_time(s), "an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.f{1,7}][Z|±hh:mm])"),
            Some(Format::Date) => (formats::is_date(s), "a date (YYYY-MM-DD)"),
            Some(Format::Duration) => (formats::is_duration(s), "an ISO 8601 duration (e.g. PT9.8782791S, P1D)"),
            Some(Format::Uuid) => (formats::is_uuid(s), "a UUID"),
            _ => (true, ""),
        };
        if !ok {
            self.report(format!("{} is not {expected}", display_str(s)));
        }
        if min.is_some() || max.is_some() {
            let len = s.chars().count() as u64;
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                self.report(format!(
                    "string length {len} outside [{}, {}]",
                    min.map_or("0".into(), |m| m.to_string()),
                    max.map_or("∞".into(), |m| m.to_string())
                ));
            }
        }
    }

    fn check_integer(&mut self, format: Option<Format>, value: &Value) {
        let fits = match format {
            Some(Format::Int32) => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            Some(Format::Int64) => value.as_i64().is_some(),
            _ => true,
        };
        if !fits {
            let bits = if format == Some(Format::Int32) { 32 } else { 64 };
            self.report(format!("{value} does not fit in int{bits}"));
        }
    }

    fn check_range(&mut self, n: &super::compile::Node, value: &Value) {
        let Some(x) = value.as_f64() else { return };
        if let Some(min) = n.minimum
            && (if n.exclusive_minimum { x <= min } else { x < min })
        {
            let op = if n.exclusive_minimum { ">" } else { ">=" };
            self.report(format!("{value} is not {op} {min}"));
        }
        if let Some(max) = n.maximum
            && (if n.exclusive_maximum { x >= max } else { x > max })
        {
            let op = if n.exclusive_maximum { "<" } else { "<=" };
            self.report(format!("{value} is not {op} {max}"));
        }
    }

    fn check_array(&mut self, items: Option<NodeId>, min: Option<u64>, max: Option<u64>, values: &[Value], depth: usize) {
        let len = values.len() as u64;
        if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
            self.report(format!(
                "array has {len} items, expected between {} and {}",
                min.unwrap_or(0),
                max.map_or("∞".into(), |m| m.to_string())
            ));
        }
        let Some(items) = items else { return };
        for (i, item) in values.iter().enumerate() {
            let len = self.push(&i.to_string());
            self.check(items, item, NullDefault::Rejected("an array item"), depth + 1);
            self.path.truncate(len);
        }
    }

    /// Validate an object against the effective (allOf-merged) schema of
    /// `target`, first switching to the concrete subtype named by the
    /// discriminator, if the schema has one.
    fn check_object(&mut self, target: NodeId, value: &Value, map: &Map<String, Value>, depth: usize) {
        let c = self.c;
        let mut effective = target;
        // Without a known concrete type, "undeclared property" would only be
        // noise on top of the real problem: the derived type's members are not
        // in the base.
        let mut type_known = true;
        if let Some(view) = c.views[target].as_ref()
            && let Some(prop) = &view.discriminator
            && let Some(table) = c.subtypes.get(&target)
        {
            match map.get(prop) {
                Some(Value::String(tag)) => match table.get(tag) {
                    Some(&derived) => effective = derived,
                    None => {
                        let known: Vec<&str> = table.keys().map(String::as_str).collect();
                        let len = self.push(prop);
                        self.report(format!(
                            "unknown discriminator value {} for {}.{prop}; known: {}",
                            display_str(tag),
                            definition_name(c, target),
                            known.join(", ")
                        ));
                        self.path.truncate(len);
                        type_known = false;
                    }
                },
                // Missing or mistyped: reported by `required` or by the
                // property's own type check below.
                _ => type_known = false,
            }
        }
        let Some(view) = c.views[effective].as_ref() else {
            return;
        };
        for part in &view.other_parts {
            self.check(*part, value, NullDefault::Rejected("the object"), depth);
        }
        for name in &view.required {
            if !map.contains_key(name) {
                let len = self.push(name);
                self.report(format!("required property is missing (required by {})", definition_name(c, effective)));
                self.path.truncate(len);
            }
        }
        for (key, value) in map {
            let len = self.push(key);
            if let Some(schemas) = view.properties.get(key) {
                let null_default = if view.required.iter().any(|r| r == key) {
                    NullDefault::Rejected("a required property")
                } else {
                    NullDefault::Allowed
                };
                for &schema in schemas {
                    self.check(schema, value, null_default, depth + 1);
                }
            } else {
                match view.additional {
                    Additional::Schema(schema) => {
                        self.check(schema, value, NullDefault::Rejected("a map value"), depth + 1);
                    }
                    Additional::Allowed(true) => {}
                    Additional::Allowed(false) => {
                        self.report(format!("property is not declared in {} (additionalProperties: false)", definition_name(c, effective)))
                    }
                    Additional::Absent => {
                        if self.strict_unknown_properties && type_known && !view.free_form {
                            self.report(format!(
                                "property is not declared in {} (strict mode: the simulator \
                                 must not invent fields)",
                                definition_name(c, effective)
                            ));
                        }
                    }
                }
            }
            self.path.truncate(len);
        }
    }
}

fn definition_name(c: &Compiled, id: NodeId) -> &str {
    c.nodes.get(id).and_then(|n| n.definition.as_deref()).unwrap_or("an inline object schema")
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Shorten what external input can put into a message.
fn display_str(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => display_str(s),
        other => other.to_string(),
    }
}
