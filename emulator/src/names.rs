//! ARM ids and Backup "native names", built in one place.
//!
//! The service normalises casing in what it returns and compares names case-insensitively in
//! what it receives (azure-backup-api.md §1.3). Every map in the world is keyed by
//! [`key`] (ASCII lower case) and every rendered name comes from the functions below, so the
//! canonical casing is decided once.

/// The case-insensitive key of an ARM name or id.
pub fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub fn vm_id(sub: &str, rg: &str, vm: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}")
}

/// Vault id as the Backup RP writes it in bodies and headers (the seed document shows the
/// provider namespace in lower case).
pub fn vault_id(sub: &str, rg: &str, vault: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/microsoft.recoveryservices/vaults/{vault}")
}

/// `VMAppContainer;Compute;{rg};{vm}`: the name the service gives a SQL VM's container.
pub fn container_name(vm_rg: &str, vm: &str) -> String {
    format!("VMAppContainer;Compute;{vm_rg};{vm}")
}

/// Protectable database item name, lower case as the service lists it.
pub fn protectable_db_name(instance: &str, db: &str) -> String {
    format!("sqldatabase;{};{}", instance.to_ascii_lowercase(), db.to_ascii_lowercase())
}

/// Protectable SQL instance item name.
pub fn protectable_instance_name(instance: &str) -> String {
    format!("sqlinstance;{}", instance.to_ascii_lowercase())
}

/// Protected item name in the service's canonical casing: `SQLDataBase;mssqlserver;msdb`.
pub fn protected_db_name(instance: &str, db: &str) -> String {
    format!("SQLDataBase;{};{}", instance.to_ascii_lowercase(), db.to_ascii_lowercase())
}

/// Parse a `SQLDataBase;{instance};{db}` name in any casing into (instance, db) keys.
pub fn parse_db_item_name(name: &str) -> Option<(String, String)> {
    let mut parts = name.splitn(3, ';');
    let kind = parts.next()?;
    let inst = parts.next()?;
    let db = parts.next()?;
    if !kind.eq_ignore_ascii_case("sqldatabase") || inst.is_empty() || db.is_empty() {
        return None;
    }
    Some((key(inst), key(db)))
}

/// Parse a `SQLInstance;{instance}` name into the instance key.
pub fn parse_instance_item_name(name: &str) -> Option<String> {
    let (kind, inst) = name.split_once(';')?;
    (kind.eq_ignore_ascii_case("sqlinstance") && !inst.is_empty() && !inst.contains(';')).then(|| key(inst))
}

/// Timestamps as the service writes them: seven fractional digits and `Z`.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    // chrono has no seven-digit fraction specifier; .NET ticks are 100 ns.
    format!("{}.{:07}Z", t.format("%Y-%m-%dT%H:%M:%S"), chrono::Timelike::nanosecond(&t) % 1_000_000_000 / 100)
}

/// ISO-8601 duration with seven fractional digits, like `PT9.8782791S`.
pub fn iso_duration(d: chrono::Duration) -> String {
    let micros = d.num_microseconds().unwrap_or(i64::MAX).max(0);
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    out.push_str(&format!("{s}.{:07}S", frac * 10));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_service_casing() {
        assert_eq!(protected_db_name("MSSQLSERVER", "msdb"), "SQLDataBase;mssqlserver;msdb");
        assert_eq!(protectable_db_name("MSSQLSERVER", "SalesDB"), "sqldatabase;mssqlserver;salesdb");
        assert_eq!(parse_db_item_name("sqldatabase;MSSQLSERVER;msdb"), Some(("mssqlserver".into(), "msdb".into())));
        assert_eq!(parse_db_item_name("SQLInstance;x"), None);
        assert_eq!(parse_instance_item_name("SQLInstance;MSSQLSERVER"), Some("mssqlserver".into()));
    }

    #[test]
    fn timestamps_have_seven_digits() {
        let t = chrono::DateTime::parse_from_rfc3339("2018-05-28T08:33:14.7304852Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(timestamp(t), "2018-05-28T08:33:14.7304852Z");
    }

    #[test]
    fn durations_look_like_the_services() {
        assert_eq!(iso_duration(chrono::Duration::milliseconds(9878)), "PT9.8780000S");
        assert_eq!(iso_duration(chrono::Duration::seconds(3723)), "PT1H2M3.0000000S");
    }
}
