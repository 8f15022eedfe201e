//! The Swagger UI at `/swagger` for the APIs the emulator serves: CPE
//! (`/openapi.json`, a bearer token) and CommunicationParty API v2
//! (`/cpapi/openapi.json`). Its assets are utoipa-swagger-ui's vendored copy, built into
//! the emulator: nothing is downloaded, at build time or at run time.

use axum::Router;
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

use crate::server::state::State;

/// Where the Swagger UI is served.
pub const SWAGGER_PATH: &str = "/swagger";

/// The Swagger UI's routes: the page and its assets, with a selector of the two API
/// documents the emulator already serves (with its own address as their server).
pub(crate) fn routes() -> Router<State> {
    let config = Config::new([
        Url::new("CPE (CommunicationParty Events)", "/openapi.json"),
        Url::new("CommunicationParty API v2", "/cpapi/openapi.json"),
        Url::new("Meldingstjener (MSH) v2", "/msh/openapi.json"),
    ]);
    Router::from(SwaggerUi::new(SWAGGER_PATH).config(config))
}
