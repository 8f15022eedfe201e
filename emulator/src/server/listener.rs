//! The listener: the routes of both rooms on one address, the fault middleware in front
//! of them, and gzip for the answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::Router;
use axum::routing::{get, post};

use crate::apis::{cpapi, cpe};
use crate::idp::{discovery, login, selvbetjening, test_token, token};
use crate::server::state::State;
use crate::server::verify::Verifier;
use crate::server::{faults, swagger};

/// The verifiers of the APIs, each in front of its API's routes.
#[derive(Clone, Debug)]
pub(crate) struct Verifiers {
    pub(crate) cpe: std::sync::Arc<Verifier>,
    pub(crate) cpapi: std::sync::Arc<Verifier>,
    /// Selvbetjening's client-secret API, whose refusals are problem+json.
    pub(crate) selvbetjening: std::sync::Arc<Verifier>,
}

impl Verifiers {
    /// Rebuilds every API's layer (see [`Verifier::rebuild`]).
    pub(crate) fn rebuild(&self) {
        self.cpe.rebuild();
        self.cpapi.rebuild();
        self.selvbetjening.rebuild();
    }
}

/// The address clients reach the listener at: an unspecified address (`0.0.0.0`, `::`)
/// becomes the loopback address.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The emulator's HTTP routes; each API's behind its verifier.
pub(crate) fn router(state: State, verifiers: &Verifiers) -> Router {
    // NHN deprecated the legacy model; the emulator serves it all the same.
    #[allow(deprecated)]
    let legacy = get(cpapi::legacy_party);
    let cpe_routes = Router::new()
        .route("/CommunicationPartyEvents", get(cpe::events))
        .route("/CommunicationPartyExport", get(cpe::export))
        .route("/CommunicationParties/{herId}", get(cpe::party))
        .route_layer(verifiers.cpe.gate());
    let cpapi_routes = Router::new()
        .route("/api/v1/event", get(cpapi::events))
        .route("/api/v1/event/latest", get(cpapi::latest_event))
        .route("/api/v1/communicationparty", post(cpapi::parties))
        .route("/api/v1/communicationparty/search", post(cpapi::search))
        .route("/api/v1/communicationparty/export", get(cpapi::export))
        .route("/api/v1/communicationparty/{herId}", get(cpapi::party))
        .route("/api/v1/communicationparty/{herId}/legacy", legacy)
        .route(
            "/api/v1/organization/{organizationNumber}",
            get(cpapi::organization),
        )
        .route("/api/v1/certificate/{herId}", get(cpapi::certificates))
        .route(
            "/api/v1/certificate/{herId}/signing",
            get(cpapi::signing_certificate),
        )
        .route(
            "/api/v1/certificate/{herId}/encryption",
            get(cpapi::encryption_certificate),
        )
        .route_layer(verifiers.cpapi.gate());
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route("/test-token", post(test_token::test_token))
        .route(
            "/.well-known/openid-configuration/jwks",
            get(discovery::jwks),
        )
        .route("/connect/token", post(token::token))
        .route("/connect/par", post(login::flow::par))
        .route("/connect/authorize", get(login::flow::authorize))
        .route(login::LOGIN_FORM_PATH, post(login::flow::login))
        .route("/connect/endsession", get(login::flow::end_session))
        .route("/connect/revocation", post(login::flow::revocation))
        .merge(cpe_routes)
        .route("/openapi.json", get(cpe::openapi))
        .merge(cpapi_routes)
        .route("/cpapi/openapi.json", get(cpapi::openapi))
        .merge(
            Router::new()
                .route(
                    selvbetjening::PATH,
                    get(selvbetjening::get).post(selvbetjening::post),
                )
                .route_layer(verifiers.selvbetjening.problem_gate(selvbetjening::PATH)),
        )
        .merge(swagger::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::inject::inject,
        ))
        .with_state(state)
        // Answers compressed with gzip when the client asks (NHN's export is large).
        .layer(tower_http::compression::CompressionLayer::new())
}
