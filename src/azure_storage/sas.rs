//! Account shared access signatures, signed in process with the account key.
//!
//! Why sign ourselves: the Azure SDK for Rust 1.x authenticates with Entra ID tokens only. It has
//! no shared-key policy and no connection strings, and `azure_storage_sas` builds only
//! user-delegation SAS, which needs an Entra login. Azurite over plain http cannot take a bearer
//! token (the SDK refuses one on http, and Azurite's OAuth mode needs https), so the emulator is
//! reached with an account SAS in the query string and no credential. The algorithm is small and
//! documented: <https://learn.microsoft.com/rest/api/storageservices/create-account-sas>.

use chrono::{DateTime, SecondsFormat, Utc};

use super::error::StorageError;

/// The service version the signature is built for (`sv`), and the `x-ms-version` every request
/// of these clients sends. Azurite 3.35.0, the last release that runs on Node 20, knows this
/// version; the SDK's own default (2026-04-06) is newer and Azurite would answer 400 without
/// `--skipApiVersionCheck`.
pub const STORAGE_API_VERSION: &str = "2025-11-05";

/// Services the signature grants (`ss`): blob and queue.
pub const SAS_SERVICES: &str = "bq";
/// Resource types (`srt`): service, container (queue), object (blob, message).
pub const SAS_RESOURCE_TYPES: &str = "sco";
/// Permissions (`sp`): read, write, delete, list, add, create, update, process. Everything the
/// queue and blob clients do, nothing more (no tags, filters or immutability).
pub const SAS_PERMISSIONS: &str = "rwdlacup";
/// Protocols (`spr`): http is allowed so that the same signature works against Azurite.
pub const SAS_PROTOCOLS: &str = "https,http";

/// An account SAS for `account`, valid until `expiry` (rounded down to the second), as a query
/// string without the leading `?`, with the values percent-encoded.
///
/// `key_base64` is the account key as the portal shows it. Errors `Config` when the account is
/// empty or the key is not base64; the key never appears in an error.
pub fn account_sas(account: &str, key_base64: &str, expiry: DateTime<Utc>) -> Result<String, StorageError> {
    if account.is_empty() {
        return Err(StorageError::Config("the storage account name is empty".into()));
    }
    let se = expiry.to_rfc3339_opts(SecondsFormat::Secs, true);
    let sts = string_to_sign(account, &se);
    let sig = azure_core::hmac::hmac_sha256(&sts, &azure_core::credentials::Secret::new(key_base64.to_string()))
        .map_err(|_| StorageError::Config(format!("the account key of {account} is not valid base64")))?;
    Ok(url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", STORAGE_API_VERSION)
        .append_pair("ss", SAS_SERVICES)
        .append_pair("srt", SAS_RESOURCE_TYPES)
        .append_pair("sp", SAS_PERMISSIONS)
        .append_pair("se", &se)
        .append_pair("spr", SAS_PROTOCOLS)
        .append_pair("sig", &sig)
        .finish())
}

/// The string-to-sign of an account SAS for service versions 2020-12-06 and later: account,
/// permissions, services, resource types, start, expiry, IP range, protocols, version and
/// encryption scope, each followed by a newline (the empty fields stay empty).
fn string_to_sign(account: &str, expiry: &str) -> String {
    format!("{account}\n{SAS_PERMISSIONS}\n{SAS_SERVICES}\n{SAS_RESOURCE_TYPES}\n\n{expiry}\n\n{SAS_PROTOCOLS}\n{STORAGE_API_VERSION}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn expiry() -> DateTime<Utc> {
        // The milliseconds are dropped: `se` has second precision.
        DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678Z").expect("date").with_timezone(&Utc)
    }

    #[test]
    fn string_to_sign_follows_the_documented_layout() {
        assert_eq!(
            string_to_sign("devstoreaccount1", "2030-01-02T03:04:05Z"),
            "devstoreaccount1\nrwdlacup\nbq\nsco\n\n2030-01-02T03:04:05Z\n\nhttps,http\n2025-11-05\n\n"
        );
    }

    /// The expected signature was computed independently with Python:
    /// `base64(hmac.new(b64decode(key), sts.encode(), sha256).digest())`.
    #[test]
    fn signature_matches_a_known_vector() {
        let sas = account_sas("devstoreaccount1", DEV_KEY, expiry()).expect("sas");
        assert_eq!(
            sas,
            "sv=2025-11-05&ss=bq&srt=sco&sp=rwdlacup&se=2030-01-02T03%3A04%3A05Z&spr=https%2Chttp\
             &sig=%2BqDv8NoPqRd%2F2rkJAljILUxIv3c4gHTciRM246gfDG4%3D"
        );
        let sig: String = url::form_urlencoded::parse(sas.as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned()).expect("sig");
        assert_eq!(sig, "+qDv8NoPqRd/2rkJAljILUxIv3c4gHTciRM246gfDG4=");
    }

    #[test]
    fn bad_settings_are_config_errors_without_the_key() {
        let e = account_sas("acct", "not base64!!", expiry()).expect_err("bad key");
        assert!(matches!(e, StorageError::Config(_)), "{e:?}");
        assert!(!e.to_string().contains("not base64!!"), "{e}");
        assert!(matches!(account_sas("", DEV_KEY, expiry()), Err(StorageError::Config(_))));
    }
}
