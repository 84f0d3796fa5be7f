//! Query strings: `api-version`, `$filter` and `$skipToken` (azure-backup-api.md §6).

use crate::error::ArmError;
use percent_encoding::percent_decode;

/// Backup RP api-versions real clients send, from the seed document's 2016-12-01 to the current
/// SDK's 2026-10-01 (stable and the previews the SDKs and spec examples name).
pub const BACKUP_API_VERSIONS: &[&str] = &[
    "2016-06-01",
    "2016-08-10",
    "2016-12-01",
    "2017-07-01",
    "2017-07-01-preview",
    "2018-12-20",
    "2019-05-13",
    "2019-05-13-preview",
    "2019-06-15",
    "2020-02-02",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-02-10",
    "2021-03-01",
    "2021-04-01",
    "2021-06-01",
    "2021-07-01",
    "2021-08-01",
    "2021-10-01",
    "2021-12-01",
    "2022-01-01",
    "2022-02-01",
    "2022-03-01",
    "2022-04-01",
    "2022-06-01-preview",
    "2022-09-01-preview",
    "2022-09-30-preview",
    "2022-10-01",
    "2023-01-01",
    "2023-02-01",
    "2023-04-01",
    "2023-06-01",
    "2023-08-01",
    "2024-01-01",
    "2024-02-01",
    "2024-04-01",
    "2024-04-30-preview",
    "2024-07-30-preview",
    "2024-10-01",
    "2024-11-01-preview",
    "2025-01-01",
    "2025-02-01",
    "2025-08-01",
    "2026-01-01",
    "2026-01-31-preview",
    "2026-02-01",
    "2026-03-31-preview",
    "2026-07-01",
    "2026-08-01",
    "2026-08-31-preview",
    "2026-10-01",
];

/// Compute api-versions accepted for the VM reads.
pub const COMPUTE_API_VERSIONS: &[&str] = &[
    "2019-07-01",
    "2020-06-01",
    "2020-12-01",
    "2021-03-01",
    "2021-07-01",
    "2021-11-01",
    "2022-03-01",
    "2022-08-01",
    "2022-11-01",
    "2023-03-01",
    "2023-07-01",
    "2023-09-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-04-01",
    "2025-11-01",
];

/// Decoded query parameters, keys compared case-insensitively.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parse a raw query string; `+` means space as in forms (the service accepts both).
    pub fn parse(raw: &str) -> Result<Query, ArmError> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let dec = |s: &str| -> Result<String, ArmError> {
                let s = s.replace('+', " ");
                percent_decode(s.as_bytes())
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| ArmError::bad_request("InvalidQueryParameter", "The query string is not valid percent-encoded UTF-8."))
            };
            pairs.push((dec(k)?.to_ascii_lowercase(), dec(v)?));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    /// The api-version, checked against the versions the provider knows (ARM's own codes).
    pub fn api_version(&self, known: &[&str], provider: &str) -> Result<String, ArmError> {
        let v = self.get("api-version").filter(|v| !v.is_empty()).ok_or_else(|| {
            ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
        if known.iter().any(|k| k.eq_ignore_ascii_case(v)) {
            Ok(v.to_string())
        } else {
            Err(ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!("The api-version '{v}' is invalid. The supported versions are '{}'. ({provider})", known.join(",")),
            ))
        }
    }
}

/// A `$filter`: `key eq 'value'` terms joined by `and`, everything case-insensitive.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    terms: Vec<(String, String)>,
}

impl Filter {
    /// Parse a filter, accepting only the keys in `allowed` (lower case).
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Filter, ArmError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(Filter::default()) };
        let bad = |why: &str| {
            ArmError::bad_request(
                "BMSUserErrorInvalidFilter",
                format!("Invalid $filter '{raw}': {why}. Use key eq 'value' terms joined by 'and'."),
            )
        };
        let mut terms = Vec::new();
        let mut rest = raw;
        loop {
            rest = rest.trim_start();
            let (k, after_key) = rest.split_once(char::is_whitespace).ok_or_else(|| bad("incomplete term"))?;
            let after_key = after_key.trim_start();
            let after_op = after_key
                .strip_prefix("eq")
                .or_else(|| after_key.strip_prefix("EQ"))
                .or_else(|| after_key.strip_prefix("Eq"))
                .ok_or_else(|| bad("only the eq operator is supported"))?;
            let after_op = after_op.trim_start();
            let body = after_op.strip_prefix('\'').ok_or_else(|| bad("values must be quoted with '"))?;
            let end = body.find('\'').ok_or_else(|| bad("unterminated quote"))?;
            let key = k.to_ascii_lowercase();
            if !allowed.contains(&key.as_str()) {
                return Err(bad(&format!("unsupported key '{k}' (supported: {})", allowed.join(", "))));
            }
            terms.push((key, body[..end].to_string()));
            rest = body[end + 1..].trim_start();
            if rest.is_empty() {
                break;
            }
            let (word, tail) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
            if !word.eq_ignore_ascii_case("and") || tail.trim().is_empty() {
                return Err(bad("terms must be joined by 'and'"));
            }
            rest = tail;
        }
        Ok(Filter { terms })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.terms.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    /// True when the term is absent or equals `value` case-insensitively.
    pub fn allows(&self, k: &str, value: &str) -> bool {
        self.get(k).is_none_or(|v| v.eq_ignore_ascii_case(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_case_insensitively() {
        let f = Filter::parse(
            Some("backupManagementType eq 'AzureWorkload' AND workloadType EQ 'SQLDatabase'"),
            &["backupmanagementtype", "workloadtype"],
        )
        .unwrap();
        assert!(f.allows("workloadtype", "SQLDataBase"));
        assert!(f.allows("backupmanagementtype", "azureworkload"));
        assert!(!f.allows("backupmanagementtype", "AzureIaasVM"));
    }

    #[test]
    fn junk_filters_are_rejected() {
        for junk in [
            "nonsense",
            "x eq y",
            "backupManagementType ne 'a'",
            "backupManagementType eq 'a' or status eq 'b'",
            "backupManagementType eq 'a",
            "foo eq 'a'",
            "backupManagementType eq 'a' and",
        ] {
            let e = Filter::parse(Some(junk), &["backupmanagementtype", "status"]).unwrap_err();
            assert_eq!(e.status, 400, "{junk}");
        }
    }

    #[test]
    fn api_version_is_required_and_checked() {
        let q = Query::parse("").unwrap();
        assert_eq!(q.api_version(BACKUP_API_VERSIONS, "x").unwrap_err().code, "MissingApiVersionParameter");
        let q = Query::parse("api-version=2099-01-01").unwrap();
        assert_eq!(q.api_version(BACKUP_API_VERSIONS, "x").unwrap_err().code, "InvalidApiVersionParameter");
        let q = Query::parse("api-version=2016-12-01&%24filter=backupManagementType%20eq%20%27AzureWorkload%27").unwrap();
        assert_eq!(q.api_version(BACKUP_API_VERSIONS, "x").unwrap(), "2016-12-01");
        assert_eq!(q.get("$filter"), Some("backupManagementType eq 'AzureWorkload'"));
    }
}
