//! The answers to a request that does not pass: RFC 6750 section 3 and RFC 9449
//! section 7, each reason a fixed text in RFC 6750's `error_description` character set
//! that quotes nothing from the request.

use std::fmt;

use http::{HeaderValue, Response, StatusCode, header};

/// The DPoP algorithms a proof may use, as the `algs` parameter lists them.
pub(crate) const PROOF_ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512";

/// An authentication scheme of the `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof header (RFC 9449).
    Dpop,
}

impl Scheme {
    /// The scheme's name as a challenge writes it: `Bearer` or `DPoP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        }
    }
}

/// Why a request was refused. Each reason has a short code ([`Reason::as_str`], for
/// logs and metrics) and a description ([`Display`](fmt::Display)), both fixed texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    // --- the request (400 invalid_request, or 401 without an error) ---
    /// No `Authorization` header with a scheme this layer accepts.
    NoCredentials,
    /// More than one `Authorization` header.
    SeveralAuthorizations,
    /// More than one `DPoP` header, or one holding more than one proof.
    SeveralProofs,
    /// A Bearer token sent with a `DPoP` proof: two schemes at once.
    BothSchemes,
    /// The `Authorization` header is not `<scheme> <token68>`.
    MalformedAuthorization,
    // --- the token (401 invalid_token) ---
    /// Bearer tokens are not accepted here (DPoP required).
    BearerNotAccepted,
    /// DPoP is not accepted here.
    DpopNotAccepted,
    /// The token is not a compact JWS (parts, base64url, JSON, size).
    MalformedToken,
    /// A JSON member of the token appears twice.
    DuplicateMember,
    /// The token's header has `crit`.
    CriticalHeader,
    /// The token's `alg` is not an asymmetric algorithm HelseID signs with.
    UnsupportedAlgorithm,
    /// The token's header carries a key or a key URL (`jwk`, `jku`, `x5u`, `x5c`).
    EmbeddedKey,
    /// The token's `typ` is not an access token's.
    WrongType,
    /// The token's header has no `kid`.
    NoKeyId,
    /// The token's `iss` is none of the configured issuers.
    UnknownIssuer,
    /// No key of the issuer has the token's `kid`.
    UnknownKey,
    /// The key with the token's `kid` does not fit the token's `alg`.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The token has no (numeric) `exp`.
    NoExpiry,
    /// The token has expired.
    Expired,
    /// The token's `nbf` is in the future.
    NotYetValid,
    /// The token's `iat` is in the future.
    IssuedInFuture,
    /// The token's `aud` does not name this API.
    WrongAudience,
    /// The token names more than one audience (strict single-audience mode).
    SeveralAudiences,
    /// A claim has the wrong JSON type.
    MalformedClaim,
    /// An ID token was sent as an access token.
    IdToken,
    /// A client assertion was sent as an access token.
    ClientAssertion,
    /// A DPoP-bound token (`cnf`) was sent as a Bearer token.
    BoundTokenAsBearer,
    /// A token that is not DPoP-bound was sent with the DPoP scheme.
    UnboundToken,
    // --- the proof (401 invalid_dpop_proof) ---
    /// The DPoP scheme without a `DPoP` proof header.
    NoProof,
    /// The proof is not a compact JWS, or has a repeated member or `crit`.
    MalformedProof,
    /// The proof's `typ` is not `dpop+jwt`.
    ProofType,
    /// The proof's `alg` is not an asymmetric algorithm.
    ProofAlgorithm,
    /// The proof's `jwk` is missing, private, or not a usable key for its `alg`.
    ProofKey,
    /// The proof's signature does not verify with its `jwk`.
    ProofSignature,
    /// The proof's `htm` is not the request's method.
    ProofMethod,
    /// The proof's `htu` is not the request's URI.
    ProofUri,
    /// The proof's `iat` is missing or outside the accepted window.
    ProofTime,
    /// The proof's `jti` is missing or was seen before.
    ProofReplay,
    /// The proof's `ath` is missing or not the token's hash.
    ProofTokenHash,
    /// The proof's key is not the one the token is bound to (`cnf.jkt`).
    ProofKeyBinding,
    /// The proof's nonce is missing or stale (401 use_dpop_nonce).
    ProofNonce,
    // --- the rest ---
    /// The token lacks every scope this API accepts (403 insufficient_scope).
    InsufficientScope,
    /// The token's security level is below what the route requires (403
    /// insufficient_scope).
    SecurityLevel,
    /// The issuer's keys (or the proof replay store) cannot be reached (503).
    Unavailable,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`): the metrics count
    /// refusals by this index.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Reason; 45] = {
        use Reason::*;
        [
            NoCredentials,
            SeveralAuthorizations,
            SeveralProofs,
            BothSchemes,
            MalformedAuthorization,
            BearerNotAccepted,
            DpopNotAccepted,
            MalformedToken,
            DuplicateMember,
            CriticalHeader,
            UnsupportedAlgorithm,
            EmbeddedKey,
            WrongType,
            NoKeyId,
            UnknownIssuer,
            UnknownKey,
            KeyMismatch,
            BadSignature,
            NoExpiry,
            Expired,
            NotYetValid,
            IssuedInFuture,
            WrongAudience,
            SeveralAudiences,
            MalformedClaim,
            IdToken,
            ClientAssertion,
            BoundTokenAsBearer,
            UnboundToken,
            NoProof,
            MalformedProof,
            ProofType,
            ProofAlgorithm,
            ProofKey,
            ProofSignature,
            ProofMethod,
            ProofUri,
            ProofTime,
            ProofReplay,
            ProofTokenHash,
            ProofKeyBinding,
            ProofNonce,
            InsufficientScope,
            SecurityLevel,
            Unavailable,
        ]
    };

    /// A short code for logs and metrics, for example `expired` or `proof_replay`.
    pub fn as_str(self) -> &'static str {
        self.texts().0
    }

    fn texts(self) -> (&'static str, &'static str) {
        use Reason::*;
        match self {
            NoCredentials => ("no_credentials", "no access token"),
            SeveralAuthorizations => (
                "several_authorizations",
                "more than one Authorization header",
            ),
            SeveralProofs => ("several_proofs", "more than one DPoP proof"),
            BothSchemes => ("both_schemes", "a Bearer token with a DPoP proof"),
            MalformedAuthorization => (
                "malformed_authorization",
                "the Authorization header is malformed",
            ),
            BearerNotAccepted => (
                "bearer_not_accepted",
                "Bearer tokens are not accepted: use DPoP",
            ),
            DpopNotAccepted => ("dpop_not_accepted", "DPoP is not accepted: use Bearer"),
            MalformedToken => ("malformed_token", "the token is not a compact JWS"),
            DuplicateMember => ("duplicate_member", "the token has a repeated JSON member"),
            CriticalHeader => ("critical_header", "the token has a crit header"),
            UnsupportedAlgorithm => (
                "unsupported_algorithm",
                "the token's algorithm is not accepted",
            ),
            EmbeddedKey => (
                "embedded_key",
                "the token's header carries a key or key URL",
            ),
            WrongType => ("wrong_type", "the token's typ is not at+jwt"),
            NoKeyId => ("no_key_id", "the token has no kid"),
            UnknownIssuer => ("unknown_issuer", "the token's issuer is not accepted"),
            UnknownKey => (
                "unknown_key",
                "the token's key is not among the issuer's keys",
            ),
            KeyMismatch => ("key_mismatch", "the token's algorithm does not fit its key"),
            BadSignature => ("bad_signature", "the token's signature does not verify"),
            NoExpiry => ("no_expiry", "the token has no exp"),
            Expired => ("expired", "the token has expired"),
            NotYetValid => ("not_yet_valid", "the token is not valid yet"),
            IssuedInFuture => ("issued_in_future", "the token was issued in the future"),
            WrongAudience => ("wrong_audience", "the token is not meant for this API"),
            SeveralAudiences => (
                "several_audiences",
                "the token names more than one audience",
            ),
            MalformedClaim => ("malformed_claim", "a claim of the token has the wrong type"),
            IdToken => ("id_token", "an ID token is not an access token"),
            ClientAssertion => (
                "client_assertion",
                "a client assertion is not an access token",
            ),
            BoundTokenAsBearer => (
                "bound_token_as_bearer",
                "a DPoP-bound token must be sent with the DPoP scheme",
            ),
            UnboundToken => ("unbound_token", "the token is not DPoP-bound"),
            NoProof => ("no_proof", "no DPoP proof"),
            MalformedProof => ("malformed_proof", "the DPoP proof is not a compact JWS"),
            ProofType => ("proof_type", "the DPoP proof's typ is not dpop+jwt"),
            ProofAlgorithm => (
                "proof_algorithm",
                "the DPoP proof's algorithm is not accepted",
            ),
            ProofKey => (
                "proof_key",
                "the DPoP proof's jwk is not a public key for its algorithm",
            ),
            ProofSignature => (
                "proof_signature",
                "the DPoP proof's signature does not verify",
            ),
            ProofMethod => (
                "proof_method",
                "the DPoP proof's htm is not the request's method",
            ),
            ProofUri => ("proof_uri", "the DPoP proof's htu is not the request's URI"),
            ProofTime => (
                "proof_time",
                "the DPoP proof's iat is missing or outside the window",
            ),
            ProofReplay => (
                "proof_replay",
                "the DPoP proof's jti is missing or was used before",
            ),
            ProofTokenHash => (
                "proof_token_hash",
                "the DPoP proof's ath does not match the token",
            ),
            ProofKeyBinding => (
                "proof_key_binding",
                "the DPoP proof's key is not the token's cnf key",
            ),
            ProofNonce => ("proof_nonce", "a fresh DPoP nonce is required"),
            InsufficientScope => (
                "insufficient_scope",
                "the token has none of the scopes this API requires",
            ),
            SecurityLevel => ("security_level", "the login's security level is too low"),
            Unavailable => ("unavailable", "the issuer's keys cannot be reached"),
        }
    }

    /// The OAuth error code the answer carries (`None` for a request without
    /// credentials or with a scheme this API does not accept, and for 503).
    pub fn error_code(self) -> Option<&'static str> {
        use Reason::*;
        Some(match self {
            // RFC 6750 section 3.1: a request without credentials, or with a scheme
            // this API does not accept, gets the challenges and no error code.
            NoCredentials | Unavailable | BearerNotAccepted | DpopNotAccepted => return None,
            SeveralAuthorizations | SeveralProofs | BothSchemes | MalformedAuthorization => {
                "invalid_request"
            }
            NoProof | MalformedProof | ProofType | ProofAlgorithm | ProofKey | ProofSignature
            | ProofMethod | ProofUri | ProofTime | ProofReplay | ProofTokenHash
            | ProofKeyBinding => "invalid_dpop_proof",
            ProofNonce => "use_dpop_nonce",
            InsufficientScope | SecurityLevel => "insufficient_scope",
            _ => "invalid_token",
        })
    }

    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self.error_code() {
            None if self == Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Some("invalid_request") => StatusCode::BAD_REQUEST,
            Some("insufficient_scope") => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.texts().1)
    }
}

/// A refused request: why, and what the answer says. Turned into the answer with
/// [`Refusal::into_response`]; the layer does so itself, and a handler that checks more
/// (a scope for one route, a security level) can too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    reason: Reason,
    /// The scheme the request used, whose challenge carries the error.
    used: Option<Scheme>,
    bearer: bool,
    dpop: bool,
    nonce: Option<String>,
    scope: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl std::error::Error for Refusal {}

/// Whether `c` may stand in a quoted `error_description` or `scope` (RFC 6750 section
/// 3: `%x20-21 / %x23-5B / %x5D-7E`).
pub(crate) fn rfc6750_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

impl Refusal {
    /// A refusal for `reason`, answered with the challenges of the schemes given.
    pub(crate) fn new(reason: Reason, used: Option<Scheme>, bearer: bool, dpop: bool) -> Self {
        Refusal {
            reason,
            used,
            bearer,
            dpop,
            nonce: None,
            scope: None,
        }
    }

    /// A 403 `insufficient_scope` for a token sent with `used`, naming the scopes
    /// that would do (scope tokens outside RFC 6749's character set are left out).
    pub fn insufficient_scope(used: Scheme, scopes: &[&str]) -> Self {
        let scope = scopes
            .iter()
            .filter(|s| !s.is_empty() && s.chars().all(|c| c != ' ' && rfc6750_char(c)))
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        Refusal {
            scope: Some(scope),
            ..Refusal::new(
                Reason::InsufficientScope,
                Some(used),
                used == Scheme::Bearer,
                used == Scheme::Dpop,
            )
        }
    }

    /// A 403 `insufficient_scope` because the login's security level is too low.
    pub fn security_level(used: Scheme) -> Self {
        Refusal::new(
            Reason::SecurityLevel,
            Some(used),
            used == Scheme::Bearer,
            used == Scheme::Dpop,
        )
    }

    pub(crate) fn with_nonce(mut self, nonce: String) -> Self {
        self.nonce = Some(nonce);
        self
    }

    pub(crate) fn with_scope(mut self, scope: String) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Why the request was refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The `WWW-Authenticate` challenges: the scheme the request used first (carrying
    /// the error), then the other scheme this API accepts, without an error.
    pub fn challenges(&self) -> Vec<HeaderValue> {
        let mut schemes = Vec::with_capacity(2);
        if let Some(used) = self.used {
            schemes.push(used);
        }
        for (accepted, scheme) in [(self.dpop, Scheme::Dpop), (self.bearer, Scheme::Bearer)] {
            if accepted && !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        if schemes.is_empty() {
            schemes.push(Scheme::Dpop);
        }
        schemes
            .into_iter()
            .enumerate()
            .filter_map(|(i, scheme)| {
                let with_error = i == 0 && self.used.is_some();
                HeaderValue::from_str(&self.challenge(scheme, with_error)).ok()
            })
            .collect()
    }

    fn challenge(&self, scheme: Scheme, with_error: bool) -> String {
        let mut params: Vec<String> = Vec::new();
        if scheme == Scheme::Dpop {
            params.push(format!("algs=\"{PROOF_ALGS}\""));
        }
        if with_error && let Some(code) = self.reason.error_code() {
            params.push(format!("error=\"{code}\""));
            let description = self.reason.to_string();
            debug_assert!(description.chars().all(rfc6750_char));
            params.push(format!("error_description=\"{description}\""));
            if let Some(scope) = &self.scope {
                let scope: String = scope.chars().filter(|c| rfc6750_char(*c)).collect();
                params.push(format!("scope=\"{scope}\""));
            }
        }
        if params.is_empty() {
            scheme.as_str().to_owned()
        } else {
            format!("{} {}", scheme.as_str(), params.join(", "))
        }
    }

    /// The answer: the status, the challenges, and for a nonce challenge the
    /// `DPoP-Nonce` header and `Cache-Control: no-store`; the body is empty
    /// (`B::default()`).
    pub fn into_response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        if self.reason != Reason::Unavailable {
            for value in self.challenges() {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(nonce) = self.nonce.as_deref()
            && let Ok(value) = HeaderValue::from_str(nonce)
        {
            headers.insert("dpop-nonce", value);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if self.reason == Reason::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_reason_is_listed_in_order() {
        // A new variant breaks this match: add it to `Reason::ALL` too.
        fn listed(reason: Reason) {
            use Reason::*;
            match reason {
                NoCredentials
                | SeveralAuthorizations
                | SeveralProofs
                | BothSchemes
                | MalformedAuthorization
                | BearerNotAccepted
                | DpopNotAccepted
                | MalformedToken
                | DuplicateMember
                | CriticalHeader
                | UnsupportedAlgorithm
                | EmbeddedKey
                | WrongType
                | NoKeyId
                | UnknownIssuer
                | UnknownKey
                | KeyMismatch
                | BadSignature
                | NoExpiry
                | Expired
                | NotYetValid
                | IssuedInFuture
                | WrongAudience
                | SeveralAudiences
                | MalformedClaim
                | IdToken
                | ClientAssertion
                | BoundTokenAsBearer
                | UnboundToken
                | NoProof
                | MalformedProof
                | ProofType
                | ProofAlgorithm
                | ProofKey
                | ProofSignature
                | ProofMethod
                | ProofUri
                | ProofTime
                | ProofReplay
                | ProofTokenHash
                | ProofKeyBinding
                | ProofNonce
                | InsufficientScope
                | SecurityLevel
                | Unavailable => {}
            }
        }
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            listed(reason);
            assert_eq!(reason as usize, i, "{reason:?}");
        }
    }

    use super::*;

    #[test]
    fn every_description_is_in_rfc6750s_character_set() {
        use Reason::*;
        let all = [
            NoCredentials,
            SeveralAuthorizations,
            SeveralProofs,
            BothSchemes,
            MalformedAuthorization,
            BearerNotAccepted,
            DpopNotAccepted,
            MalformedToken,
            DuplicateMember,
            CriticalHeader,
            UnsupportedAlgorithm,
            EmbeddedKey,
            WrongType,
            NoKeyId,
            UnknownIssuer,
            UnknownKey,
            KeyMismatch,
            BadSignature,
            NoExpiry,
            Expired,
            NotYetValid,
            IssuedInFuture,
            WrongAudience,
            SeveralAudiences,
            MalformedClaim,
            IdToken,
            ClientAssertion,
            BoundTokenAsBearer,
            UnboundToken,
            NoProof,
            MalformedProof,
            ProofType,
            ProofAlgorithm,
            ProofKey,
            ProofSignature,
            ProofMethod,
            ProofUri,
            ProofTime,
            ProofReplay,
            ProofTokenHash,
            ProofKeyBinding,
            ProofNonce,
            InsufficientScope,
            SecurityLevel,
            Unavailable,
        ];
        for reason in all {
            assert!(reason.to_string().chars().all(rfc6750_char), "{reason:?}");
            assert!(
                reason
                    .as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
            let refusal = Refusal::new(reason, Some(Scheme::Dpop), true, true);
            let response = refusal.into_response::<String>();
            assert_eq!(response.status(), reason.status());
        }
    }

    #[test]
    fn challenges_name_the_used_scheme_first() {
        let r = Refusal::new(Reason::Expired, Some(Scheme::Bearer), true, true);
        let c = r.challenges();
        assert_eq!(
            c[0],
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
        assert_eq!(c[1], format!("DPoP algs=\"{PROOF_ALGS}\"").as_str());
        let none = Refusal::new(Reason::NoCredentials, None, true, true).challenges();
        assert_eq!(none.len(), 2);
        assert!(
            none.iter()
                .all(|v| !v.to_str().unwrap_or("error").contains("error"))
        );
        let scope = Refusal::insufficient_scope(Scheme::Dpop, &["a", "b\"c", "d"])
            .into_response::<String>();
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        let value = scope.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or("");
        assert!(value.ends_with("scope=\"a d\""), "{value}");
    }
}
