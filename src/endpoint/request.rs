//! What to ask the token endpoint for: the [`Grant`] and the [`TokenRequest`].

use crate::assertion::{JournalId, Tenant};
use crate::dpop::DpopKey;
use crate::exchange::{SubjectToken, TOKEN_EXCHANGE_GRANT};
use crate::token::RefreshToken;
use zeroize::Zeroizing;

/// The grant of a token request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Grant {
    /// `client_credentials`: the client acts for itself (or for a [`Tenant`]).
    ClientCredentials,
    /// Token exchange (RFC 8693): the client exchanges a token it received (the
    /// [`SubjectToken`]) for a token to a downstream API.
    TokenExchange,
    /// `refresh_token`: a new access token for a user's session.
    RefreshToken,
    /// `authorization_code`: the code of a user's login, with the PKCE verifier (see
    /// the `login` module).
    AuthorizationCode,
}

impl Grant {
    /// The `grant_type` form value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::TokenExchange => TOKEN_EXCHANGE_GRANT,
            Grant::RefreshToken => "refresh_token",
            Grant::AuthorizationCode => "authorization_code",
        }
    }
}

/// What to ask the token endpoint for.
///
/// `Debug` never shows the subject or refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    pub(super) grant: Grant,
    pub(super) scopes: Vec<String>,
    pub(super) resource: Option<String>,
    pub(super) tenant: Option<Tenant>,
    pub(super) journal: Option<JournalId>,
    pub(super) subject: Option<SubjectToken>,
    pub(super) refresh_token: Option<RefreshToken>,
    pub(super) dpop: Option<DpopKey>,
    pub(super) code: Option<CodeGrant>,
}

/// What an `authorization_code` request carries besides the client's assertion: the
/// code, the PKCE verifier and the redirect URI. `Debug` never shows the code or the
/// verifier.
#[derive(Clone)]
pub(crate) struct CodeGrant {
    pub(crate) code: Zeroizing<String>,
    pub(crate) verifier: Zeroizing<String>,
    pub(crate) redirect_uri: String,
}

impl PartialEq for CodeGrant {
    fn eq(&self, other: &Self) -> bool {
        *self.code == *other.code
            && *self.verifier == *other.verifier
            && self.redirect_uri == other.redirect_uri
    }
}

impl Eq for CodeGrant {}

impl std::hash::Hash for CodeGrant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code.as_str().hash(state);
        self.redirect_uri.hash(state);
    }
}

impl std::fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGrant")
            .field("code", &"[redacted]")
            .field("verifier", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl TokenRequest {
    /// A client-credentials request for `scopes` (none: the client's default scopes at
    /// HelseID).
    pub fn client_credentials(scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::with_grant(Grant::ClientCredentials, scopes)
    }

    /// A token exchange (RFC 8693) of `subject` for a token with the downstream
    /// `scopes`.
    pub fn token_exchange(
        subject: SubjectToken,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with_grant(Grant::TokenExchange, scopes).with_subject(subject)
    }

    /// A refresh with `refresh_token`, for `scopes` (none: the session's scopes).
    pub fn refresh(
        refresh_token: RefreshToken,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let mut request = Self::with_grant(Grant::RefreshToken, scopes);
        request.refresh_token = Some(refresh_token);
        request
    }

    /// A request of `grant` for `scopes`, without the grant's token yet.
    pub(crate) fn with_grant(
        grant: Grant,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        TokenRequest {
            grant,
            scopes: scopes.into_iter().map(Into::into).collect(),
            resource: None,
            tenant: None,
            journal: None,
            subject: None,
            refresh_token: None,
            dpop: None,
            code: None,
        }
    }

    /// An `authorization_code` request for the code of a login.
    #[cfg(feature = "login")]
    pub(crate) fn authorization_code(grant: CodeGrant) -> Self {
        let mut request = Self::with_grant(Grant::AuthorizationCode, Vec::<String>::new());
        request.code = Some(grant);
        request
    }

    /// This request with another subject token (token exchange).
    pub fn with_subject(mut self, subject: SubjectToken) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The subject token of a token exchange.
    pub fn subject(&self) -> Option<&SubjectToken> {
        self.subject.as_ref()
    }

    /// Asks for a token for one resource (RFC 8707 `resource`).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Acts for an organisation (sent as `assertion_details` in the client assertion).
    pub fn with_tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Acts in the context of an SFM patient journal: the client assertion carries the
    /// `nhn:sfm:journal-id` detail (beside the tenant's, as an array). Tokens are cached
    /// per journal id.
    pub fn with_journal_id(mut self, journal: JournalId) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The SFM journal id, when the request carries one.
    pub fn journal_id(&self) -> Option<&JournalId> {
        self.journal.as_ref()
    }

    /// The grant.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The resource asked for.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The tenant acted for.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Asks for a DPoP-bound token (RFC 9449): the request carries a proof made with
    /// `key`, HelseID's nonce challenge is answered, and the token that comes back must
    /// be `token_type: DPoP`.
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The DPoP key the token is to be bound to.
    pub fn dpop(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }
}
