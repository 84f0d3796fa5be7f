//! Load-time compilation of the swagger documents into an arena of schema nodes.
//!
//! Everything that does not depend on the instance being validated is worked out
//! here, once: `$ref`s become node indices (so validation never looks names up or
//! walks JSON pointers), `allOf` chains are merged into one [`ObjectView`] per
//! object schema, and for every definition that carries a `discriminator` the
//! table of its concrete subtypes is built. Validation then only reads these
//! tables and never clones schema subtrees.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::SchemaError;

/// Index of a node in [`Compiled::nodes`].
pub(crate) type NodeId = usize;

/// Which of the two loaded documents a schema came from; `$ref`s are resolved
/// relative to the document they are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DocId {
    Bms,
    Common,
}

impl DocId {
    fn label(self) -> &'static str {
        match self {
            DocId::Bms => "bms.json",
            DocId::Common => "types.json",
        }
    }
}

/// Swagger 2.0 primitive types (`file` and `null` are not used by bms.json and
/// are rejected at load so a future spec using them fails loudly, not silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "string" => JsonType::String,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "boolean" => JsonType::Boolean,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
        }
    }
}

/// The `format`s the validator checks. Anything else (`double`, `arm-id`, `uri`,
/// `password`, ...) is accepted as its plain type: arm-id in particular is just a
/// string to the service, and example ids even differ in case (`/Subscriptions/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    DateTime,
    Date,
    Duration,
    Int32,
    Int64,
    Uuid,
}

impl Format {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "date-time" => Format::DateTime,
            "date" => Format::Date,
            "duration" => Format::Duration,
            "int32" => Format::Int32,
            "int64" => Format::Int64,
            "uuid" => Format::Uuid,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(crate) struct EnumRule {
    pub values: Vec<Value>,
    /// `x-ms-enum.name`, for messages.
    pub name: Option<String>,
    /// `x-ms-enum.modelAsString`: clients must tolerate unknown values, but the
    /// simulator must still only send documented ones, so it is only reported.
    pub model_as_string: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Additional {
    /// No `additionalProperties` keyword.
    Absent,
    /// `additionalProperties: true|false`.
    Allowed(bool),
    /// `additionalProperties: {schema}`: a map whose values follow the schema.
    Schema(NodeId),
}

/// One schema object of the swagger, with its sub-schemas replaced by node ids.
#[derive(Debug)]
pub(crate) struct Node {
    /// Set for a `$ref` node; swagger 2.0 ignores the siblings of `$ref`
    /// (TypeSpec puts `description`/`readOnly` there), except `x-nullable`, which
    /// AutoRest honours next to a `$ref` and so do we.
    pub ref_target: Option<NodeId>,
    /// The `$ref` text as written, for [`super::SchemaRef::reference`].
    pub ref_text: Option<String>,
    pub ty: Option<JsonType>,
    pub format: Option<Format>,
    pub enum_rule: Option<EnumRule>,
    pub nullable: Option<bool>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub items: Option<NodeId>,
    pub properties: Vec<(String, NodeId)>,
    pub required: Vec<String>,
    pub additional: Additional,
    pub all_of: Vec<NodeId>,
    pub discriminator: Option<String>,
    /// Definition name when this node is the root of `#/definitions/<name>`.
    pub definition: Option<String>,
    pub discriminator_value: Option<String>,
}

impl Node {
    fn empty(definition: Option<String>) -> Self {
        Node {
            ref_target: None,
            ref_text: None,
            ty: None,
            format: None,
            enum_rule: None,
            nullable: None,
            minimum: None,
            maximum: None,
            exclusive_minimum: false,
            exclusive_maximum: false,
            min_length: None,
            max_length: None,
            min_items: None,
            max_items: None,
            items: None,
            properties: Vec::new(),
            required: Vec::new(),
            additional: Additional::Absent,
            all_of: Vec::new(),
            discriminator: None,
            definition,
            discriminator_value: None,
        }
    }

    fn is_object_like(&self) -> bool {
        self.ty == Some(JsonType::Object)
            || !self.properties.is_empty()
            || !self.all_of.is_empty()
            || self.additional != Additional::Absent
            || self.discriminator.is_some()
    }
}

/// The effective object schema of a node: its own keywords merged with those of
/// every `allOf` part (transitively). "All parts must hold" is equivalent to
/// validating each property against every schema declared for it, requiring the
/// union of `required`, and treating the union of properties as the known set.
#[derive(Debug)]
pub(crate) struct ObjectView {
    /// Property name -> every (ref-resolved, de-duplicated) schema declared for it.
    pub properties: HashMap<String, Vec<NodeId>>,
    pub required: Vec<String>,
    pub additional: Additional,
    /// The nearest `discriminator` (own first, then the allOf chain).
    pub discriminator: Option<String>,
    /// `{"type": "object"}` with nothing else: swagger's "any object", so the
    /// strict unknown-property rule does not apply.
    pub free_form: bool,
    /// allOf parts that are not object schemas (unused by bms.json, kept so
    /// such a part is still enforced rather than silently dropped).
    pub other_parts: Vec<NodeId>,
}

impl ObjectView {
    fn add_required(&mut self, name: &str) {
        if !self.required.iter().any(|r| r == name) {
            self.required.push(name.to_owned());
        }
    }
}

/// An operation's declared responses, in document order.
#[derive(Debug)]
pub(crate) struct Operation {
    pub responses: Vec<(String, Option<NodeId>)>,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub nodes: Vec<Node>,
    /// For every node, the node reached by following `$ref`s (itself if none).
    pub resolved: Vec<NodeId>,
    /// For every node, the first `x-nullable` met along its `$ref` chain.
    pub nullable: Vec<Option<bool>>,
    /// `Some` for every non-ref object-like node.
    pub views: Vec<Option<ObjectView>>,
    /// Base definition with a discriminator -> discriminator value -> the
    /// definition (the base itself or a transitive allOf descendant).
    pub subtypes: HashMap<NodeId, BTreeMap<String, NodeId>>,
    /// Discriminator values claimed by two definitions under one base; the first
    /// (in node order) wins. Kept so tests can assert the spec has none.
    pub discriminator_conflicts: Vec<String>,
    pub definitions: HashMap<String, NodeId>,
    pub common_definitions: HashMap<String, NodeId>,
    pub operations: HashMap<String, Operation>,
}

const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// Compile the main document and the common-types document.
pub(crate) fn compile(bms: &Value, common: &Value) -> Result<Compiled, SchemaError> {
    let mut c = Compiler { nodes: Vec::new(), defs: HashMap::new() };
    // Phase 1: reserve a node per definition so refs (also forward and
    // recursive ones) can be resolved while compiling bodies in phase 2.
    let mut pending = Vec::new();
    for (doc, value) in [(DocId::Bms, bms), (DocId::Common, common)] {
        let Some(root) = value.as_object() else {
            return Err(SchemaError::InvalidDocument {
                document: doc.label().to_owned(),
                reason: "top level is not a JSON object".to_owned(),
            });
        };
        if let Some(defs) = root.get("definitions") {
            let Some(defs) = defs.as_object() else {
                return Err(SchemaError::InvalidDocument {
                    document: doc.label().to_owned(),
                    reason: "`definitions` is not an object".to_owned(),
                });
            };
            for (name, schema) in defs {
                let id = c.nodes.len();
                c.nodes.push(Node::empty(Some(name.clone())));
                c.defs.insert((doc, name.clone()), id);
                pending.push((doc, name.as_str(), schema, id));
            }
        }
    }
    for (doc, name, schema, id) in pending {
        let location = format!("{}#/definitions/{}", doc.label(), escape_pointer(name));
        let mut node = c.build(schema, doc, &location)?;
        node.definition = Some(name.to_owned());
        c.nodes[id] = node;
    }
    let operations = c.operations(bms)?;

    let (resolved, nullable) = resolve_refs(&c.nodes)?;
    let views = build_views(&c.nodes, &resolved)?;
    let (subtypes, discriminator_conflicts) = build_subtypes(&c.nodes, &resolved, &views);

    let mut definitions = HashMap::new();
    let mut common_definitions = HashMap::new();
    for ((doc, name), id) in c.defs {
        match doc {
            DocId::Bms => definitions.insert(name, id),
            DocId::Common => common_definitions.insert(name, id),
        };
    }
    Ok(Compiled {
        nodes: c.nodes,
        resolved,
        nullable,
        views,
        subtypes,
        discriminator_conflicts,
        definitions,
        common_definitions,
        operations,
    })
}

struct Compiler {
    nodes: Vec<Node>,
    defs: HashMap<(DocId, String), NodeId>,
}

impl Compiler {
    fn sub(&mut self, schema: &Value, doc: DocId, location: &str) -> Result<NodeId, SchemaError> {
        let node = self.build(schema, doc, location)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Translate one schema object. Unknown keywords (descriptions, `x-ms-*`
    /// annotations other than the ones below) are ignored; only the schema
    /// keywords are descended into, so e.g. `x-ms-arm-id-details` with its
    /// `"type": "Microsoft.Compute/..."` entries is never mistaken for a schema.
    fn build(&mut self, schema: &Value, doc: DocId, location: &str) -> Result<Node, SchemaError> {
        let obj = schema.as_object().ok_or_else(|| invalid(location, "schema is not an object"))?;
        let mut node = Node::empty(None);
        node.nullable = match obj.get("x-nullable") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(invalid(location, "`x-nullable` is not a boolean")),
        };
        if let Some(reference) = obj.get("$ref") {
            let reference = reference.as_str().ok_or_else(|| invalid(location, "`$ref` is not a string"))?;
            node.ref_target = Some(self.resolve(reference, doc, location)?);
            node.ref_text = Some(reference.to_owned());
            return Ok(node);
        }
        if let Some(ty) = obj.get("type") {
            let ty = ty.as_str().ok_or_else(|| invalid(location, "`type` is not a string"))?;
            node.ty = Some(JsonType::parse(ty).ok_or_else(|| invalid(location, &format!("unsupported type `{ty}`")))?);
        }
        node.format = obj.get("format").and_then(Value::as_str).and_then(Format::parse);
        if let Some(values) = obj.get("enum") {
            let values = values.as_array().ok_or_else(|| invalid(location, "`enum` is not an array"))?;
            let ext = obj.get("x-ms-enum").and_then(Value::as_object);
            node.enum_rule = Some(EnumRule {
                values: values.clone(),
                name: ext.and_then(|e| e.get("name")).and_then(Value::as_str).map(str::to_owned),
                model_as_string: ext.and_then(|e| e.get("modelAsString")).and_then(Value::as_bool).unwrap_or(false),
            });
        }
        node.minimum = number(obj, "minimum", location)?;
        node.maximum = number(obj, "maximum", location)?;
        node.exclusive_minimum = obj.get("exclusiveMinimum").and_then(Value::as_bool).unwrap_or(false);
        node.exclusive_maximum = obj.get("exclusiveMaximum").and_then(Value::as_bool).unwrap_or(false);
        node.min_length = count(obj, "minLength", location)?;
        node.max_length = count(obj, "maxLength", location)?;
        node.min_items = count(obj, "minItems", location)?;
        node.max_items = count(obj, "maxItems", location)?;
        if let Some(items) = obj.get("items") {
            node.items = Some(self.sub(items, doc, &format!("{location}/items"))?);
        }
        if let Some(props) = obj.get("properties") {
            let props = props.as_object().ok_or_else(|| invalid(location, "`properties` is not an object"))?;
            for (name, prop) in props {
                let loc = format!("{location}/properties/{}", escape_pointer(name));
                let id = self.sub(prop, doc, &loc)?;
                node.properties.push((name.clone(), id));
            }
        }
        if let Some(required) = obj.get("required") {
            let required = required.as_array().ok_or_else(|| invalid(location, "`required` is not an array"))?;
            for r in required {
                let r = r.as_str().ok_or_else(|| invalid(location, "`required` has a non-string entry"))?;
                node.required.push(r.to_owned());
            }
        }
        node.additional = match obj.get("additionalProperties") {
            None => Additional::Absent,
            Some(Value::Bool(b)) => Additional::Allowed(*b),
            Some(schema) => Additional::Schema(self.sub(schema, doc, &format!("{location}/additionalProperties"))?),
        };
        if let Some(parts) = obj.get("allOf") {
            let parts = parts.as_array().ok_or_else(|| invalid(location, "`allOf` is not an array"))?;
            for (i, part) in parts.iter().enumerate() {
                let id = self.sub(part, doc, &format!("{location}/allOf/{i}"))?;
                node.all_of.push(id);
            }
        }
        if let Some(d) = obj.get("discriminator") {
            let d = d.as_str().ok_or_else(|| invalid(location, "`discriminator` is not a string"))?;
            node.discriminator = Some(d.to_owned());
        }
        node.discriminator_value = obj.get("x-ms-discriminator-value").and_then(Value::as_str).map(str::to_owned);
        Ok(node)
    }

    /// Resolve a `$ref` to the reserved node of a definition. The only external
    /// file bms.json uses is the ARM common-types v3 `types.json`; its relative
    /// prefix (`../../../../../../`) reflects the upstream repo layout, not the
    /// saved one, so the file part is matched by suffix.
    fn resolve(&self, reference: &str, doc: DocId, location: &str) -> Result<NodeId, SchemaError> {
        let (file, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let target_doc = if file.is_empty() {
            doc
        } else if file.ends_with("common-types/resource-management/v3/types.json") {
            DocId::Common
        } else {
            return Err(SchemaError::UnsupportedRef {
                reference: reference.to_owned(),
                location: location.to_owned(),
                reason: "only same-document refs and common-types v3 types.json are supported".to_owned(),
            });
        };
        let name = fragment.strip_prefix("/definitions/").filter(|n| !n.contains('/')).ok_or_else(|| SchemaError::UnsupportedRef {
            reference: reference.to_owned(),
            location: location.to_owned(),
            reason: "a schema ref must point at #/definitions/<name>".to_owned(),
        })?;
        let name = name.replace("~1", "/").replace("~0", "~");
        self.defs
            .get(&(target_doc, name))
            .copied()
            .ok_or_else(|| SchemaError::UnresolvedRef { reference: reference.to_owned(), location: location.to_owned() })
    }

    fn operations(&mut self, bms: &Value) -> Result<HashMap<String, Operation>, SchemaError> {
        let mut operations = HashMap::new();
        for section in ["paths", "x-ms-paths"] {
            let Some(paths) = bms.get(section).and_then(Value::as_object) else {
                continue;
            };
            for (path, item) in paths {
                let Some(item) = item.as_object() else {
                    continue;
                };
                for method in HTTP_METHODS {
                    let Some(op) = item.get(method) else { continue };
                    let location = format!("bms.json#/{section}/{}/{method}", escape_pointer(path));
                    let id =
                        op.get("operationId").and_then(Value::as_str).ok_or_else(|| invalid(&location, "operation without operationId"))?;
                    let responses =
                        op.get("responses").and_then(Value::as_object).ok_or_else(|| invalid(&location, "operation without responses"))?;
                    let mut declared = Vec::new();
                    for (status, response) in responses {
                        let loc = format!("{location}/responses/{status}");
                        if response.get("$ref").is_some() {
                            return Err(invalid(&loc, "response `$ref`s are not supported"));
                        }
                        let schema = match response.get("schema") {
                            Some(s) => Some(self.sub(s, DocId::Bms, &format!("{loc}/schema"))?),
                            None => None,
                        };
                        declared.push((status.clone(), schema));
                    }
                    if operations.insert(id.to_owned(), Operation { responses: declared }).is_some() {
                        return Err(SchemaError::DuplicateOperation(id.to_owned()));
                    }
                }
            }
        }
        Ok(operations)
    }
}

fn invalid(location: &str, reason: &str) -> SchemaError {
    SchemaError::InvalidSchema { location: location.to_owned(), reason: reason.to_owned() }
}

fn number(obj: &Map<String, Value>, key: &str, location: &str) -> Result<Option<f64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| invalid(location, &format!("`{key}` is not a number"))),
    }
}

fn count(obj: &Map<String, Value>, key: &str, location: &str) -> Result<Option<u64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(location, &format!("`{key}` is not a non-negative integer"))),
    }
}

/// Escape a JSON-pointer reference token (RFC 6901).
pub(crate) fn escape_pointer(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains(['~', '/']) { token.replace('~', "~0").replace('/', "~1").into() } else { token.into() }
}

fn definition_label(nodes: &[Node], id: NodeId) -> String {
    nodes.get(id).and_then(|n| n.definition.clone()).unwrap_or_else(|| format!("schema node {id}"))
}

/// Follow `$ref` chains once, so validation is a single index lookup. A chain
/// longer than the node count can only be a cycle (`A: $ref B`, `B: $ref A`),
/// which would otherwise loop forever at validation time.
fn resolve_refs(nodes: &[Node]) -> Result<(Vec<NodeId>, Vec<Option<bool>>), SchemaError> {
    let mut resolved = Vec::with_capacity(nodes.len());
    let mut nullable = Vec::with_capacity(nodes.len());
    for (start, node) in nodes.iter().enumerate() {
        let mut current = start;
        let mut first_nullable = node.nullable;
        let mut steps = 0usize;
        while let Some(next) = nodes.get(current).and_then(|n| n.ref_target) {
            steps += 1;
            if steps > nodes.len() {
                return Err(SchemaError::RefCycle(definition_label(nodes, start)));
            }
            current = next;
            if first_nullable.is_none() {
                first_nullable = nodes.get(current).and_then(|n| n.nullable);
            }
        }
        resolved.push(current);
        nullable.push(first_nullable);
    }
    Ok((resolved, nullable))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Todo,
    InProgress,
    Done,
}

fn build_views(nodes: &[Node], resolved: &[NodeId]) -> Result<Vec<Option<ObjectView>>, SchemaError> {
    let mut views: Vec<Option<ObjectView>> = (0..nodes.len()).map(|_| None).collect();
    let mut marks = vec![Mark::Todo; nodes.len()];
    for id in 0..nodes.len() {
        build_view(id, nodes, resolved, &mut views, &mut marks)?;
    }
    Ok(views)
}

fn build_view(
    id: NodeId,
    nodes: &[Node],
    resolved: &[NodeId],
    views: &mut [Option<ObjectView>],
    marks: &mut [Mark],
) -> Result<(), SchemaError> {
    match marks[id] {
        Mark::Done => return Ok(()),
        Mark::InProgress => return Err(SchemaError::AllOfCycle(definition_label(nodes, id))),
        Mark::Todo => {}
    }
    let node = &nodes[id];
    if node.ref_target.is_some() || !node.is_object_like() {
        marks[id] = Mark::Done;
        return Ok(());
    }
    marks[id] = Mark::InProgress;
    let mut view = ObjectView {
        properties: HashMap::new(),
        required: Vec::new(),
        additional: node.additional,
        discriminator: node.discriminator.clone(),
        free_form: node.ty == Some(JsonType::Object)
            && node.properties.is_empty()
            && node.all_of.is_empty()
            && node.additional == Additional::Absent
            && node.discriminator.is_none(),
        other_parts: Vec::new(),
    };
    for &part in &node.all_of {
        let target = resolved[part];
        build_view(target, nodes, resolved, views, marks)?;
        let Some(part_view) = views[target].as_ref() else {
            view.other_parts.push(target);
            continue;
        };
        // Clone the part's small tables out first: `views` is borrowed mutably
        // for the recursion above, and the merged view owns its data.
        let props: Vec<(String, Vec<NodeId>)> = part_view.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let required = part_view.required.clone();
        let additional = part_view.additional;
        let discriminator = part_view.discriminator.clone();
        let other = part_view.other_parts.clone();
        for (name, schemas) in props {
            let entry = view.properties.entry(name).or_default();
            for s in schemas {
                if !entry.contains(&s) {
                    entry.push(s);
                }
            }
        }
        for r in &required {
            view.add_required(r);
        }
        if view.additional == Additional::Absent {
            view.additional = additional;
        }
        if view.discriminator.is_none() {
            view.discriminator = discriminator;
        }
        view.other_parts.extend(other);
    }
    for (name, schema) in &node.properties {
        let entry = view.properties.entry(name.clone()).or_default();
        if !entry.contains(schema) {
            entry.push(*schema);
        }
    }
    for r in &node.required {
        view.add_required(r);
    }
    views[id] = Some(view);
    marks[id] = Mark::Done;
    Ok(())
}

/// For each definition X and each of its allOf ancestors-or-self A whose
/// effective schema has a discriminator, register X under A with X's
/// `x-ms-discriminator-value` (or its name). Keyed per base because the same
/// value is reused across hierarchies (`VMAppContainer` is both a
/// ProtectionContainer and a ProtectableContainer).
fn build_subtypes(
    nodes: &[Node],
    resolved: &[NodeId],
    views: &[Option<ObjectView>],
) -> (HashMap<NodeId, BTreeMap<String, NodeId>>, Vec<String>) {
    let mut subtypes: HashMap<NodeId, BTreeMap<String, NodeId>> = HashMap::new();
    let mut conflicts = Vec::new();
    for (id, node) in nodes.iter().enumerate() {
        let Some(name) = &node.definition else {
            continue;
        };
        let value = node.discriminator_value.as_deref().unwrap_or(name);
        let mut seen = HashSet::new();
        let mut stack = vec![id];
        while let Some(a) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            if views[a].as_ref().is_some_and(|v| v.discriminator.is_some()) {
                let table = subtypes.entry(a).or_default();
                match table.get(value) {
                    None => {
                        table.insert(value.to_owned(), id);
                    }
                    Some(&other) if other != id => conflicts.push(format!(
                        "{} under {}: {} and {}",
                        value,
                        definition_label(nodes, a),
                        definition_label(nodes, other),
                        name
                    )),
                    Some(_) => {}
                }
            }
            for &part in &nodes[a].all_of {
                let target = resolved[part];
                if nodes[target].definition.is_some() {
                    stack.push(target);
                }
            }
        }
    }
    (subtypes, conflicts)
}
