//! The documented example configuration parses and validates, and secrets never print.

#[test]
fn example_configuration_is_valid_and_secrets_do_not_print() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.example.json");
    let cfg = sqlvm_backup::config::Config::load(&path).expect("docs/config.example.json parses");
    cfg.api.validate().expect("api section is valid");
    cfg.events.as_ref().expect("events").validate().expect("events section is valid");
    let scheduler = cfg.scheduler.as_ref().expect("scheduler");
    scheduler.validate().expect("plans are valid");
    assert_eq!(scheduler.plans.len(), 2);
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("replace-with"), "a secret leaked into Debug output: {shown}");
}

#[test]
fn unknown_fields_are_refused_with_the_file_name() {
    let dir = std::env::temp_dir().join(format!("sqlvm-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(&path, r#"{"arm": {"credential": {"kind": "azureCli"}}, "api": {"auth": {"mode": "apiKey", "keys": []}}, "bogus": 1}"#)
        .unwrap();
    let err = sqlvm_backup::config::Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("bogus"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
