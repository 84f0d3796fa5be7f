//! Self-signed TLS for the simulator.
//!
//! Why: `azure_identity` refuses an authority host (`AZURE_AUTHORITY_HOST`) that is not HTTPS,
//! and ARM clients are written against `https://` endpoints. The simulator therefore mints a
//! throwaway certificate at start-up and can write it out as PEM so clients (the worker,
//! tests, curl) can trust exactly that certificate and nothing else.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A SAN is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name '{name}': not an IP address or DNS name")]
    InvalidSan { name: String },
    /// Key generation or certificate signing failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls rejected the certificate/key pair.
    #[error("rustls configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate PEM could not be written.
    #[error("cannot write certificate to {path}: {source}")]
    WriteCert { path: PathBuf, source: std::io::Error },
}

/// SANs used when the caller passes none: what local clients dial.
const DEFAULT_SANS: [&str; 2] = ["localhost", "127.0.0.1"];

/// Builds a rustls `ServerConfig` with a fresh self-signed certificate for `sans`
/// (default `localhost` and `127.0.0.1`), offering ALPN `h2` and `http/1.1`.
///
/// When `cert_out` is given the certificate PEM is written there so clients can trust it;
/// the PEM is also returned. The private key never leaves memory.
pub fn self_signed_server_config(sans: &[String], cert_out: Option<&Path>) -> Result<(Arc<ServerConfig>, String), TlsError> {
    install_default_provider();
    let params = certificate_params(sans)?;
    let key_pair = KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    let cert_pem = cert.pem();
    if let Some(path) = cert_out {
        std::fs::write(path, &cert_pem).map_err(|source| TlsError::WriteCert { path: path.to_path_buf(), source })?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let mut config = ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert_pem))
}

/// rustls needs a process-wide crypto provider when more than one could be compiled in;
/// aws-lc-rs is the one this workspace enables. Losing the race to another installer is
/// fine: any installed provider works.
fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// IP literals must become `iPAddress` SANs: TLS clients match an IP host only against IP
/// SANs, never against a DNS SAN spelling the same address.
fn certificate_params(sans: &[String]) -> Result<CertificateParams, TlsError> {
    let names: Vec<String> = if sans.is_empty() { DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect() } else { sans.to_vec() };
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|name| san(name)).collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sqlvm-backup emulator");
    params.distinguished_name = dn;
    Ok(params)
}

fn san(name: &str) -> Result<SanType, TlsError> {
    // Accept bracketed IPv6 as people write it in URLs ("[::1]").
    let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // Validate with the same rules TLS clients apply (rcgen only checks for ASCII), so a typo
    // fails here rather than as an opaque handshake error later.
    let invalid = || TlsError::InvalidSan { name: name.to_owned() };
    DnsName::try_from(name).map_err(|_| invalid())?;
    let ia5 = name.to_owned().try_into().map_err(|_| invalid())?;
    Ok(SanType::DnsName(ia5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_sans_are_ip_addresses() {
        let params = certificate_params(&[]).unwrap();
        assert!(matches!(params.subject_alt_names[0], SanType::DnsName(_)));
        assert!(matches!(params.subject_alt_names[1], SanType::IpAddress(_)));
        let params = certificate_params(&["[::1]".to_owned()]).unwrap();
        assert!(matches!(params.subject_alt_names[0], SanType::IpAddress(IpAddr::V6(_))));
    }

    #[test]
    fn invalid_san_is_an_error() {
        for bad in ["bad name", "bäd.example", ""] {
            let err = certificate_params(&[bad.to_owned()]).unwrap_err();
            assert!(matches!(err, TlsError::InvalidSan { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn builds_config_and_writes_pem() {
        let dir = std::env::temp_dir().join(format!("sqlvm-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cert.pem");
        let (config, pem) = self_signed_server_config(&[], Some(&path)).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_cert_path_is_an_error() {
        let path = std::env::temp_dir().join("no-such-dir-sqlvm").join("x").join("c.pem");
        let err = self_signed_server_config(&[], Some(&path)).unwrap_err();
        assert!(matches!(err, TlsError::WriteCert { .. }));
    }
}
