//! Client configuration: the JSON file from HelseID's self-service portal
//! (Selvbetjening), environments, and the authority.
//!
//! # Example
//! ```no_run
//! use helseid::config::ClientConfig;
//!
//! # fn main() -> Result<(), helseid::Error> {
//! // The file as downloaded from Selvbetjening: clientId, authority, scopes, privateJwk.
//! let config = ClientConfig::from_file("helseid-client.json")?;
//! println!("{} at {}", config.client_id(), config.authority());
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::assertion::{self, ClientAssertion, DEFAULT_LIFETIME};
use crate::error::{Error, Result};
use crate::jose::json_error_without_input;
use crate::key::{PrivateJwk, SigningKey};

/// A HelseID environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Environment {
    /// The test environment, `https://helseid-sts.test.nhn.no`.
    Test,
    /// Production, `https://helseid-sts.nhn.no`.
    Prod,
}

impl Environment {
    /// The environment's issuer.
    pub fn issuer(self) -> &'static str {
        match self {
            Environment::Test => "https://helseid-sts.test.nhn.no",
            Environment::Prod => "https://helseid-sts.nhn.no",
        }
    }

    /// The environment's authority.
    pub fn authority(self) -> Authority {
        Authority(Arc::from(self.issuer()))
    }
}

impl FromStr for Environment {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "test" => Ok(Environment::Test),
            "prod" => Ok(Environment::Prod),
            other => Err(Error::config(
                "env",
                format!("`{other}` is not an environment (test or prod)"),
            )),
        }
    }
}

/// The HelseID issuer a client talks to, normalised: no trailing slash, and no
/// `/connect/token` or `/.well-known/openid-configuration` suffix (configuration files
/// sometimes give the token endpoint as the authority).
///
/// Only `https` is accepted, except `http` to a loopback address (a local emulator).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Authority(Arc<str>);

impl Authority {
    /// Parses and normalises an authority.
    ///
    /// # Errors
    /// [`Error::Config`] naming `authority` for a malformed URL, a scheme other than
    /// `https` (or `http` to loopback), a query, a fragment or user information.
    pub fn parse(s: &str) -> Result<Self> {
        let url = check_url("authority", s)?;
        let mut text = url.as_str().trim_end_matches('/').to_owned();
        for suffix in ["/connect/token", "/.well-known/openid-configuration"] {
            if let Some(stripped) = text.strip_suffix(suffix) {
                text = stripped.trim_end_matches('/').to_owned();
            }
        }
        Ok(Authority(text.into()))
    }

    /// The issuer URL: the `aud` of every client assertion.
    pub fn issuer(&self) -> &str {
        &self.0
    }

    /// Where the discovery document is.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.0)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authority({})", self.0)
    }
}

/// Checks that `s` is an absolute `https` URL, or `http` to loopback, with no query,
/// fragment or credentials. `field` names the setting in errors.
pub(crate) fn check_url(field: &str, s: &str) -> Result<Url> {
    let url = Url::parse(s.trim())
        .map_err(|e| Error::config(field, format!("`{s}` is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(
                field,
                format!(
                    "`{s}` uses http: only https is allowed, except http to a loopback address"
                ),
            ));
        }
        other => {
            return Err(Error::config(
                field,
                format!("`{s}`: unsupported scheme `{other}`"),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(
            field,
            format!("`{s}` must not have a query or fragment"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(field, "must not contain user information"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A registered HelseID client: its id, its authority, its scopes and its signing key.
///
/// `Debug` shows no key material.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    client_id: Arc<str>,
    authority: Authority,
    scopes: Vec<String>,
    key: Arc<SigningKey>,
    assertion_lifetime: Duration,
    key_expires_at: Option<std::time::SystemTime>,
}

/// The keys of a Selvbetjening client configuration file that this crate reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    client_id: Option<serde_json::Value>,
    #[serde(default)]
    authority: Option<serde_json::Value>,
    #[serde(default)]
    scopes: Option<serde_json::Value>,
    #[serde(default)]
    private_jwk: Option<serde_json::Value>,
    #[serde(default)]
    rsa_private_key: Option<serde::de::IgnoredAny>,
    /// When the key expires (RFC 3339): this crate's own member, written by a key
    /// rotation from Selvbetjening's answer.
    #[serde(default)]
    key_expiration: Option<serde_json::Value>,
}

/// The largest configuration file [`ClientConfig::from_file`] reads: 64 KiB, many times
/// a configuration with an RSA-4096 key.
pub const MAX_CONFIG_FILE: u64 = 64 * 1024;

/// The text of the configuration file at `path`, read as [`ClientConfig::from_file`]
/// reads it.
pub(crate) fn read_file(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    read_private_text(path).map_err(|source| Error::ConfigFile {
        path: path.display().to_string(),
        source: Arc::new(source),
    })
}

/// Reads `path` as UTF-8 text, when it is a regular file of at most [`MAX_CONFIG_FILE`]
/// bytes. The text is zeroized when dropped: it holds a private key (or, for a token set
/// store, tokens).
pub(crate) fn read_private_text(path: &Path) -> std::io::Result<zeroize::Zeroizing<String>> {
    use std::io::{Error as IoError, ErrorKind, Read};
    // Judged before opening: opening a FIFO for reading waits for a writer.
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let file = std::fs::File::open(path)?;
    // Room for the whole file at once, so that no copy of the key is left behind in a
    // buffer that grew.
    let capacity = file.metadata()?.len().min(MAX_CONFIG_FILE) + 1;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(capacity as usize));
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidData => IoError::new(ErrorKind::InvalidData, "it is not UTF-8 text"),
            _ => e,
        })?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(IoError::new(
            ErrorKind::InvalidData,
            format!("it is larger than {MAX_CONFIG_FILE} bytes"),
        ));
    }
    Ok(text)
}

impl ClientConfig {
    /// Starts a configuration from its parts.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }

    /// Reads a client configuration file downloaded from HelseID's self-service portal.
    ///
    /// The file must be a regular file (a directory, FIFO or device is refused before
    /// it is opened, so nothing blocks) of at most [`MAX_CONFIG_FILE`] bytes, in UTF-8
    /// with or without a byte order mark (Windows editors write one).
    ///
    /// # Errors
    /// [`Error::ConfigFile`] when the file cannot be read, is not a regular file or is
    /// too large, otherwise as [`ClientConfig::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_json(&read_file(path)?)
    }

    /// Reads the JSON text of a client configuration file.
    ///
    /// Reads `clientId`, `authority`, `scopes` (an array, or a space-separated string)
    /// and `privateJwk` (a JWK object, or a string containing one, as the portal writes
    /// it, possibly URL-encoded). Other keys are ignored.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is missing or wrong.
    pub fn from_json(json: &str) -> Result<Self> {
        let json = json.strip_prefix('\u{feff}').unwrap_or(json);
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::config("(file)", json_error_without_input(&e)))?;
        if !value.is_object() {
            return Err(Error::config("(file)", "not a JSON object"));
        }
        let file: ConfigFile = serde_json::from_value(value)
            .map_err(|e| Error::config("(file)", json_error_without_input(&e)))?;
        let string = |name: &str, v: Option<serde_json::Value>| -> Result<String> {
            match v {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Ok(s.trim().to_owned())
                }
                Some(serde_json::Value::String(_)) => Err(Error::config(name, "empty")),
                Some(_) => Err(Error::config(name, "must be a string")),
                None => Err(Error::config(name, "missing")),
            }
        };
        let client_id = string("clientId", file.client_id)?;
        let authority = Authority::parse(&string("authority", file.authority)?)?;
        let scopes = match file.scopes {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => {
                s.split_ascii_whitespace().map(str::to_owned).collect()
            }
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(Error::config("scopes", "every scope must be a string")),
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(Error::config("scopes", "must be an array of strings")),
        };
        let jwk = match file.private_jwk {
            Some(serde_json::Value::Object(map)) => {
                serde_json::from_value::<PrivateJwk>(serde_json::Value::Object(map))
                    .map_err(|e| Error::config("privateJwk", json_error_without_input(&e)))?
            }
            Some(serde_json::Value::String(s)) => {
                let s = zeroize::Zeroizing::new(s);
                let trimmed = s.trim();
                if trimmed.starts_with('{') {
                    PrivateJwk::from_json(trimmed)?
                } else if trimmed
                    .get(..3)
                    .is_some_and(|p| p.eq_ignore_ascii_case("%7B"))
                {
                    let decoded = zeroize::Zeroizing::new(
                        percent_encoding::percent_decode_str(trimmed)
                            .decode_utf8()
                            .map_err(|_| {
                                Error::config("privateJwk", "URL-encoded text that is not UTF-8")
                            })?
                            .into_owned(),
                    );
                    PrivateJwk::from_json(&decoded)?
                } else {
                    return Err(Error::config(
                        "privateJwk",
                        "a string that does not contain a JWK object",
                    ));
                }
            }
            Some(_) => {
                return Err(Error::config(
                    "privateJwk",
                    "must be a JWK object or a string holding one",
                ));
            }
            None if file.rsa_private_key.is_some() => {
                return Err(Error::config(
                    "privateJwk",
                    "missing; the file has only `rsaPrivateKey` (.NET XML), which this crate does not \
                     read: download the configuration with a JWK",
                ));
            }
            None => return Err(Error::config("privateJwk", "missing")),
        };
        let key = SigningKey::from_jwk(&jwk)?;
        let mut builder = ClientConfig::builder()
            .client_id(client_id)
            .authority(authority)
            .scopes(scopes)
            .signing_key(key);
        match file.key_expiration {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(text)) => {
                let at = crate::rfc3339::parse(&text).ok_or_else(|| {
                    Error::config(
                        "keyExpiration",
                        format!("`{text}` is not an RFC 3339 date-time"),
                    )
                })?;
                builder = builder.key_expires_at(at);
            }
            Some(_) => {
                return Err(Error::config(
                    "keyExpiration",
                    "must be an RFC 3339 date-time string",
                ));
            }
        }
        builder.build()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The authority (issuer).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The scopes asked for by default.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// When the key expires, when the configuration says (its `keyExpiration`, which a
    /// key rotation writes from Selvbetjening's answer).
    pub fn key_expires_at(&self) -> Option<std::time::SystemTime> {
        self.key_expires_at
    }

    /// The signing key.
    pub fn signing_key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// How long each client assertion is valid.
    pub fn assertion_lifetime(&self) -> Duration {
        self.assertion_lifetime
    }

    /// Replaces the authority, for example to point a downloaded configuration at a
    /// local emulator.
    pub fn with_authority(mut self, authority: Authority) -> Self {
        self.authority = authority;
        self
    }

    /// Replaces the default scopes.
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The client assertions of this client.
    pub fn client_assertion(&self) -> ClientAssertion {
        // The lifetime was checked when the configuration was built.
        let assertions = ClientAssertion::new(
            self.client_id.clone(),
            self.authority.issuer(),
            self.key.clone(),
        );
        assertions
            .clone()
            .with_lifetime(self.assertion_lifetime)
            .unwrap_or(assertions)
    }
}

/// Builds a [`ClientConfig`] from its parts.
#[derive(Debug, Default)]
pub struct ClientConfigBuilder {
    client_id: Option<String>,
    authority: Option<Result<Authority>>,
    scopes: Vec<String>,
    key: Option<Result<Arc<SigningKey>>>,
    assertion_lifetime: Option<Duration>,
    key_expires_at: Option<std::time::SystemTime>,
}

impl ClientConfigBuilder {
    /// The client id from the self-service portal. Required.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The authority. Required.
    pub fn authority(mut self, authority: Authority) -> Self {
        self.authority = Some(Ok(authority));
        self
    }

    /// The authority as text, normalised by [`Authority::parse`].
    pub fn authority_url(mut self, authority: &str) -> Self {
        self.authority = Some(Authority::parse(authority));
        self
    }

    /// When the key expires (Selvbetjening's `expiration`). Default: unknown.
    pub fn key_expires_at(mut self, at: std::time::SystemTime) -> Self {
        self.key_expires_at = Some(at);
        self
    }

    /// The environment's authority.
    pub fn environment(self, env: Environment) -> Self {
        self.authority(env.authority())
    }

    /// The scopes asked for by default. Default: none (HelseID then grants all the
    /// client's scopes).
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The signing key. Required (or [`ClientConfigBuilder::private_jwk`]).
    pub fn signing_key(mut self, key: impl Into<Arc<SigningKey>>) -> Self {
        self.key = Some(Ok(key.into()));
        self
    }

    /// The signing key, from a private JWK.
    pub fn private_jwk(mut self, jwk: &PrivateJwk) -> Self {
        self.key = Some(SigningKey::from_jwk(jwk).map(Arc::new));
        self
    }

    /// How long each client assertion is valid. Default: 10 s; at most 60 s.
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = Some(lifetime);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] naming the missing or invalid part: `clientId`, `authority`,
    /// `privateJwk`, `scopes` (a scope with white space) or `assertionLifetime`.
    pub fn build(self) -> Result<ClientConfig> {
        let client_id = self
            .client_id
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| Error::config("clientId", "missing"))?;
        let authority = self
            .authority
            .ok_or_else(|| Error::config("authority", "missing"))??;
        let key = self
            .key
            .ok_or_else(|| Error::config("privateJwk", "missing"))??;
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(Error::config(
                "scopes",
                format!("`{bad}` is not a single scope"),
            ));
        }
        let assertion_lifetime = self.assertion_lifetime.unwrap_or(DEFAULT_LIFETIME);
        assertion::check_lifetime(assertion_lifetime)?;
        Ok(ClientConfig {
            client_id: client_id.into(),
            authority,
            scopes: self.scopes,
            key,
            assertion_lifetime,
            key_expires_at: self.key_expires_at,
        })
    }
}

/// A configuration for unit tests: `client_id` at `authority`, with a new P-256 key.
#[cfg(test)]
pub(crate) fn test_config(client_id: &str, authority: &str) -> ClientConfig {
    ClientConfig::builder()
        .client_id(client_id)
        .authority_url(authority)
        .private_jwk(
            &crate::key::PrivateJwk::generate_ec(crate::key::Algorithm::ES256).expect("key"),
        )
        .build()
        .expect("config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Algorithm;

    #[test]
    fn authority_normalisation() {
        for (input, issuer) in [
            (
                "https://helseid-sts.test.nhn.no",
                "https://helseid-sts.test.nhn.no",
            ),
            (
                "https://helseid-sts.test.nhn.no/",
                "https://helseid-sts.test.nhn.no",
            ),
            (
                "https://helseid-sts.test.nhn.no/connect/token",
                "https://helseid-sts.test.nhn.no",
            ),
            (
                "https://helseid-sts.test.nhn.no/connect/token/",
                "https://helseid-sts.test.nhn.no",
            ),
            (
                "https://helseid-sts.nhn.no/.well-known/openid-configuration",
                "https://helseid-sts.nhn.no",
            ),
            ("https://example.org/tenant/", "https://example.org/tenant"),
            (
                "http://127.0.0.1:8080/connect/token",
                "http://127.0.0.1:8080",
            ),
            ("http://localhost:1", "http://localhost:1"),
            ("http://[::1]:9", "http://[::1]:9"),
        ] {
            assert_eq!(Authority::parse(input).expect(input).issuer(), issuer);
        }
        for bad in [
            "http://helseid-sts.test.nhn.no",
            "http://10.0.0.1",
            "ftp://x",
            "not a url",
            "https://x/?a=b",
            "https://user:pw@x",
        ] {
            let err = Authority::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("`authority`"), "{bad}: {err}");
        }
        assert_eq!(
            Environment::Test.authority().issuer(),
            "https://helseid-sts.test.nhn.no"
        );
        assert_eq!(
            Environment::Prod.authority().discovery_url(),
            "https://helseid-sts.nhn.no/.well-known/openid-configuration"
        );
    }

    fn jwk_json() -> String {
        PrivateJwk::generate_ec(Algorithm::ES256)
            .expect("key")
            .to_json()
            .to_string()
    }

    /// A directory of this test's own under the system's temporary directory.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("helseid-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn selvbetjening_file() -> String {
        serde_json::json!({
            "authority": "https://helseid-sts.test.nhn.no",
            "clientId": "bom-client",
            "privateJwk": jwk_json(),
        })
        .to_string()
    }

    #[test]
    fn a_file_with_a_byte_order_mark_is_read() {
        let dir = scratch("bom");
        let path = dir.join("client.json");
        std::fs::write(&path, format!("\u{feff}{}", selvbetjening_file())).expect("write");
        let config = ClientConfig::from_file(&path).expect("a BOM is accepted");
        assert_eq!(config.client_id(), "bom-client");
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    fn refusal(path: &Path) -> String {
        let err = ClientConfig::from_file(path).expect_err("refused");
        assert!(matches!(err, Error::ConfigFile { .. }), "{err:?}");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    #[test]
    fn what_is_not_a_small_regular_file_is_refused_at_once() {
        let dir = scratch("kinds");
        assert!(refusal(&dir).contains("a directory, not a regular file"));

        // A FIFO without a writer: opening it would block; it is refused unopened.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(refusal(&fifo).contains("FIFO, socket or device, not a regular file"));

        let big = dir.join("big.json");
        let padding = " ".repeat(MAX_CONFIG_FILE as usize);
        std::fs::write(&big, format!("{}{padding}", selvbetjening_file())).expect("write");
        assert!(refusal(&big).contains("larger than 65536 bytes"));

        let latin1 = dir.join("latin1.json");
        std::fs::write(&latin1, b"{\"clientId\": \"bl\xe5\"}").expect("write");
        assert!(refusal(&latin1).contains("not UTF-8"));

        assert!(refusal(&dir.join("missing.json")).contains("cannot read configuration file"));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn reads_a_selvbetjening_file_with_the_jwk_as_a_string() {
        let jwk = jwk_json();
        let file = serde_json::json!({
            "clientName": "demo",
            "authority": "https://helseid-sts.test.nhn.no/connect/token",
            "clientId": "9a1f-client",
            "grantTypes": ["client_credentials"],
            "scopes": ["nhn:cp-api/access", "nhn:other/read"],
            "redirectUris": [],
            "secretType": "private_key_jwt:RsaPrivateKeyJwtSecret",
            "privateJwk": jwk,
            "pkceRequired": false
        });
        let config = ClientConfig::from_json(&file.to_string()).expect("config");
        assert_eq!(config.client_id(), "9a1f-client");
        assert_eq!(
            config.authority().issuer(),
            "https://helseid-sts.test.nhn.no"
        );
        assert_eq!(config.scopes(), ["nhn:cp-api/access", "nhn:other/read"]);
        assert_eq!(
            config.client_assertion().audience(),
            "https://helseid-sts.test.nhn.no"
        );

        // The same JWK as an object, and URL-encoded inside the string.
        let object: serde_json::Value = serde_json::from_str(&jwk).expect("jwk");
        let mut file2 = file.clone();
        file2["privateJwk"] = object;
        assert!(ClientConfig::from_json(&file2.to_string()).is_ok());
        let encoded: String = url::form_urlencoded::byte_serialize(jwk.as_bytes()).collect();
        let mut file3 = file;
        file3["privateJwk"] = serde_json::Value::String(encoded.replace('+', "%20"));
        assert!(ClientConfig::from_json(&file3.to_string()).is_ok());
    }

    #[test]
    fn every_bad_input_names_the_field() {
        let jwk = jwk_json();
        let good = serde_json::json!({
            "clientId": "c", "authority": "https://helseid-sts.test.nhn.no", "privateJwk": jwk,
        });
        let with = |key: &str, value: serde_json::Value| {
            let mut f = good.clone();
            if value.is_null() {
                f.as_object_mut().expect("object").remove(key);
            } else {
                f[key] = value;
            }
            f.to_string()
        };
        let public_only = {
            let full: serde_json::Value = serde_json::from_str(&jwk).expect("jwk");
            let mut p = full.clone();
            p.as_object_mut().expect("object").remove("d");
            p
        };
        let cases = [
            (with("clientId", serde_json::Value::Null), "clientId"),
            (with("clientId", serde_json::json!(5)), "clientId"),
            (with("clientId", serde_json::json!("  ")), "clientId"),
            (with("authority", serde_json::Value::Null), "authority"),
            (
                with("authority", serde_json::json!("http://helseid.example")),
                "authority",
            ),
            (with("scopes", serde_json::json!([1])), "scopes"),
            (with("scopes", serde_json::json!({})), "scopes"),
            (with("privateJwk", serde_json::Value::Null), "privateJwk"),
            (
                with("privateJwk", serde_json::json!("no jwk here")),
                "privateJwk",
            ),
            (
                with("privateJwk", serde_json::json!("{not json")),
                "privateJwk",
            ),
            (with("privateJwk", public_only), "privateJwk.d"),
            (
                with("privateJwk", serde_json::json!({"kty": "oct", "k": "AAAA"})),
                "privateJwk.kty",
            ),
            (
                with(
                    "privateJwk",
                    serde_json::json!({"kty": "EC", "crv": "P-192", "x": "A", "y": "A", "d": "A"}),
                ),
                "privateJwk.crv",
            ),
            ("[]".to_owned(), "(file)"),
            ("{".to_owned(), "(file)"),
        ];
        for (json, field) in cases {
            match ClientConfig::from_json(&json) {
                Err(Error::Config { field: f, reason }) => assert_eq!(f, field, "{json}: {reason}"),
                other => panic!("{json}: expected an error naming {field}, got {other:?}"),
            }
        }
        let mut net = good.clone();
        net.as_object_mut().expect("object").remove("privateJwk");
        net["rsaPrivateKey"] = serde_json::json!("<RSAKeyValue>...</RSAKeyValue>");
        let err = ClientConfig::from_json(&net.to_string()).expect_err("xml only");
        assert!(err.to_string().contains("rsaPrivateKey"), "{err}");
    }

    #[test]
    fn builder_checks_its_parts() {
        let key = SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("key"))
            .expect("key");
        let key = Arc::new(key);
        let base = || {
            ClientConfig::builder()
                .client_id("c")
                .environment(Environment::Test)
                .signing_key(key.clone())
        };
        assert!(base().build().is_ok());
        let field = |r: Result<ClientConfig>| match r {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            field(base().assertion_lifetime(Duration::from_secs(61)).build()),
            "assertionLifetime"
        );
        assert_eq!(field(base().scopes(["a b"]).build()), "scopes");
        assert_eq!(
            field(base().authority_url("http://example.org").build()),
            "authority"
        );
        assert_eq!(
            field(ClientConfig::builder().client_id("c").build()),
            "authority"
        );
        assert_eq!(
            field(
                ClientConfig::builder()
                    .client_id("c")
                    .environment(Environment::Prod)
                    .build()
            ),
            "privateJwk"
        );
    }

    #[test]
    fn debug_of_config_has_no_secret() {
        let jwk = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("key");
        let json: serde_json::Value = serde_json::from_str(&jwk.to_json()).expect("json");
        let d = json["d"].as_str().expect("d").to_owned();
        let config = ClientConfig::builder()
            .client_id("c")
            .environment(Environment::Test)
            .private_jwk(&jwk)
            .build()
            .expect("config");
        let text = format!("{config:?} {:?}", config.client_assertion());
        assert!(!text.contains(&d[..20]), "{text}");
    }
}
