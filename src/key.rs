//! Signing keys: a private JSON Web Key (JWK) becomes a key that signs JWTs.
//!
//! HelseID authenticates clients with `private_key_jwt`: the client signs a short-lived
//! JWT with its private key, and HelseID checks it against the public key registered in
//! the self-service portal. This module reads the private JWK the portal hands out, and
//! signs with aws-lc-rs. The parsed key is kept for the lifetime of the [`SigningKey`],
//! so a signature costs one private-key operation and nothing more.
//!
//! Key material is zeroized when dropped: the JWK's private members are held in
//! [`Zeroizing`] strings, and the parsed key lives inside aws-lc, which cleanses it on free.
//!
//! # Example
//! ```
//! use helseid::key::{Algorithm, PrivateJwk, SigningKey};
//!
//! # fn main() -> Result<(), helseid::Error> {
//! let jwk = PrivateJwk::generate_ec(Algorithm::ES256)?;
//! let key = SigningKey::from_jwk(&jwk)?;
//! assert_eq!(key.algorithm(), Algorithm::ES256);
//! let jwt = key.sign_jwt("JWT", &serde_json::json!({ "sub": "demo" }))?;
//! assert_eq!(jwt.split('.').count(), 3);
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use aws_lc_rs::{rand, rsa};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::jose::{b64, b64_decode, json_error_without_input};

/// A JWS signature algorithm that HelseID accepts for client assertions and DPoP proofs.
///
/// HelseID accepts only asymmetric algorithms: RS256/384/512, PS256/384/512 and
/// ES256/384/512 (P-521 included). The official samples ship RS512 (RSA) and ES384 keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

impl Algorithm {
    /// The JOSE name, for example `RS512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
        }
    }

    /// Whether this algorithm signs with an RSA key.
    pub fn is_rsa(self) -> bool {
        !matches!(self, Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512)
    }

    /// The EC curve this algorithm signs with, for ES algorithms.
    pub fn curve(self) -> Option<&'static str> {
        match self {
            Algorithm::ES256 => Some("P-256"),
            Algorithm::ES384 => Some("P-384"),
            Algorithm::ES512 => Some("P-521"),
            _ => None,
        }
    }

    fn rsa_padding(self) -> &'static dyn signature::RsaEncoding {
        match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
            Algorithm::PS256 => &signature::RSA_PSS_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_SHA512,
            // RS512, and never reached for ES algorithms.
            _ => &signature::RSA_PKCS1_SHA512,
        }
    }

    fn ecdsa(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "ES512" => Algorithm::ES512,
            other => {
                return Err(Error::config(
                    "alg",
                    format!(
                        "unsupported algorithm `{other}` (HelseID accepts RS256, RS384, RS512, \
                         PS256, PS384, PS512, ES256, ES384 and ES512)"
                    ),
                ));
            }
        })
    }
}

/// A private JSON Web Key (RFC 7517), as found in the `privateJwk` member of a HelseID
/// client configuration file.
///
/// The private members are zeroized when the value is dropped, and `Debug` never shows
/// them.
#[derive(Clone, Serialize, Deserialize)]
pub struct PrivateJwk {
    #[serde(default)]
    kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dp: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dq: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qi: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<Zeroizing<String>>,
}

impl fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateJwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("crv", &self.crv)
            .field("private", &"[redacted]")
            .finish()
    }
}

/// The location of a JWK inside a configuration, for error messages.
const JWK_FIELD: &str = "privateJwk";

fn jwk_err(member: &str, reason: impl Into<String>) -> Error {
    Error::config(format!("{JWK_FIELD}.{member}"), reason)
}

impl PrivateJwk {
    /// A key of type `kty` with no other member, for the generators to fill in. Not
    /// `Default`: an empty private key is no key, and nothing outside should make one.
    fn of_type(kty: &str) -> Self {
        PrivateJwk {
            kty: kty.to_owned(),
            kid: None,
            alg: None,
            use_: None,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
            k: None,
        }
    }

    /// Parses a private JWK from its JSON text.
    ///
    /// # Errors
    /// [`Error::Config`] naming `privateJwk` when the text is not a JWK object. The
    /// message gives the position, never the text.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::config(JWK_FIELD, json_error_without_input(&e)))
    }

    /// Serialises the JWK, private members included. Write it only where a private key
    /// belongs (a configuration file with owner-only permissions).
    pub fn to_json(&self) -> Zeroizing<String> {
        // Serialising plain strings to a string cannot fail.
        Zeroizing::new(serde_json::to_string(self).unwrap_or_default())
    }

    /// The key id (`kid`), if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key type (`kty`): `RSA` or `EC`.
    pub fn kty(&self) -> &str {
        &self.kty
    }

    /// Generates a fresh RSA key of `bits` bits (2048, 3072 or 4096) for `alg`, with the
    /// key's thumbprint as its `kid`.
    ///
    /// # Errors
    /// [`Error::Config`] for an EC algorithm or an unsupported size.
    pub fn generate_rsa(bits: usize, alg: Algorithm) -> Result<Self> {
        if !alg.is_rsa() {
            return Err(Error::config(
                "alg",
                format!("{alg} is not an RSA algorithm"),
            ));
        }
        let size = match bits {
            2048 => rsa::KeySize::Rsa2048,
            3072 => rsa::KeySize::Rsa3072,
            4096 => rsa::KeySize::Rsa4096,
            other => {
                return Err(Error::config(
                    "bits",
                    format!("unsupported RSA key size {other} (use 2048, 3072 or 4096)"),
                ));
            }
        };
        let generated = || -> Option<Self> {
            let pair = RsaKeyPair::generate(size).ok()?;
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair).ok()?;
            let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref()).ok()?;
            let rsa = pkcs1::RsaPrivateKeyRef::try_from(info.private_key.as_bytes()).ok()?;
            let secret = |u: &pkcs1::UintRef<'_>| Some(Zeroizing::new(b64(u.as_bytes())));
            let mut jwk = PrivateJwk {
                alg: Some(alg.as_str().into()),
                n: Some(b64(rsa.modulus.as_bytes())),
                e: Some(b64(rsa.public_exponent.as_bytes())),
                d: secret(&rsa.private_exponent),
                p: secret(&rsa.prime1),
                q: secret(&rsa.prime2),
                dp: secret(&rsa.exponent1),
                dq: secret(&rsa.exponent2),
                qi: secret(&rsa.coefficient),
                ..PrivateJwk::of_type("RSA")
            };
            jwk.kid = Some(jwk.public().ok()?.thumbprint());
            Some(jwk)
        };
        generated().ok_or(Error::Sign {
            what: "a generated RSA key",
        })
    }

    /// Generates a fresh EC key for `alg` (ES256: P-256, ES384: P-384, ES512: P-521), with the key's
    /// thumbprint as its `kid`.
    ///
    /// # Errors
    /// [`Error::Config`] for an RSA algorithm.
    pub fn generate_ec(alg: Algorithm) -> Result<Self> {
        let Some(crv) = alg.curve() else {
            return Err(Error::config(
                "alg",
                format!("{alg} is not an EC algorithm"),
            ));
        };
        let generated = || -> Option<Self> {
            let pair = EcdsaKeyPair::generate(alg.ecdsa()).ok()?;
            let d: aws_lc_rs::encoding::EcPrivateKeyBin<'_> =
                pair.private_key().as_be_bytes().ok()?;
            let point = pair.public_key().as_ref();
            let coord = (point.len() - 1) / 2;
            let mut jwk = PrivateJwk {
                alg: Some(alg.as_str().into()),
                crv: Some(crv.into()),
                x: Some(b64(&point[1..=coord])),
                y: Some(b64(&point[1 + coord..])),
                d: Some(Zeroizing::new(b64(d.as_ref()))),
                ..PrivateJwk::of_type("EC")
            };
            jwk.kid = Some(jwk.public().ok()?.thumbprint());
            Some(jwk)
        };
        generated().ok_or(Error::Sign {
            what: "a generated EC key",
        })
    }

    /// The public half of this key.
    ///
    /// # Errors
    /// [`Error::Config`] when a public member is missing.
    pub fn public(&self) -> Result<PublicJwk> {
        let mut public = PublicJwk {
            kty: self.kty.clone(),
            kid: self.kid.clone(),
            alg: self.alg.clone(),
            use_: self.use_.clone(),
            ..PublicJwk::default()
        };
        match self.kty.as_str() {
            "RSA" => {
                public.n = Some(self.n.clone().ok_or_else(|| jwk_err("n", "missing"))?);
                public.e = Some(self.e.clone().ok_or_else(|| jwk_err("e", "missing"))?);
            }
            "EC" => {
                public.crv = Some(self.crv.clone().ok_or_else(|| jwk_err("crv", "missing"))?);
                public.x = Some(self.x.clone().ok_or_else(|| jwk_err("x", "missing"))?);
                public.y = Some(self.y.clone().ok_or_else(|| jwk_err("y", "missing"))?);
            }
            _ => return Err(kty_error(&self.kty)),
        }
        Ok(public)
    }
}

fn kty_error(kty: &str) -> Error {
    match kty {
        "" => jwk_err("kty", "missing"),
        "oct" => jwk_err(
            "kty",
            "a symmetric key (`oct`) cannot be used: HelseID accepts only RSA and EC keys",
        ),
        other => jwk_err(
            "kty",
            format!("unsupported key type `{other}`: HelseID accepts only RSA and EC keys"),
        ),
    }
}

/// A public JSON Web Key, as published in a JWKS or registered at HelseID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl PublicJwk {
    /// Whether `signature` over `signed` verifies with this key under `alg` (`false`
    /// when a member the algorithm needs is missing or not base64url).
    #[cfg(any(test, feature = "login"))]
    pub(crate) fn verifies(&self, alg: Algorithm, signed: &[u8], signature: &[u8]) -> bool {
        let decode = |member: &Option<String>| member.as_deref().and_then(b64_decode);
        if alg.is_rsa() {
            let (Some(n), Some(e)) = (decode(&self.n), decode(&self.e)) else {
                return false;
            };
            let params: &signature::RsaParameters = match alg {
                Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            return signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, signed, signature)
                .is_ok();
        }
        let (Some(x), Some(y)) = (decode(&self.x), decode(&self.y)) else {
            return false;
        };
        let algorithm: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            _ => &signature::ECDSA_P521_SHA512_FIXED,
        };
        let point = [&[4u8][..], &x, &y].concat();
        signature::UnparsedPublicKey::new(algorithm, point)
            .verify(signed, signature)
            .is_ok()
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), base64url: what DPoP's `cnf.jkt` holds.
    pub fn thumbprint(&self) -> String {
        // RFC 7638: the required members only, in lexicographic order, no white space.
        let s = |v: &Option<String>| v.as_deref().unwrap_or_default().to_owned();
        let canonical = if self.kty == "EC" {
            serde_json::json!({"crv": s(&self.crv), "kty": "EC", "x": s(&self.x), "y": s(&self.y)})
        } else {
            serde_json::json!({"e": s(&self.e), "kty": self.kty, "n": s(&self.n)})
        };
        // serde_json's map is ordered by key, so this is the canonical form.
        let text = canonical.to_string();
        crate::jose::b64_sha256(text)
    }
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key, parsed once, that signs JWTs.
///
/// `Debug` shows the algorithm, the key id and the thumbprint, never key material.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    pair: KeyPair,
    public: PublicJwk,
    thumbprint: String,
    rng: rand::SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

fn decode_member(name: &str, value: &Option<impl AsRef<str>>) -> Result<Zeroizing<Vec<u8>>> {
    let value = value.as_ref().ok_or_else(|| jwk_err(name, "missing"))?;
    let bytes = b64_decode(value.as_ref()).ok_or_else(|| jwk_err(name, "not base64url"))?;
    if bytes.is_empty() {
        return Err(jwk_err(name, "empty"));
    }
    Ok(Zeroizing::new(bytes))
}

fn uint<'a>(name: &str, bytes: &'a [u8]) -> Result<pkcs1::UintRef<'a>> {
    pkcs1::UintRef::new(bytes).map_err(|_| jwk_err(name, "not a valid integer"))
}

impl SigningKey {
    /// Parses the JSON text of a private JWK. See [`SigningKey::from_jwk`].
    ///
    /// # Errors
    /// As [`PrivateJwk::from_json`] and [`SigningKey::from_jwk`].
    pub fn from_jwk_json(json: &str) -> Result<Self> {
        Self::from_jwk(&PrivateJwk::from_json(json)?)
    }

    /// Makes a signing key from a private JWK.
    ///
    /// The algorithm is the JWK's `alg` when it has one; otherwise RS512 for RSA keys
    /// (what HelseID's self-service portal generates), ES256 for P-256 keys, ES384 for
    /// P-384 keys and ES512 for P-521 keys. The JWK's `kid` goes into every JWT header.
    ///
    /// # Errors
    /// [`Error::Config`] naming the member that is wrong: a missing or undecodable member,
    /// a public-only key (no `d`), a symmetric key, an unsupported curve or key type, an
    /// `alg` that does not fit the key, an RSA key shorter than 2048 bits, or key
    /// material that does not form a valid key.
    pub fn from_jwk(jwk: &PrivateJwk) -> Result<Self> {
        if let Some(use_) = jwk.use_.as_deref()
            && use_ != "sig"
        {
            return Err(jwk_err(
                "use",
                format!("`{use_}`: a signing key needs `sig`"),
            ));
        }
        let declared = jwk
            .alg
            .as_deref()
            .map(|a| {
                Algorithm::from_str(a)
                    .map_err(|_| jwk_err("alg", format!("unsupported algorithm `{a}`")))
            })
            .transpose()?;
        let (alg, pair) = match jwk.kty.as_str() {
            "RSA" => {
                let alg = declared.unwrap_or(Algorithm::RS512);
                if !alg.is_rsa() {
                    return Err(jwk_err("alg", format!("{alg} does not fit an RSA key")));
                }
                (alg, KeyPair::Rsa(Self::rsa_pair(jwk)?))
            }
            "EC" => {
                let alg = match jwk.crv.as_deref() {
                    Some("P-256") => Algorithm::ES256,
                    Some("P-384") => Algorithm::ES384,
                    Some("P-521") => Algorithm::ES512,
                    Some(other) => {
                        return Err(jwk_err(
                            "crv",
                            format!(
                                "unsupported curve `{other}` (HelseID accepts P-256, P-384 and P-521)"
                            ),
                        ));
                    }
                    None => return Err(jwk_err("crv", "missing")),
                };
                if let Some(declared) = declared
                    && declared != alg
                {
                    return Err(jwk_err(
                        "alg",
                        format!(
                            "{declared} does not fit a key on curve {}",
                            alg.curve().unwrap_or("?")
                        ),
                    ));
                }
                (alg, KeyPair::Ec(Self::ec_pair(jwk, alg)?))
            }
            other => return Err(kty_error(other)),
        };
        let mut public = jwk.public()?;
        public.alg = Some(alg.as_str().to_owned());
        public.use_ = Some("sig".to_owned());
        let thumbprint = public.thumbprint();
        Ok(SigningKey {
            alg,
            kid: jwk.kid.clone(),
            pair,
            public,
            thumbprint,
            rng: rand::SystemRandom::new(),
        })
    }

    fn rsa_pair(jwk: &PrivateJwk) -> Result<RsaKeyPair> {
        if jwk.d.is_none() {
            return Err(jwk_err(
                "d",
                "missing: this is a public key, and signing needs the private key",
            ));
        }
        let n = decode_member("n", &jwk.n)?;
        let e = decode_member("e", &jwk.e)?;
        let d = decode_member("d", &jwk.d)?;
        let p = decode_member("p", &jwk.p)?;
        let q = decode_member("q", &jwk.q)?;
        let dp = decode_member("dp", &jwk.dp)?;
        let dq = decode_member("dq", &jwk.dq)?;
        let qi = decode_member("qi", &jwk.qi)?;
        let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
        if bits < 2048 {
            return Err(jwk_err(
                "n",
                format!("RSA key of about {bits} bits is too short (at least 2048)"),
            ));
        }
        let key = pkcs1::RsaPrivateKeyRef {
            modulus: uint("n", &n)?,
            public_exponent: uint("e", &e)?,
            private_exponent: uint("d", &d)?,
            prime1: uint("p", &p)?,
            prime2: uint("q", &q)?,
            exponent1: uint("dp", &dp)?,
            exponent2: uint("dq", &dq)?,
            coefficient: uint("qi", &qi)?,
            other_prime_infos: None,
        };
        let der = Zeroizing::new(
            pkcs1::der::Encode::to_der(&key)
                .map_err(|_| jwk_err("n", "cannot encode the RSA key"))?,
        );
        RsaKeyPair::from_der(&der)
            .map_err(|e| Error::config(JWK_FIELD, format!("the RSA key is not valid ({e})")))
    }

    fn ec_pair(jwk: &PrivateJwk, alg: Algorithm) -> Result<EcdsaKeyPair> {
        if jwk.d.is_none() {
            return Err(jwk_err(
                "d",
                "missing: this is a public key, and signing needs the private key",
            ));
        }
        let len = match alg {
            Algorithm::ES256 => 32,
            Algorithm::ES384 => 48,
            _ => 66,
        };
        let x = decode_member("x", &jwk.x)?;
        let y = decode_member("y", &jwk.y)?;
        let d = decode_member("d", &jwk.d)?;
        for (name, v) in [("x", &x), ("y", &y), ("d", &d)] {
            if v.len() != len {
                return Err(jwk_err(
                    name,
                    format!("must be {len} bytes for {alg}, is {}", v.len()),
                ));
            }
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        EcdsaKeyPair::from_private_key_and_public_key(alg.ecdsa(), &d, &point)
            .map_err(|e| Error::config(JWK_FIELD, format!("the EC key is not valid ({e})")))
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id carried in JWT headers, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public key as a JWK (with `alg` and `use: sig`).
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// The JWK SHA-256 thumbprint (RFC 7638) of the public key.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Signs `message` and returns the raw signature (JWS form: PKCS#1 v1.5 or PSS for
    /// RSA, `r || s` for ECDSA).
    fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = Error::Sign { what: "a JWT" };
        match &self.pair {
            KeyPair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(self.alg.rsa_padding(), &self.rng, message, &mut sig)
                    .map_err(|_| failed)?;
                Ok(sig)
            }
            KeyPair::Ec(pair) => Ok(pair
                .sign(&self.rng, message)
                .map_err(|_| failed)?
                .as_ref()
                .to_vec()),
        }
    }

    /// The base64url-encoded JOSE header for `typ`, with `kid` when the key has one, or
    /// with the public key as `jwk` (DPoP proofs) when `embed_jwk` is set.
    pub(crate) fn encoded_header(&self, typ: &str, embed_jwk: bool) -> String {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jwk: Option<PublicJwk>,
        }
        let header = Header {
            alg: self.alg.as_str(),
            typ,
            kid: if embed_jwk { None } else { self.kid.as_deref() },
            jwk: embed_jwk.then(|| PublicJwk {
                kid: None,
                alg: None,
                use_: None,
                ..self.public.clone()
            }),
        };
        b64(serde_json::to_vec(&header).unwrap_or_default())
    }

    /// Signs `claims` under an already encoded header (see `encoded_header`).
    pub(crate) fn sign_with_header<T: Serialize + ?Sized>(
        &self,
        header: &str,
        claims: &T,
    ) -> Result<String> {
        let claims = serde_json::to_vec(claims).map_err(|_| Error::Sign { what: "JWT claims" })?;
        let mut jwt = String::with_capacity(header.len() + claims.len() * 4 / 3 + 700);
        jwt.push_str(header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
        let signature = self.sign_raw(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }

    /// Signs a JWT with header `{"alg", "typ", "kid"}` and the given claims, in JWS
    /// compact serialisation.
    ///
    /// # Errors
    /// [`Error::Sign`] if the claims cannot be serialised or the signature fails.
    pub fn sign_jwt<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> Result<String> {
        self.sign_with_header(&self.encoded_header(typ, false), claims)
    }

    /// Signs a JWT whose header carries the public key as `jwk` instead of a `kid`, as
    /// DPoP proofs do.
    ///
    /// # Errors
    /// As [`SigningKey::sign_jwt`].
    pub fn sign_jwt_with_jwk<T: Serialize + ?Sized>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String> {
        self.sign_with_header(&self.encoded_header(typ, true), claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(jwt: &str, public: &PublicJwk, alg: Algorithm) -> bool {
        let (message, sig) = jwt.rsplit_once('.').expect("three parts");
        let sig = b64_decode(sig).expect("base64");
        public.verifies(alg, message.as_bytes(), &sig)
    }

    #[test]
    fn generated_keys_round_trip_and_verify() {
        for (jwk, alg) in [
            (
                PrivateJwk::generate_rsa(2048, Algorithm::RS256),
                Algorithm::RS256,
            ),
            (
                PrivateJwk::generate_rsa(2048, Algorithm::PS256),
                Algorithm::PS256,
            ),
            (PrivateJwk::generate_ec(Algorithm::ES256), Algorithm::ES256),
            (PrivateJwk::generate_ec(Algorithm::ES384), Algorithm::ES384),
            (PrivateJwk::generate_ec(Algorithm::ES512), Algorithm::ES512),
        ] {
            let jwk = jwk.expect("generate");
            // Through JSON, as a configuration file carries it.
            let key = SigningKey::from_jwk_json(&jwk.to_json()).expect("parse");
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.kid(), jwk.kid());
            assert_eq!(key.kid(), Some(key.thumbprint()));
            let jwt = key
                .sign_jwt("JWT", &serde_json::json!({"a": 1}))
                .expect("sign");
            assert!(
                verify(&jwt, key.public_jwk(), alg),
                "{alg} signature must verify"
            );
            let mut tampered = jwt.clone();
            tampered.insert_str(jwt.find('.').expect("dot") + 1, "e30");
            assert!(!verify(&tampered, key.public_jwk(), alg));
        }
    }

    #[test]
    fn rsa_defaults_to_rs512_and_ec_by_curve() {
        let mut jwk = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("generate");
        jwk.alg = None;
        assert_eq!(
            SigningKey::from_jwk(&jwk).expect("key").algorithm(),
            Algorithm::RS512
        );
        let mut jwk = PrivateJwk::generate_ec(Algorithm::ES384).expect("generate");
        jwk.alg = None;
        assert_eq!(
            SigningKey::from_jwk(&jwk).expect("key").algorithm(),
            Algorithm::ES384
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // The example key of RFC 7638 section 3.1.
        let jwk = PublicJwk {
            kty: "RSA".into(),
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
            ..PublicJwk::default()
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn bad_jwks_name_the_member() {
        let cases: Vec<(String, &str)> = vec![
            (r#"{"kty":"oct","k":"c2VjcmV0"}"#.into(), "privateJwk.kty"),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}"#.into(),
                "privateJwk.kty",
            ),
            (r#"{"n":"AQAB"}"#.into(), "privateJwk.kty"),
            (
                r#"{"kty":"EC","crv":"P-192","x":"AA","y":"AA","d":"AA"}"#.into(),
                "privateJwk.crv",
            ),
            (
                r#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA","d":"AA"}"#.into(),
                "privateJwk.crv",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.into(),
                "privateJwk.d",
            ),
            (
                r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#.into(),
                "privateJwk.d",
            ),
            (
                r#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"!!!"}"#.into(),
                "privateJwk.d",
            ),
            (
                r#"{"kty":"RSA","e":"AQAB","d":"AQAB"}"#.into(),
                "privateJwk.n",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA","use":"enc"}"#.into(),
                "privateJwk.use",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","alg":"RS256","x":"AA","y":"AA","d":"AA"}"#.into(),
                "privateJwk.alg",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","alg":"HS256","x":"AA","y":"AA","d":"AA"}"#.into(),
                "privateJwk.alg",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}"#.into(),
                "privateJwk.x",
            ),
            ("not json".into(), "privateJwk"),
            (r#"{"kty": 5}"#.into(), "privateJwk"),
        ];
        for (json, field) in cases {
            let err = SigningKey::from_jwk_json(&json).expect_err(&json);
            match &err {
                Error::Config { field: f, .. } => assert_eq!(f, field, "{json}: {err}"),
                other => panic!("{json}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn mismatched_key_material_is_rejected() {
        let a = PrivateJwk::generate_ec(Algorithm::ES256).expect("a");
        let b = PrivateJwk::generate_ec(Algorithm::ES256).expect("b");
        let mixed = PrivateJwk {
            d: b.d.clone(),
            ..a
        };
        let err = SigningKey::from_jwk(&mixed).expect_err("mixed key");
        assert!(err.to_string().contains("privateJwk"), "{err}");

        let a = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("a");
        let b = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("b");
        let mixed = PrivateJwk {
            p: b.p.clone(),
            ..a
        };
        let err = SigningKey::from_jwk(&mixed).expect_err("mixed key");
        assert!(err.to_string().contains("privateJwk"), "{err}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
        let d = jwk.d.as_deref().expect("d").to_string();
        let key = SigningKey::from_jwk(&jwk).expect("key");
        for text in [format!("{jwk:?}"), format!("{key:?}")] {
            assert!(!text.contains(&d), "{text}");
        }
        // A wrong-typed private member is reported without quoting it.
        let json = jwk.to_json().replace("\"d\":\"", "\"d\":[\"");
        let err = PrivateJwk::from_json(&json).expect_err("bad json");
        assert!(!err.to_string().contains(&d), "{err}");
    }
}
