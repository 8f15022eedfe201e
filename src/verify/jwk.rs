//! Public keys that verify signatures: parsed once from a JWK, each used only with its
//! own algorithm family (an RSA key with RS*/PS*, an EC key with the ES algorithm of its
//! curve, and only the JWK's `alg` when it names one).

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::jws::b64_canonical;
use crate::key::{Algorithm, PublicJwk};

/// Why a JWK cannot verify anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwkError {
    /// `kty` is missing or not `RSA`/`EC`.
    Type,
    /// `use` is there and is not `sig`.
    Use,
    /// `alg` is there and is no asymmetric algorithm this key can use.
    Alg,
    /// A member is missing, not base64url, or does not form a key.
    Material,
    /// A private member (`d`, `p`, ...) is there.
    Private,
}

enum Kind {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        /// The key parsed for each of RS256..PS512, on first use.
        parsed: Box<[OnceLock<Option<ParsedPublicKey>>; 6]>,
    },
    Ec {
        alg: Algorithm,
        parsed: ParsedPublicKey,
    },
}

/// A public key ready to verify signatures.
pub(crate) struct VerifyingKey {
    kind: Kind,
    /// The JWK's `alg`, when it named one: the only algorithm the key is used with.
    declared: Option<Algorithm>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kty = match self.kind {
            Kind::Rsa { .. } => "RSA",
            Kind::Ec { .. } => "EC",
        };
        f.debug_struct("VerifyingKey")
            .field("kty", &kty)
            .field("alg", &self.declared)
            .finish()
    }
}

/// The members of a JWK that only a private key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// The members of a JWK as [`PublicJwk`] reads them, without a copy of the map.
pub(crate) fn public_jwk(jwk: &Map<String, Value>) -> Option<PublicJwk> {
    let text = |name: &str| -> Result<Option<String>, ()> {
        match jwk.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        }
    };
    Some(PublicJwk {
        kty: text("kty").ok()??,
        kid: text("kid").ok()?,
        alg: text("alg").ok()?,
        use_: text("use").ok()?,
        n: text("n").ok()?,
        e: text("e").ok()?,
        crv: text("crv").ok()?,
        x: text("x").ok()?,
        y: text("y").ok()?,
    })
}

fn rsa_index(alg: Algorithm) -> Option<usize> {
    Some(match alg {
        Algorithm::RS256 => 0,
        Algorithm::RS384 => 1,
        Algorithm::RS512 => 2,
        Algorithm::PS256 => 3,
        Algorithm::PS384 => 4,
        Algorithm::PS512 => 5,
        _ => return None,
    })
}

fn rsa_params(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        _ => &signature::RSA_PSS_2048_8192_SHA512,
    }
}

impl VerifyingKey {
    /// A key from a JWK given as a JSON object (a JWKS entry, a proof's `jwk`). With
    /// `public_only`, a JWK that carries a private member is refused.
    pub(crate) fn from_json(jwk: &Map<String, Value>, public_only: bool) -> Result<Self, JwkError> {
        if public_only && PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(JwkError::Private);
        }
        let jwk = public_jwk(jwk).ok_or(JwkError::Material)?;
        Self::from_jwk(&jwk)
    }

    /// A key from a public JWK.
    pub(crate) fn from_jwk(jwk: &PublicJwk) -> Result<Self, JwkError> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::Use);
        }
        let declared = match jwk.alg.as_deref() {
            Some(alg) => Some(alg.parse::<Algorithm>().map_err(|_| JwkError::Alg)?),
            None => None,
        };
        let member = |m: &Option<String>| m.as_deref().and_then(b64_canonical);
        let kind = match jwk.kty.as_str() {
            "RSA" => {
                if declared.is_some_and(|a| !a.is_rsa()) {
                    return Err(JwkError::Alg);
                }
                let (Some(n), Some(e)) = (member(&jwk.n), member(&jwk.e)) else {
                    return Err(JwkError::Material);
                };
                let n = strip_zeros(n);
                let e = strip_zeros(e);
                if e.is_empty() || bits(&n) < 2048 || bits(&n) > 8192 {
                    return Err(JwkError::Material);
                }
                Kind::Rsa {
                    n,
                    e,
                    parsed: Default::default(),
                }
            }
            "EC" => {
                let (alg, len, verification): (
                    _,
                    _,
                    &'static signature::EcdsaVerificationAlgorithm,
                ) = match jwk.crv.as_deref() {
                    Some("P-256") => (Algorithm::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
                    Some("P-384") => (Algorithm::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
                    Some("P-521") => (Algorithm::ES512, 66, &signature::ECDSA_P521_SHA512_FIXED),
                    _ => return Err(JwkError::Material),
                };
                if declared.is_some_and(|a| a != alg) {
                    return Err(JwkError::Alg);
                }
                let (Some(x), Some(y)) = (member(&jwk.x), member(&jwk.y)) else {
                    return Err(JwkError::Material);
                };
                if x.len() != len || y.len() != len {
                    return Err(JwkError::Material);
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let parsed =
                    ParsedPublicKey::new(verification, point).map_err(|_| JwkError::Material)?;
                Kind::Ec { alg, parsed }
            }
            _ => return Err(JwkError::Type),
        };
        Ok(VerifyingKey { kind, declared })
    }

    /// Whether this key may verify a signature made with `alg`.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        if self.declared.is_some_and(|d| d != alg) {
            return false;
        }
        match &self.kind {
            Kind::Rsa { .. } => alg.is_rsa(),
            Kind::Ec { alg: own, .. } => *own == alg,
        }
    }

    /// Whether `signature` over `message` verifies under `alg` with this key (`false`
    /// when the key does not [fit](Self::fits) `alg`).
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.kind {
            Kind::Ec { parsed, .. } => parsed.verify_sig(message, signature).is_ok(),
            Kind::Rsa { n, e, parsed } => {
                let Some(index) = rsa_index(alg) else {
                    return false;
                };
                let key = parsed[index].get_or_init(|| {
                    RsaPublicKeyComponents {
                        n: &n[..],
                        e: &e[..],
                    }
                    .to_parsed_public_key(rsa_params(alg))
                    .ok()
                });
                key.as_ref()
                    .is_some_and(|k| k.verify_sig(message, signature).is_ok())
            }
        }
    }
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The number of significant bits of a big-endian integer without leading zero bytes.
fn bits(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{PrivateJwk, SigningKey};

    fn signed(alg: Algorithm) -> (SigningKey, String) {
        let jwk = if alg.is_rsa() {
            PrivateJwk::generate_rsa(2048, alg)
        } else {
            PrivateJwk::generate_ec(alg)
        }
        .expect("generate");
        let key = SigningKey::from_jwk(&jwk).expect("key");
        let jwt = key
            .sign_jwt("JWT", &serde_json::json!({"a": 1}))
            .expect("sign");
        (key, jwt)
    }

    fn check(key: &VerifyingKey, alg: Algorithm, jwt: &str) -> bool {
        let (message, sig) = jwt.rsplit_once('.').expect("dots");
        key.verifies(alg, message.as_bytes(), &b64_canonical(sig).expect("b64"))
    }

    #[test]
    fn each_key_verifies_its_own_family_only() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS384,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
        ] {
            let (signer, jwt) = signed(alg);
            let mut public = signer.public_jwk().clone();
            let key = VerifyingKey::from_jwk(&public).expect("key");
            assert!(check(&key, alg, &jwt), "{alg}");
            // Another algorithm of the same family, or another family: refused.
            for other in [Algorithm::RS512, Algorithm::PS256, Algorithm::ES256] {
                if other != alg {
                    assert!(
                        !key.fits(other) || !check(&key, other, &jwt),
                        "{alg} {other}"
                    );
                }
            }
            // Without `alg`, an RSA key fits every RSA algorithm, an EC key its curve's.
            public.alg = None;
            let key = VerifyingKey::from_jwk(&public).expect("key");
            assert!(check(&key, alg, &jwt), "{alg}");
            assert_eq!(key.fits(Algorithm::RS384), alg.is_rsa());
            assert!(!key.fits(if alg.is_rsa() {
                Algorithm::ES256
            } else {
                Algorithm::RS256
            }));
        }
    }

    #[test]
    fn bad_jwks_are_refused() {
        let (signer, _) = signed(Algorithm::ES256);
        let good = signer.public_jwk().clone();
        let mut enc = good.clone();
        enc.use_ = Some("enc".into());
        assert_eq!(VerifyingKey::from_jwk(&enc).unwrap_err(), JwkError::Use);
        let mut rsa_alg = good.clone();
        rsa_alg.alg = Some("RS256".into());
        assert_eq!(VerifyingKey::from_jwk(&rsa_alg).unwrap_err(), JwkError::Alg);
        let mut hs = good.clone();
        hs.alg = Some("HS256".into());
        assert_eq!(VerifyingKey::from_jwk(&hs).unwrap_err(), JwkError::Alg);
        let mut curve = good.clone();
        curve.alg = Some("ES384".into());
        assert_eq!(VerifyingKey::from_jwk(&curve).unwrap_err(), JwkError::Alg);
        let mut oct = good.clone();
        oct.kty = "oct".into();
        assert_eq!(VerifyingKey::from_jwk(&oct).unwrap_err(), JwkError::Type);
        let mut off = good.clone();
        off.x = off.y.clone().map(|y| y.replace('A', "B"));
        assert!(VerifyingKey::from_jwk(&off).is_err());
        let mut json = serde_json::to_value(&good).expect("json");
        json["d"] = "AAAA".into();
        let map = json.as_object().expect("object");
        assert_eq!(
            VerifyingKey::from_json(map, true).unwrap_err(),
            JwkError::Private
        );
    }

    #[test]
    fn short_rsa_keys_are_refused() {
        let (signer, _) = signed(Algorithm::RS256);
        let mut short = signer.public_jwk().clone();
        let n = b64_canonical(short.n.as_deref().expect("n")).expect("b64");
        short.n = Some(crate::jose::b64(&n[..128]));
        assert_eq!(
            VerifyingKey::from_jwk(&short).unwrap_err(),
            JwkError::Material
        );
    }
}
