//! Unit tests on a small synthetic swagger, so each rule is exercised in
//! isolation and independently of the real (large) bms.json.

use serde_json::{Value, json};

use super::*;

const COMMON: &str = "../../../common-types/resource-management/v3/types.json";

fn common() -> Value {
    json!({
        "swagger": "2.0",
        "definitions": {
            "Resource": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "readOnly": true},
                    "name": {"type": "string"},
                    "type": {"type": "string"}
                }
            },
            "ErrorResponse": {
                "type": "object",
                "properties": {"error": {"$ref": "#/definitions/ErrorDetail"}}
            },
            "ErrorDetail": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"$ref": "#/definitions/ErrorDetail"}}
                }
            }
        }
    })
}

fn bms_with(definitions: Value) -> Value {
    json!({
        "swagger": "2.0",
        "paths": {
            "/things/{id}": {
                "get": {
                    "operationId": "Things_Get",
                    "responses": {
                        "200": {"description": "ok", "schema": {"$ref": "#/definitions/ThingResource"}},
                        "202": {"description": "accepted"},
                        "default": {"description": "error", "schema": {"$ref": format!("{COMMON}#/definitions/ErrorResponse")}}
                    }
                }
            }
        },
        "definitions": definitions
    })
}

fn definitions() -> Value {
    json!({
        "ThingResource": {
            "type": "object",
            "properties": {
                "properties": {"$ref": "#/definitions/Thing"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "allOf": [{"$ref": format!("{COMMON}#/definitions/Resource")}]
        },
        "Thing": {
            "type": "object",
            "discriminator": "kind",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string"},
                "count": {"type": "integer", "format": "int32", "minimum": 0},
                "when": {"type": "string", "format": "date-time"},
                "strictlyNotNull": {"type": "string", "x-nullable": false},
                "mayBeNull": {"type": "string", "x-nullable": true}
            }
        },
        "Widget": {
            "type": "object",
            "allOf": [{"$ref": "#/definitions/Thing"}],
            "x-ms-discriminator-value": "widget",
            "properties": {"size": {"type": "number"}}
        },
        "BigWidget": {
            "type": "object",
            "allOf": [{"$ref": "#/definitions/Widget"}],
            "x-ms-discriminator-value": "big",
            "required": ["extra"],
            "properties": {"extra": {"type": "boolean"}}
        },
        "Gadget": {
            "type": "object",
            "allOf": [{"$ref": "#/definitions/Thing"}],
            "properties": {"color": {"$ref": "#/definitions/Color"}}
        },
        "Color": {
            "type": "string",
            "enum": ["red", "green"],
            "x-ms-enum": {"name": "Color", "modelAsString": false}
        },
        "Tree": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/definitions/Tree"}}
            }
        },
        "Open": {"type": "object", "additionalProperties": true, "properties": {"a": {"type": "string"}}},
        "Closed": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}},
        "FreeForm": {"type": "object"}
    })
}

/// The synthetic definitions plus `extra` (which may replace some).
fn definitions_plus(extra: Value) -> Value {
    let mut defs = definitions();
    if let (Some(defs), Some(extra)) = (defs.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            defs.insert(k.clone(), v.clone());
        }
    }
    defs
}

fn spec() -> Spec {
    Spec::from_documents(&bms_with(definitions()), &common()).expect("synthetic spec compiles")
}

fn paths(result: Result<(), Vec<Violation>>) -> Vec<String> {
    result.err().unwrap_or_default().into_iter().map(|v| v.path).collect()
}

#[test]
fn response_lookup() {
    let s = spec();
    assert_eq!(s.operation_statuses("Things_Get").unwrap(), ["200", "202", "default"]);
    assert_eq!(s.operation_ids(), ["Things_Get"]);
    let ok = s.response_schema("Things_Get", 200).unwrap().unwrap();
    assert_eq!(ok.definition_name(), Some("ThingResource"));
    assert_eq!(ok.reference(), Some("#/definitions/ThingResource"));
    assert!(s.response_schema("Things_Get", 202).unwrap().is_none());
    let err = s.response_schema("Things_Get", 404).unwrap().unwrap();
    assert_eq!(err.definition_name(), Some("ErrorResponse"));
    assert!(matches!(s.response_schema("Things_Get", 201), Err(SchemaError::UndeclaredStatus { status: 201, .. })));
    assert!(matches!(s.response_schema("Nope", 200), Err(SchemaError::UnknownOperation(_))));

    assert!(s.validate_response("Things_Get", 202, &Value::Null).is_ok());
    assert_eq!(paths(s.validate_response("Things_Get", 202, &json!({}))), [""]);
    assert!(s.validate_response("Things_Get", 500, &json!({"error": {"code": "X", "details": [{"code": "Y"}]}})).is_ok());
    assert_eq!(paths(s.validate_response("Things_Get", 500, &json!({"error": {"details": [{"code": 1}]}}))), ["/error/details/0/code"]);
}

#[test]
fn multi_level_discriminator_resolves_to_the_most_derived_type() {
    let s = spec();
    let body = json!({"id": "i", "properties": {"kind": "big", "extra": true, "size": 1.5, "count": 3}});
    assert_eq!(s.validate_definition("ThingResource", &body), Ok(()));
    // Properties of the derived type are type-checked...
    let bad = json!({"properties": {"kind": "big", "extra": "yes"}});
    assert_eq!(paths(s.validate_definition("ThingResource", &bad)), ["/properties/extra"]);
    // ...and its `required` applies.
    let missing = json!({"properties": {"kind": "big"}});
    assert_eq!(paths(s.validate_definition("ThingResource", &missing)), ["/properties/extra"]);
    // Without x-ms-discriminator-value, the definition name is the value.
    assert!(s.validate_definition("Thing", &json!({"kind": "Gadget", "color": "red"})).is_ok());
    // The base itself is a valid value for the base.
    assert!(s.validate_definition("Thing", &json!({"kind": "Thing"})).is_ok());
}

#[test]
fn discriminator_must_name_a_subtype_of_the_schema_in_use() {
    let s = spec();
    let err = s.validate_definition("Widget", &json!({"kind": "Gadget", "color": "red"})).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].path, "/kind");
    assert!(err[0].message.contains("known: big, widget"), "{}", err[0].message);
    // Unknown value: reported once, without undeclared-property noise.
    let err = s.validate_definition("Thing", &json!({"kind": "Nope", "whatever": 1})).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].message.contains("known: Gadget, Thing, big, widget"), "{}", err[0]);
}

#[test]
fn strict_mode_uses_the_merged_property_set() {
    let s = spec();
    // `id` comes from the external Resource via allOf, `size` from Widget.
    let body = json!({"id": "i", "name": "n", "properties": {"kind": "widget", "size": 2}, "tags": {"a": "b"}});
    assert!(s.validate_definition("ThingResource", &body).is_ok());
    let bogus = json!({"bogus": 1, "properties": {"kind": "widget", "extra": true}});
    assert_eq!(paths(s.validate_definition("ThingResource", &bogus)), ["/bogus", "/properties/extra"]);
    let lenient = s.clone().strict_unknown_properties(false);
    assert!(!lenient.is_strict_unknown_properties());
    assert!(lenient.validate_definition("ThingResource", &bogus).is_ok());
    // additionalProperties schemas are enforced in both modes.
    assert_eq!(paths(lenient.validate_definition("ThingResource", &json!({"tags": {"a": 1}}))), ["/tags/a"]);
}

#[test]
fn additional_properties_variants() {
    let s = spec().strict_unknown_properties(false);
    assert!(s.validate_definition("Open", &json!({"a": "x", "b": [1]})).is_ok());
    assert_eq!(paths(s.validate_definition("Closed", &json!({"b": 1}))), ["/b"]);
    let strict = spec();
    assert!(strict.validate_definition("FreeForm", &json!({"anything": {"goes": true}})).is_ok());
    assert_eq!(paths(strict.validate_definition("FreeForm", &json!([]))), [""]);
}

#[test]
fn nulls() {
    let s = spec();
    assert!(s.validate_definition("Thing", &json!({"kind": "Thing", "count": null, "mayBeNull": null})).is_ok());
    assert_eq!(paths(s.validate_definition("Thing", &json!({"kind": null}))), ["/kind"]);
    assert_eq!(paths(s.validate_definition("Thing", &json!({"kind": "Thing", "strictlyNotNull": null}))), ["/strictlyNotNull"]);
    assert_eq!(paths(s.validate_definition("Thing", &Value::Null)), [""]);
    assert_eq!(paths(s.validate_definition("Tree", &json!({"name": "a", "children": [null]}))), ["/children/0"]);
}

#[test]
fn scalars() {
    let s = spec();
    let cases = [
        (json!({"kind": "Thing", "count": 1.5}), "/count", "non-integer"),
        (json!({"kind": "Thing", "count": 3_000_000_000u64}), "/count", "int32"),
        (json!({"kind": "Thing", "count": -1}), "/count", ">= 0"),
        (json!({"kind": "Thing", "count": "1"}), "/count", "expected integer, found string"),
        (json!({"kind": "Thing", "when": "2018-05-28"}), "/when", "date-time"),
        (json!({"kind": "Gadget", "color": "blue"}), "/color", "allowed: \"red\", \"green\""),
        (json!({"kind": 7}), "/kind", "expected string, found integer"),
    ];
    for (body, path, needle) in cases {
        let err = s.validate_definition("Thing", &body).unwrap_err();
        assert_eq!(err.len(), 1, "{body}: {err:?}");
        assert_eq!(err[0].path, path);
        assert!(err[0].message.contains(needle), "{body}: {}", err[0]);
    }
}

#[test]
fn all_violations_are_collected() {
    let s = spec();
    let body = json!({"properties": {"kind": "big", "extra": 1, "count": "x", "when": "now", "zz": 0}});
    let got = paths(s.validate_definition("ThingResource", &body));
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, ["/properties/count", "/properties/extra", "/properties/when", "/properties/zz"]);
}

#[test]
fn recursive_schemas_and_deep_bodies() {
    let s = spec();
    let tree = json!({"name": "a", "children": [{"name": "b", "children": [{"name": "c"}, {"children": []}]}]});
    assert_eq!(paths(s.validate_definition("Tree", &tree)), ["/children/0/children/1/name"]);

    // Built in memory, so serde_json's parser depth limit does not apply.
    let mut deep = json!({"name": "leaf"});
    for _ in 0..(validate::MAX_DEPTH + 50) {
        deep = json!({"name": "n", "children": [deep]});
    }
    let err = s.validate_definition("Tree", &deep).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].message.contains("nesting deeper"));
}

#[test]
fn json_pointer_escaping() {
    let s = spec().strict_unknown_properties(true);
    let err = s.validate_definition("Open", &json!({"a": 1, "x/y~z": 1})).unwrap_err();
    assert_eq!(err[0].path, "/a");
    let err = s.validate_definition("ThingResource", &json!({"tags": {"x/y~z": 1}})).unwrap_err();
    assert_eq!(err[0].path, "/tags/x~1y~0z");
    assert_eq!(err[0].to_string(), format!("/tags/x~1y~0z: {}", err[0].message));
}

#[test]
fn load_errors() {
    let cycle = json!({"A": {"$ref": "#/definitions/B"}, "B": {"$ref": "#/definitions/A"}});
    assert!(matches!(Spec::from_documents(&bms_with(definitions_plus(cycle)), &common()), Err(SchemaError::RefCycle(_))));
    let all_of_cycle = json!({
        "A": {"type": "object", "allOf": [{"$ref": "#/definitions/B"}]},
        "B": {"type": "object", "allOf": [{"$ref": "#/definitions/A"}]}
    });
    assert!(matches!(Spec::from_documents(&bms_with(definitions_plus(all_of_cycle)), &common()), Err(SchemaError::AllOfCycle(_))));
    // The response refs ThingResource, which does not exist here.
    assert!(matches!(Spec::from_documents(&bms_with(json!({})), &common()), Err(SchemaError::UnresolvedRef { .. })));
    let foreign = json!({"A": {"$ref": "other.json#/definitions/X"}});
    assert!(matches!(Spec::from_documents(&bms_with(definitions_plus(foreign)), &common()), Err(SchemaError::UnsupportedRef { .. })));
    let bad_type = json!({"A": {"type": "file"}});
    assert!(matches!(Spec::from_documents(&bms_with(definitions_plus(bad_type)), &common()), Err(SchemaError::InvalidSchema { .. })));
    assert!(matches!(Spec::load(Path::new("/nonexistent/x/y/bms.json")), Err(SchemaError::Io { .. })));
    assert!(matches!(Spec::load(Path::new("bms.json")), Err(SchemaError::CommonTypesNotFound(_))));
}

#[test]
fn schema_refs_from_another_spec_do_not_panic() {
    let s = spec();
    let foreign = SchemaRef { node: usize::MAX, definition: None, reference: None };
    assert_eq!(s.validate(&foreign, &json!({})).unwrap_err().len(), 1);
}

/// The real spec: every discriminator value is unique under its base, and the
/// hierarchies the SQL workflow depends on resolve as expected.
#[test]
fn real_spec_discriminator_index() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/azure-specs/recoveryservicesbackup/2026-10-01/bms.json"));
    let s = Spec::load(path).expect("bms.json loads (../shared beside the checkout)");
    let c = &s.inner;
    assert!(s.discriminator_conflicts().is_empty(), "{:?}", s.discriminator_conflicts());
    let base = c.definitions["ProtectedItem"];
    let sql = c.definitions["AzureVmWorkloadSQLDatabaseProtectedItem"];
    assert_eq!(c.subtypes[&base].get("AzureVmWorkloadSQLDatabase"), Some(&sql));
    let container = c.definitions["ProtectionContainer"];
    let protectable = c.definitions["ProtectableContainer"];
    assert_ne!(c.subtypes[&container]["VMAppContainer"], c.subtypes[&protectable]["VMAppContainer"]);
}
