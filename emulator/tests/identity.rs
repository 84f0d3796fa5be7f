//! End-to-end checks of the simulated identity endpoints, driven over real HTTP(S) the way
//! `azure_identity` drives them (same paths, query parameters, headers and form bodies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlvm_backup_emulator::identity::{ClientRegistration, Identity, IdentityOptions};
use sqlvm_backup_emulator::tls::self_signed_server_config;

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const SECRET: &str = "s3cr3t-value-never-printed";
const IDENTITY_HEADER: &str = "identity-header-never-printed";
const ARM: &str = "https://management.azure.com";

fn options() -> IdentityOptions {
    IdentityOptions {
        identity_header: IDENTITY_HEADER.to_owned(),
        clients: vec![ClientRegistration { tenant_id: TENANT.to_owned(), client_id: CLIENT.to_owned(), client_secret: SECRET.to_owned() }],
        ..IdentityOptions::default()
    }
}

async fn serve(identity: &Arc<Identity>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = identity.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Builds the MSI URL exactly as azure_identity does: endpoint + api-version + resource.
fn msi_url(base: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{base}/msi/token")).unwrap();
    url.query_pairs_mut().append_pair("api-version", "2019-08-01").append_pair("resource", ARM).extend_pairs(extra);
    url.into()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn post_form(url: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let rsp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    (rsp.status().as_u16(), rsp.json().await.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn msi_token_with_identity_header_is_accepted_by_arm() {
    let identity = Identity::new(options());
    let base = format!("http://{}", serve(&identity).await);
    let rsp = reqwest::Client::new()
        .get(msi_url(&base, &[]))
        .header("metadata", "true")
        .header("x-identity-header", IDENTITY_HEADER)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    let expires_on = body["expires_on"].as_str().expect("expires_on is a string");
    assert!(!expires_on.is_empty() && expires_on.bytes().all(|b| b.is_ascii_digit()));
    let expires_on: i64 = expires_on.parse().unwrap();
    assert!((expires_on - Utc::now().timestamp() - 3600).abs() < 5);
    assert_eq!(body["resource"], ARM);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["client_id"], options().managed_identity_client_id);

    let token = body["access_token"].as_str().unwrap();
    let principal = identity.check_arm_bearer(Some(&bearer(token)), Utc::now()).unwrap();
    assert_eq!(principal.client_id, options().managed_identity_client_id);
    assert_eq!(principal.object_id, identity.managed_identity_object_id());
    assert_eq!(principal.audience, ARM);
}

#[tokio::test]
async fn msi_header_name_is_case_insensitive_and_user_assigned_ids_are_checked() {
    let identity = Identity::new(options());
    let base = format!("http://{}", serve(&identity).await);
    let client = reqwest::Client::new();
    let get = |extra: Vec<(&'static str, String)>| {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        client.get(msi_url(&base, &extra)).header("X-IDENTITY-HEADER", IDENTITY_HEADER).send()
    };
    let oid = identity.managed_identity_object_id();
    let mi_client = options().managed_identity_client_id;
    assert_eq!(get(vec![]).await.unwrap().status(), 200);
    assert_eq!(get(vec![("client_id", mi_client)]).await.unwrap().status(), 200);
    assert_eq!(get(vec![("object_id", oid.clone())]).await.unwrap().status(), 200);
    assert_eq!(get(vec![("principal_id", oid)]).await.unwrap().status(), 200);
    assert_eq!(get(vec![("msi_res_id", "/subscriptions/x".into())]).await.unwrap().status(), 200);
    assert_eq!(get(vec![("client_id", "other".into())]).await.unwrap().status(), 400);
    assert_eq!(get(vec![("object_id", "other".into())]).await.unwrap().status(), 400);
}

#[tokio::test]
async fn msi_rejects_bad_header_and_bad_query() {
    let identity = Identity::new(options());
    let base = format!("http://{}", serve(&identity).await);
    let client = reqwest::Client::new();

    for header in [None, Some("wrong"), Some("")] {
        let mut req = client.get(msi_url(&base, &[]));
        if let Some(h) = header {
            req = req.header("x-identity-header", h);
        }
        let rsp = req.send().await.unwrap();
        assert_eq!(rsp.status(), 401, "{header:?}");
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["statusCode"], 401);
        assert!(!body.to_string().contains(IDENTITY_HEADER));
    }

    for query in [
        "resource=https://management.azure.com",
        "api-version=2019-08-01",
        "api-version=2017-09-01&resource=x",
        "api-version=2019-08-01&resource=",
        "%ff%zz&&=",
    ] {
        let rsp = client.get(format!("{base}/msi/token?{query}")).header("x-identity-header", IDENTITY_HEADER).send().await.unwrap();
        assert_eq!(rsp.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn client_credentials_with_secret() {
    let identity = Identity::new(options());
    let url = format!("http://{}/{TENANT}/oauth2/v2.0/token", serve(&identity).await);
    let scope = format!("{ARM}/.default");
    let request = |secret: &'static str| {
        let scope = scope.clone();
        let url = url.clone();
        async move {
            let pairs = [("client_id", CLIENT), ("client_secret", secret), ("grant_type", "client_credentials"), ("scope", scope.as_str())];
            post_form(&url, &pairs).await
        }
    };

    let (status, body) = request(SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let principal = identity.check_arm_bearer(Some(&bearer(token)), Utc::now()).unwrap();
    assert_eq!((principal.client_id.as_str(), principal.tenant_id.as_str()), (CLIENT, TENANT));
    assert_eq!(principal.audience, ARM);

    let (status, body) = request("wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"][0], 7000215);
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000215:"));
    assert!(!body.to_string().contains(SECRET));
}

#[tokio::test]
async fn client_credentials_errors() {
    let identity = Identity::new(options());
    let base = format!("http://{}", serve(&identity).await);
    let url = format!("{base}/{TENANT}/oauth2/v2.0/token");
    let scope = "https://management.azure.com/.default";

    let other_tenant = format!("{base}/other-tenant/oauth2/v2.0/token");
    let pairs = [("client_id", CLIENT), ("client_secret", SECRET), ("grant_type", "client_credentials"), ("scope", scope)];
    let (status, body) = post_form(&other_tenant, &pairs).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")));
    assert_eq!(body["error_codes"][0], 700016);
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(CLIENT) && description.contains("other-tenant"), "{description}");

    let pairs = [("client_id", "unknown"), ("client_secret", SECRET), ("grant_type", "client_credentials"), ("scope", scope)];
    let (status, body) = post_form(&url, &pairs).await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (400, Some(700016)));

    let pairs = [("client_id", CLIENT), ("client_secret", SECRET), ("grant_type", "password"), ("scope", scope)];
    let (status, body) = post_form(&url, &pairs).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));

    for missing in ["client_id", "grant_type", "scope"] {
        let pairs: Vec<_> = [("client_id", CLIENT), ("client_secret", SECRET), ("grant_type", "client_credentials"), ("scope", scope)]
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let (status, body) = post_form(&url, &pairs).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{missing}");
    }

    let pairs = [("client_id", CLIENT), ("client_secret", SECRET), ("grant_type", "client_credentials"), ("scope", ARM)];
    let (status, body) = post_form(&url, &pairs).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));

    // Garbage and oversized bodies get JSON errors, not panics or plain text.
    let rsp = reqwest::Client::new().post(&url).body(vec![0xff, b'%', b'&', b'=']).send().await.unwrap();
    assert_eq!(rsp.status(), 400);
    let rsp = reqwest::Client::new().post(&url).body(vec![b'a'; 1 << 20]).send().await.unwrap();
    assert_eq!(rsp.status(), 413);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn workload_identity_client_assertion() {
    let identity = Identity::new(options());
    let url = format!("http://{}/{TENANT}/oauth2/v2.0/token", serve(&identity).await);
    // Field order as azure_identity's ClientAssertionCredential sends them.
    let with_assertion = |assertion: &'static str| {
        [
            ("client_assertion", assertion),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_id", CLIENT),
            ("grant_type", "client_credentials"),
            ("scope", "https://management.azure.com/.default"),
        ]
    };
    let (status, body) = post_form(&url, &with_assertion("eyJhbGciOi.fake.assertion")).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert!(identity.check_arm_bearer(Some(&bearer(token)), Utc::now()).is_ok());

    let (status, body) = post_form(&url, &with_assertion("")).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
}

#[test]
fn arm_rejects_wrong_audience() {
    let identity = Identity::new(options());
    let (token, _) = identity.issue("https://storage.azure.com", CLIENT, TENANT, Utc::now());
    let err = identity.check_arm_bearer(Some(&bearer(&token)), Utc::now()).unwrap_err();
    assert_eq!((err.status, err.code), (401, "InvalidAuthenticationTokenAudience"));
    assert!(err.message.contains("'https://storage.azure.com'"), "{}", err.message);
    assert!(err.message.ends_with(
        "'https://management.core.windows.net/','https://management.core.windows.net',\
         'https://management.azure.com/','https://management.azure.com'."
    ));
    for aud in ["https://management.azure.com/", "https://management.core.windows.net/"] {
        let (token, _) = identity.issue(aud, CLIENT, TENANT, Utc::now());
        assert!(identity.check_arm_bearer(Some(&bearer(&token)), Utc::now()).is_ok(), "{aud}");
    }
}

#[test]
fn arm_rejects_expired_token() {
    let identity = Identity::new(options());
    let issued = Utc::now() - chrono::Duration::hours(2);
    let (token, expires) = identity.issue(ARM, CLIENT, TENANT, issued);
    assert!(expires < Utc::now());
    let err = identity.check_arm_bearer(Some(&bearer(&token)), Utc::now()).unwrap_err();
    assert_eq!((err.status, err.code), (401, "ExpiredAuthenticationToken"));
    assert!(err.message.starts_with("The access token expiry UTC time '"), "{}", err.message);
    assert!(err.message.contains("is earlier than current UTC time"));
}

#[test]
fn arm_rejects_tampered_and_missing_tokens() {
    let identity = Identity::new(options());
    let (token, _) = identity.issue(ARM, CLIENT, TENANT, Utc::now());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // Re-encode the payload with a different appid but keep the original signature.
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["appid"] = Value::from("attacker");
    parts[1] = engine.encode(claims.to_string());
    let tampered = parts.join(".");
    let err = identity.check_arm_bearer(Some(&bearer(&tampered)), Utc::now()).unwrap_err();
    assert_eq!((err.status, err.code), (401, "InvalidAuthenticationToken"));
    assert_eq!(err.message, "The access token is invalid.");

    let err = identity.check_arm_bearer(None, Utc::now()).unwrap_err();
    assert_eq!(err.code, "AuthenticationFailed");
    assert_eq!(err.message, "Authentication failed. The 'Authorization' header is missing.");
    let err = identity.check_arm_bearer(Some(&format!("Basic {token}")), Utc::now()).unwrap_err();
    assert_eq!(err.code, "AuthenticationFailed");
    assert!(err.message.contains("invalid format"));
}

#[test]
fn debug_output_hides_secrets() {
    let opts = options();
    let printed = format!("{opts:?} {:?} {:?}", opts.clients[0], Identity::new(opts.clone()));
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(!printed.contains(IDENTITY_HEADER), "{printed}");
    assert!(printed.contains(CLIENT));
    // The default identity header is random and also hidden.
    let default = IdentityOptions::default();
    assert!(!format!("{default:?}").contains(&default.identity_header));
    assert_ne!(default.identity_header, IdentityOptions::default().identity_header);
    assert_eq!(default.token_lifetime, Duration::from_secs(3600));
}

/// Serves `app` over TLS with a minimal accept loop (tokio-rustls + hyper-util, HTTP/1 and 2).
async fn serve_tls(app: axum::Router, config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tokens_over_tls_with_self_signed_certificate() {
    let (config, pem) = self_signed_server_config(&[], None).unwrap();
    let identity = Identity::new(options());
    let addr = serve_tls(identity.router(), config).await;
    let client = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()]).build().unwrap();

    for base in [format!("https://127.0.0.1:{}", addr.port()), format!("https://localhost:{}", addr.port())] {
        let rsp = client.get(msi_url(&base, &[])).header("x-identity-header", IDENTITY_HEADER).send().await.unwrap();
        assert_eq!(rsp.status(), 200, "{base}");
        let body: Value = rsp.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        assert!(identity.check_arm_bearer(Some(&bearer(token)), Utc::now()).is_ok());
    }

    let body = form(&[
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
        ("scope", "https://management.azure.com/.default"),
    ]);
    let rsp = client
        .post(format!("https://127.0.0.1:{}/{TENANT}/oauth2/v2.0/token", addr.port()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);

    // A client that does not trust the certificate must fail the handshake.
    let untrusting = reqwest::Client::builder().tls_certs_only(Vec::<reqwest::Certificate>::new()).build().unwrap();
    assert!(untrusting.get(msi_url(&format!("https://127.0.0.1:{}", addr.port()), &[])).send().await.is_err());
}
