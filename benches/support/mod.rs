//! What the benches share: the token, its source, the echo service, the tenants.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use helseid::assertion::Tenant;
use helseid::cache::FetchToken;
use helseid::endpoint::TokenRequest;
use helseid::token::{AccessToken, TokenType};
use http::{Request, Response};

const TOKEN_LEN: usize = 900;

/// A 900-character token from the base64url alphabet and dots, as a JWT looks.
pub(crate) fn bearer_token() -> Arc<str> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let token: String = (0..TOKEN_LEN)
        .map(|i| match i {
            100 | 700 => '.',
            _ => char::from(ALPHABET[(i * 7 + 3) % ALPHABET.len()]),
        })
        .collect();
    token.into()
}

/// A token source that answers at once with `token`, valid for an hour: a DPoP token
/// when the request asks for one.
pub(crate) fn source(token: Arc<str>) -> impl FetchToken + Clone {
    helseid::cache::fetch_fn("bench", move |request: TokenRequest| {
        let token_type = match request.dpop() {
            Some(_) => TokenType::DPoP,
            None => TokenType::Bearer,
        };
        std::future::ready(AccessToken::new(
            token.to_string(),
            token_type,
            Duration::from_secs(3600),
        ))
    })
}

/// The in-memory echo service: `tower::service_fn(echo)`.
pub(crate) fn echo(_request: Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>> {
    std::future::ready(Ok(Response::new(())))
}

/// `n` multi-tenant organisations with a sub-unit each.
pub(crate) fn tenants(n: usize) -> Vec<Tenant> {
    (0..n)
        .map(|i| {
            format!("{:09}:{:09}", 100_000_000 + i, 200_000_000 + i)
                .parse()
                .expect("tenant")
        })
        .collect()
}
