//! Validation of JSON bodies against the Azure Backup swagger (`OpenAPI` 2.0).
//!
//! The simulator generates every response body itself, so nothing but a check
//! against the published contract keeps it honest: a misspelt field, an enum
//! value the service never sends or a wrong discriminator would otherwise pass
//! our own tests and only break real clients. [`Spec`] loads `bms.json` and the
//! ARM common-types `types.json` at run time (they are reference data, not part
//! of the repo), compiles them once, and validates bodies per operation response
//! ([`Spec::validate_response`]) or per definition ([`Spec::validate_definition`]).
//!
//! Supported: the swagger subset bms.json actually uses — `$ref` (same document
//! and common-types v3), `type`, `format` (date-time, date, duration, int32,
//! int64, uuid; others are plain strings/numbers), `enum` (also when
//! `x-ms-enum.modelAsString` is true), `required`, `properties`,
//! `additionalProperties`, `items`, `allOf`, `discriminator` +
//! `x-ms-discriminator-value`, `x-nullable`, `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`. Not supported: `pattern` (no
//! regex engine among the allowed dependencies; bms.json does not use it),
//! `readOnly` (irrelevant for responses).
//!
//! Null handling: `x-nullable` decides when present; otherwise `null` is
//! accepted for optional properties (services serialize unset members as
//! `null`) and rejected for required ones, array items, map values and the root.

mod compile;
mod formats;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use compile::{Compiled, NodeId};

/// A parsed, compiled swagger. Cheap to clone (the compiled tables are shared),
/// so a strict and a lenient handle can coexist without reloading.
#[derive(Clone)]
pub struct Spec {
    inner: Arc<Compiled>,
    strict_unknown_properties: bool,
}

/// A schema of the spec, as returned by [`Spec::response_schema`] and
/// [`Spec::definition`]. Only meaningful for the [`Spec`] that produced it (or
/// a clone of it); with another spec validation reports a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRef {
    node: NodeId,
    definition: Option<String>,
    reference: Option<String>,
}

impl SchemaRef {
    /// The definition the schema is (or `$ref`s to), e.g. `ProtectionContainerResource`.
    #[must_use]
    pub fn definition_name(&self) -> Option<&str> {
        self.definition.as_deref()
    }

    /// The `$ref` text as written in the swagger, e.g.
    /// `#/definitions/ProtectionContainerResource`, if the schema is a `$ref`.
    #[must_use]
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
}

/// One way a body breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer (RFC 6901) of the offending value, e.g. `/properties/status`;
    /// `""` is the body itself. For a missing required property it is the path
    /// the property should have had.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "<root>" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// Why a spec could not be loaded or a response could not be looked up.
#[derive(thiserror::Error, Debug)]
pub enum SchemaError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot locate common-types/resource-management/v3/types.json from {0}; use Spec::load_with_common")]
    CommonTypesNotFound(PathBuf),
    #[error("{document}: {reason}")]
    InvalidDocument { document: String, reason: String },
    #[error("invalid schema at {location}: {reason}")]
    InvalidSchema { location: String, reason: String },
    #[error("$ref {reference} at {location} does not resolve")]
    UnresolvedRef { reference: String, location: String },
    #[error("unsupported $ref {reference} at {location}: {reason}")]
    UnsupportedRef { reference: String, location: String, reason: String },
    #[error("$ref cycle through {0}")]
    RefCycle(String),
    #[error("allOf cycle through {0}")]
    AllOfCycle(String),
    #[error("operationId {0} is declared twice")]
    DuplicateOperation(String),
    #[error("unknown operationId {0}")]
    UnknownOperation(String),
    #[error("operation {operation_id} declares no response for status {status} (declared: {})", declared.join(", "))]
    UndeclaredStatus { operation_id: String, status: u16, declared: Vec<String> },
}

impl Spec {
    /// Load from the bms.json path; `types.json` is expected where the saved
    /// specs keep it: `<bms folder>/../../common-types/resource-management/v3/types.json`.
    ///
    /// # Errors
    /// [`SchemaError`] if a file cannot be read or parsed, or the swagger uses
    /// a construct the validator does not support (so it never validates
    /// against a silently partial schema).
    pub fn load(bms_json: &Path) -> Result<Spec, SchemaError> {
        let types = bms_json
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(|root| root.join("common-types/resource-management/v3/types.json"))
            .ok_or_else(|| SchemaError::CommonTypesNotFound(bms_json.to_owned()))?;
        Self::load_with_common(bms_json, &types)
    }

    /// Load from explicit paths of bms.json and the common-types v3 types.json.
    ///
    /// # Errors
    /// As [`Spec::load`].
    pub fn load_with_common(bms_json: &Path, types_json: &Path) -> Result<Spec, SchemaError> {
        let bms = read_json(bms_json)?;
        let common = read_json(types_json)?;
        Self::from_documents(&bms, &common)
    }

    /// Compile already-parsed documents (the main swagger and common types).
    ///
    /// # Errors
    /// As [`Spec::load`], minus I/O.
    pub fn from_documents(bms: &Value, types: &Value) -> Result<Spec, SchemaError> {
        Ok(Spec { inner: Arc::new(compile::compile(bms, types)?), strict_unknown_properties: true })
    }

    /// Strict mode (the default) reports any property the effective schema
    /// (allOf-merged, discriminator-resolved) does not declare, unless the
    /// schema has `additionalProperties`: the simulator must not invent fields.
    /// Lenient mode is for third-party bodies such as Microsoft's examples.
    #[must_use]
    pub fn strict_unknown_properties(mut self, strict: bool) -> Spec {
        self.strict_unknown_properties = strict;
        self
    }

    /// Whether unknown properties are reported.
    #[must_use]
    pub fn is_strict_unknown_properties(&self) -> bool {
        self.strict_unknown_properties
    }

    /// The declared status codes of an operation, e.g. `["200", "202", "default"]`.
    #[must_use]
    pub fn operation_statuses(&self, operation_id: &str) -> Option<Vec<String>> {
        let op = self.inner.operations.get(operation_id)?;
        Some(op.responses.iter().map(|(s, _)| s.clone()).collect())
    }

    /// All operationIds of the spec, sorted.
    #[must_use]
    pub fn operation_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.inner.operations.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The body schema of an operation's response. `Ok(None)` when the status
    /// is declared without a body (202/204). An undeclared status falls back
    /// to `default` only for error codes (>= 400): `default` is ARM's error
    /// contract, and an undeclared success code is a bug in the sender, not an
    /// error response.
    ///
    /// # Errors
    /// [`SchemaError::UnknownOperation`] or [`SchemaError::UndeclaredStatus`].
    pub fn response_schema(&self, operation_id: &str, status: u16) -> Result<Option<SchemaRef>, SchemaError> {
        let op = self.inner.operations.get(operation_id).ok_or_else(|| SchemaError::UnknownOperation(operation_id.to_owned()))?;
        let code = status.to_string();
        let found = op
            .responses
            .iter()
            .find(|(s, _)| *s == code)
            .or_else(|| (status >= 400).then(|| op.responses.iter().find(|(s, _)| s == "default")).flatten())
            .ok_or_else(|| SchemaError::UndeclaredStatus {
                operation_id: operation_id.to_owned(),
                status,
                declared: op.responses.iter().map(|(s, _)| s.clone()).collect(),
            })?;
        Ok(found.1.map(|node| self.schema_ref(node)))
    }

    /// Validate a response body. Pass `Value::Null` for an empty body; a body
    /// for a status declared without one is a violation, as is an unknown
    /// operation or undeclared status.
    ///
    /// # Errors
    /// Every violation found, each with the JSON pointer of the offending value.
    pub fn validate_response(&self, operation_id: &str, status: u16, body: &Value) -> Result<(), Vec<Violation>> {
        match self.response_schema(operation_id, status) {
            Err(e) => Err(vec![root_violation(e.to_string())]),
            Ok(Some(schema)) => self.validate(&schema, body),
            Ok(None) if body.is_null() => Ok(()),
            Ok(None) => {
                Err(vec![root_violation(format!("operation {operation_id} declares no body for status {status}, but one was given"))])
            }
        }
    }

    /// The schema of a definition: bms.json first, then common types (so
    /// `ErrorResponse` works too).
    #[must_use]
    pub fn definition(&self, name: &str) -> Option<SchemaRef> {
        let c = &self.inner;
        let node = c.definitions.get(name).or_else(|| c.common_definitions.get(name))?;
        Some(self.schema_ref(*node))
    }

    /// Validate against a named definition, e.g. `OperationStatus`.
    ///
    /// # Errors
    /// Every violation found (or one for an unknown definition name).
    pub fn validate_definition(&self, name: &str, body: &Value) -> Result<(), Vec<Violation>> {
        match self.definition(name) {
            Some(schema) => self.validate(&schema, body),
            None => Err(vec![root_violation(format!("unknown definition {name}"))]),
        }
    }

    /// Validate against a schema obtained from this spec.
    ///
    /// # Errors
    /// Every violation found.
    pub fn validate(&self, schema: &SchemaRef, body: &Value) -> Result<(), Vec<Violation>> {
        let violations = validate::Validator::run(&self.inner, self.strict_unknown_properties, schema.node, body);
        if violations.is_empty() { Ok(()) } else { Err(violations) }
    }

    /// Discriminator values claimed by two definitions under the same base
    /// (`"<value> under <base>: <first> and <second>"`); the first definition
    /// wins. Empty for bms.json 2026-10-01; a non-empty list means a spec
    /// update made polymorphic validation ambiguous.
    #[must_use]
    pub fn discriminator_conflicts(&self) -> &[String] {
        &self.inner.discriminator_conflicts
    }

    fn schema_ref(&self, node: NodeId) -> SchemaRef {
        let c = &self.inner;
        let target = c.resolved.get(node).copied().unwrap_or(node);
        SchemaRef {
            node,
            definition: c.nodes.get(target).and_then(|n| n.definition.clone()),
            reference: c.nodes.get(node).and_then(|n| n.ref_text.clone()),
        }
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("definitions", &self.inner.definitions.len())
            .field("operations", &self.inner.operations.len())
            .field("strict_unknown_properties", &self.strict_unknown_properties)
            .finish_non_exhaustive()
    }
}

fn root_violation(message: String) -> Violation {
    Violation { path: String::new(), message }
}

fn read_json(path: &Path) -> Result<Value, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|source| SchemaError::Json { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests;
