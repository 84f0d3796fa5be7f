//! The schema validator against the real Azure Backup swagger: Microsoft's own
//! examples, the seed document's SQL bodies, and one negative case per rule.
//!
//! The specs are reference data outside the repo (`../shared/azure-specs` beside the checkout);
//! they are loaded at run time and never copied.

#[path = "common/seed_bodies.rs"]
mod seed_bodies;
use seed_bodies::SEED_PROTECTED_ITEM;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};
use sqlvm_backup_emulator::schema::{Spec, Violation};

const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/azure-specs/recoveryservicesbackup");

/// Example folders: the pinned version first, then the older folders whose
/// files the 2026-02-01 snapshot had to borrow (see the specs' README).
const EXAMPLE_VERSIONS: [&str; 4] = ["2026-10-01", "2026-02-01", "2026-01-01", "2025-08-01"];

/// Examples whose relative path is not referenced from the 2026-10-01 bms.json
/// `x-ms-examples`, with their operationId from the README's "Example →
/// operation map". Empty: every saved example is still referenced under the
/// same `./examples/<Folder>/<File>.json` path.
const LEFTOVER_EXAMPLE_OPERATIONS: &[(&str, &str)] = &[];

/// A genuine mismatch between a Microsoft example and the schema, with the
/// example as the one at fault. The validator is not loosened for these; the
/// test fails if one disappears (so the table stays true) or a new one appears.
struct Deviation {
    /// `<version>/examples/...` relative to the recoveryservicesbackup folder.
    file: &'static str,
    status: u16,
    /// JSON pointer of the violation inside the response body.
    path: &'static str,
    /// What the example has vs what the schema says.
    reason: &'static str,
}

const KNOWN_EXAMPLE_DEVIATIONS: &[Deviation] = &[];

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load(&Path::new(SPECS).join("2026-10-01/bms.json")).expect("bms.json 2026-10-01 loads"))
}

fn lenient() -> Spec {
    spec().clone().strict_unknown_properties(false)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `./examples/<rel>` -> operationId, from a bms.json's `x-ms-examples`.
fn example_operations(bms: &Value) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let paths = bms.get("paths").and_then(Value::as_object).expect("paths");
    for item in paths.values().filter_map(Value::as_object) {
        for op in item.values() {
            let (Some(id), Some(examples)) =
                (op.get("operationId").and_then(Value::as_str), op.get("x-ms-examples").and_then(Value::as_object))
            else {
                continue;
            };
            for example in examples.values() {
                if let Some(r) = example.get("$ref").and_then(Value::as_str) {
                    let previous = map.insert(r.to_owned(), id.to_owned());
                    assert!(previous.is_none_or(|p| p == id), "{r} is an example of two operations");
                }
            }
        }
    }
    map
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

const PROBE: &str = "plantedUndeclaredMember";

/// A copy of `body` with [`PROBE`] added at the root and in `properties` /
/// `value/0/properties` where those are objects; returns the probe pointers.
fn with_probes(body: &Value) -> (Value, Vec<String>) {
    let mut body = body.clone();
    let mut probes = Vec::new();
    for pointer in ["", "/properties", "/value/0/properties"] {
        if let Some(Value::Object(map)) = body.pointer_mut(pointer) {
            map.insert(PROBE.to_owned(), json!(1));
            probes.push(format!("{pointer}/{PROBE}"));
        }
    }
    (body, probes)
}

fn render(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("\n    {v}")).collect()
}

#[test]
fn operation_status_body_from_the_seed_document() {
    let spec = spec();
    let good = json!({
        "id": "x", "name": "x", "status": "Succeeded",
        "startTime": "2018-05-28T11:43:21.6516182Z",
        "endTime": "2018-05-28T11:43:21.6516182Z",
        "properties": {
            "objectType": "OperationStatusJobExtendedInfo",
            "jobId": "c22eca5d-0c1c-48a0-a40d-69bef708d92a"
        }
    });
    assert_eq!(spec.validate_definition("OperationStatus", &good), Ok(()));

    let mut done = good.clone();
    done["status"] = json!("Done");
    let err = spec.validate_definition("OperationStatus", &done).unwrap_err();
    assert_eq!(err.len(), 1, "{}", render(&err));
    assert_eq!(err[0].path, "/status");
    assert!(err[0].message.contains("Succeeded"), "{}", err[0]);
    assert!(err[0].message.contains("modelAsString"), "{}", err[0]);

    let mut nope = good.clone();
    nope["properties"]["objectType"] = json!("Nope");
    let err = spec.validate_definition("OperationStatus", &nope).unwrap_err();
    assert_eq!(err.len(), 1, "{}", render(&err));
    assert_eq!(err[0].path, "/properties/objectType");
    assert!(err[0].message.contains("OperationStatusJobExtendedInfo"), "{}", err[0]);

    let mut bogus = good.clone();
    bogus["bogus"] = json!(1);
    let err = spec.validate_definition("OperationStatus", &bogus).unwrap_err();
    assert_eq!(err.len(), 1, "{}", render(&err));
    assert_eq!(err[0].path, "/bogus");
    assert_eq!(lenient().validate_definition("OperationStatus", &bogus), Ok(()));
}

#[test]
fn every_example_maps_to_an_operation_and_validates() {
    let spec = lenient();
    let strict = spec.clone().strict_unknown_properties(true);
    let current = example_operations(&read_json(&Path::new(SPECS).join("2026-10-01/bms.json")));
    let previous = example_operations(&read_json(&Path::new(SPECS).join("2026-02-01/bms.json")));

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut used_deviations = BTreeSet::new();
    let mut files_per_version = BTreeMap::new();
    let mut bodies = 0;
    let mut strict_failures = Vec::new();

    for version in EXAMPLE_VERSIONS {
        let root = Path::new(SPECS).join(version).join("examples");
        let mut files = Vec::new();
        json_files(&root, &mut files);
        files.sort();
        files_per_version.insert(version, files.len());
        for path in files {
            let rel = path.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/");
            let name = format!("{version}/examples/{rel}");
            let key = format!("./examples/{rel}");
            let operation = current
                .get(&key)
                .map(String::as_str)
                .or_else(|| LEFTOVER_EXAMPLE_OPERATIONS.iter().find(|(f, _)| *f == name).map(|(_, op)| *op));
            let Some(operation) = operation else {
                failures.push(format!("{name}: no operation references this example"));
                continue;
            };
            // An older folder's file is what the 2026-02-01 spec referenced;
            // it must belong to the same operation there.
            if version != "2026-10-01"
                && let Some(old) = previous.get(&key)
            {
                assert_eq!(old, operation, "{name}: operation changed between spec versions");
            }
            let example = read_json(&path);
            let responses = example.get("responses").and_then(Value::as_object).expect("responses");
            for (status, response) in responses {
                let status: u16 = status.parse().unwrap_or_else(|_| panic!("{name}: status {status}"));
                let Some(body) = response.get("body") else {
                    // No body in the example: the status must still be declared.
                    match spec.response_schema(operation, status) {
                        Ok(_) => report.push(format!("ok    {name} {status} (no body) -> {operation}")),
                        Err(e) => failures.push(format!("{name} {status}: {e}")),
                    }
                    continue;
                };
                bodies += 1;
                // The validator must actually reach into this body: plant an
                // undeclared member at the top and in the resource properties,
                // and expect strict mode to find each one.
                let (probed, probes) = with_probes(body);
                let found: Vec<String> =
                    strict.validate_response(operation, status, &probed).err().unwrap_or_default().into_iter().map(|v| v.path).collect();
                for probe in &probes {
                    if !found.contains(probe) {
                        failures.push(format!("{name} {status}: planted {probe} not reported"));
                    }
                }
                if let Err(v) = strict.validate_response(operation, status, body) {
                    strict_failures.push(format!("{name} {status}: {} undeclared/other", v.len()));
                }
                let violations = match spec.validate_response(operation, status, body) {
                    Ok(()) => {
                        report.push(format!("ok    {name} {status} -> {operation}"));
                        continue;
                    }
                    Err(v) => v,
                };
                let mut unexplained = Vec::new();
                for v in &violations {
                    match KNOWN_EXAMPLE_DEVIATIONS.iter().position(|d| d.file == name && d.status == status && d.path == v.path) {
                        Some(i) => {
                            used_deviations.insert(i);
                        }
                        None => unexplained.push(v.clone()),
                    }
                }
                if unexplained.is_empty() {
                    report.push(format!("known {name} {status} -> {operation}{}", render(&violations)));
                } else {
                    failures.push(format!("{name} {status} -> {operation}:{}", render(&unexplained)));
                }
            }
        }
    }
    for (i, d) in KNOWN_EXAMPLE_DEVIATIONS.iter().enumerate() {
        if !used_deviations.contains(&i) {
            failures.push(format!("stale KNOWN_EXAMPLE_DEVIATIONS entry {} {} {} ({})", d.file, d.status, d.path, d.reason));
        }
    }
    println!("{}", report.join("\n"));
    println!(
        "examples per folder: {files_per_version:?}; {bodies} bodies validated; \
         strict mode would reject {}:\n  {}",
        strict_failures.len(),
        strict_failures.join("\n  ")
    );
    for version in EXAMPLE_VERSIONS {
        assert!(files_per_version[version] > 0, "no examples found for {version}");
    }
    assert!(failures.is_empty(), "example failures:\n{}", failures.join("\n"));
}

/// The completed container from the seed document (GET operationResults after
/// registering the VM).
const SEED_CONTAINER: &str = r#"{
  "id": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
  "name": "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
  "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers",
  "properties": {
    "sourceResourceId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0",
    "lastUpdatedTime": "2018-05-28T08:33:14.7304852Z",
    "extendedInfo": {
      "hostServerName": "sqlserver-0.shopkart.com",
      "inquiryInfo": {
        "status": "Success",
        "errorDetail": {
          "code": "Success",
          "message": "",
          "recommendations": [
            ""
          ]
        },
        "inquiryDetails": [
          {
            "type": "SQL",
            "itemCount": 5,
            "inquiryValidation": {
              "status": "Success",
              "errorDetail": {
                "code": "Success",
                "message": "",
                "recommendations": [
                  ""
                ]
              }
            }
          }
        ]
      }
    },
    "friendlyName": "sqlserver-0",
    "backupManagementType": "AzureWorkload",
    "registrationStatus": "Registered",
    "healthStatus": "Healthy",
    "containerType": "VMAppContainer",
    "protectableObjectType": "VMAppContainer"
  }
}"#;

#[test]
fn seed_document_sql_bodies() {
    let item: Value = serde_json::from_str(SEED_PROTECTED_ITEM).expect("fixture is JSON");
    let container: Value = serde_json::from_str(SEED_CONTAINER).expect("fixture is JSON");
    let lenient = lenient();
    assert_eq!(lenient.validate_definition("ProtectedItemResource", &item), Ok(()));
    assert_eq!(lenient.validate_definition("ProtectionContainerResource", &container), Ok(()));
    // Strict mode: both also pass — every field the 2018 document shows is
    // still declared on AzureVmWorkloadSQLDatabaseProtectedItem /
    // AzureVMAppContainerProtectionContainer (and their allOf bases).
    let strict = spec();
    assert_eq!(strict.validate_definition("ProtectedItemResource", &item), Ok(()));
    assert_eq!(strict.validate_definition("ProtectionContainerResource", &container), Ok(()));
    // And as the responses they are in the SQL workflow.
    assert_eq!(strict.validate_response("ProtectedItems_Get", 200, &item), Ok(()));
    assert_eq!(strict.validate_response("ProtectionContainers_Get", 200, &container), Ok(()));
}

/// Assert exactly one violation, at `path`, whose message contains `needle`.
fn expect_one(result: Result<(), Vec<Violation>>, path: &str, needle: &str) {
    let err = result.expect_err("a violation");
    assert_eq!(err.len(), 1, "expected one violation at {path}:{}", render(&err));
    assert_eq!(err[0].path, path, "{}", err[0]);
    assert!(err[0].message.contains(needle), "{:?} lacks {needle:?}", err[0].message);
}

#[test]
fn each_rule_fires_on_the_real_spec() {
    let spec = spec();
    let status = |extra: Value| {
        let mut body = json!({"id": "x", "status": "InProgress", "startTime": "0001-01-01T00:00:00Z"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        spec.validate_definition("OperationStatus", &body)
    };
    // Wrong type.
    expect_one(status(json!({"name": 5})), "/name", "expected string, found integer");
    // Missing required (the discriminator of the extended info).
    expect_one(status(json!({"properties": {"jobId": "j"}})), "/properties/objectType", "required");
    // Required property present but null.
    expect_one(status(json!({"properties": {"objectType": null}})), "/properties/objectType", "null");
    // Optional property null: accepted.
    assert_eq!(status(json!({"endTime": null, "error": null})), Ok(()));
    // Enum miss.
    expect_one(status(json!({"status": "done"})), "/status", "OperationStatusValues");
    // Bad date-times.
    expect_one(status(json!({"endTime": "2018-05-28 11:43:21"})), "/endTime", "date-time");
    expect_one(status(json!({"endTime": "2018-05-28T11:43:21.123456789Z"})), "/endTime", "date-time");
    // Bad duration (a .NET TimeSpan string instead of ISO 8601).
    let job = |duration: &str| json!({"properties": {"jobType": "AzureWorkloadJob", "duration": duration, "status": "Completed"}});
    assert_eq!(spec.validate_definition("JobResource", &job("PT9.8782791S")), Ok(()));
    expect_one(spec.validate_definition("JobResource", &job("00:00:09.87")), "/properties/duration", "duration");
    // Unknown discriminator.
    expect_one(
        spec.validate_definition("ProtectedItemResource", &json!({"properties": {"protectedItemType": "Nope"}})),
        "/properties/protectedItemType",
        "AzureVmWorkloadSQLDatabase",
    );
    // Nested path through a list response and a discriminator.
    let list = json!({"value": [
        {"properties": {"protectableItemType": "SQLDataBase", "friendlyName": "msdb"}},
        {"properties": {"protectableItemType": "Bogus"}}
    ], "nextLink": null});
    expect_one(
        spec.validate_response("BackupProtectableItems_List", 200, &list),
        "/value/1/properties/protectableItemType",
        "unknown discriminator value \"Bogus\"",
    );
    // Strict mode sees through allOf and the discriminator: `parentProtectedItem`
    // is declared on the SQL database subtype only.
    let sql = |item_type: &str| json!({"properties": {"protectedItemType": item_type, "parentProtectedItem": "inst"}});
    assert_eq!(spec.validate_definition("ProtectedItemResource", &sql("AzureVmWorkloadSQLDatabase")), Ok(()));
    expect_one(
        spec.validate_definition("ProtectedItemResource", &sql("AzureVmWorkloadSQLInstance")),
        "/properties/parentProtectedItem",
        "not declared in AzureVmWorkloadSQLInstanceProtectedItem",
    );
    // Integers.
    let container = |count: Value| {
        json!({"properties": {"containerType": "VMAppContainer",
            "extendedInfo": {"inquiryInfo": {"inquiryDetails": [{"itemCount": count}]}}}})
    };
    assert_eq!(spec.validate_definition("ProtectionContainerResource", &container(json!(5))), Ok(()));
    expect_one(
        spec.validate_definition("ProtectionContainerResource", &container(json!(5.5))),
        "/properties/extendedInfo/inquiryInfo/inquiryDetails/0/itemCount",
        "integer",
    );
}

#[test]
fn responses_by_operation_and_status() {
    let spec = spec();
    let schema = spec.response_schema("ProtectionContainers_Get", 200).unwrap().unwrap();
    assert_eq!(schema.definition_name(), Some("ProtectionContainerResource"));
    assert_eq!(spec.operation_statuses("ProtectionContainers_Refresh").unwrap(), ["202", "default"]);
    assert!(spec.operation_statuses("Nope_Get").is_none());
    assert!(spec.response_schema("ProtectionContainers_Refresh", 202).unwrap().is_none());
    assert!(spec.response_schema("ProtectionContainers_Refresh", 200).is_err());
    assert!(spec.response_schema("Nope_Get", 200).is_err());

    // Bodiless statuses take `null`; a body there is a violation.
    assert_eq!(spec.validate_response("ProtectionContainers_Refresh", 202, &Value::Null), Ok(()));
    expect_one(spec.validate_response("ProtectionContainers_Refresh", 202, &json!({})), "", "no body");
    // Error codes validate against `default`, the ARM ErrorResponse in types.json.
    let error = json!({"error": {"code": "BMSUserErrorContainerNotFound", "message": "m",
        "details": [{"code": "Inner", "message": "x"}], "additionalInfo": [{"type": "t", "info": {}}]}});
    assert_eq!(spec.validate_response("ProtectionContainers_Get", 404, &error), Ok(()));
    expect_one(
        spec.validate_response("ProtectionContainers_Get", 500, &json!({"error": {"details": [{"code": 1}]}})),
        "/error/details/0/code",
        "expected string",
    );
    expect_one(spec.validate_response("ProtectionContainers_Get", 404, &json!({"code": "X"})), "/code", "not declared");
    // An undeclared success code is not silently an error response.
    expect_one(spec.validate_response("ProtectionContainers_Get", 201, &error), "", "declares no response");
    expect_one(spec.validate_response("Nope_Get", 200, &error), "", "unknown operationId");
    expect_one(spec.validate_definition("NoSuchDefinition", &error), "", "unknown definition");
    assert!(spec.discriminator_conflicts().is_empty(), "{:?}", spec.discriminator_conflicts());
}
