//! The CP API v2 helper of the tests that have the `cpapi` feature: include it with
//! `#[path = "support/cpapi.rs"] mod cpapi_support;` beside `mod support;`.
// Each test crate uses a part of it.
#![allow(dead_code)]

use helseid::cpapi::Client;
use helseid_emulator::{Emulator, EmulatorBuilder};

use crate::support::TestClient;

/// Starts `builder`'s emulator with the client `client_id` registered for CP API v2
/// (DPoP required), and a typed client for it through the default DPoP stack.
pub(crate) async fn cpapi_against(builder: EmulatorBuilder, client_id: &str) -> (Emulator, Client) {
    let client = TestClient::ec(client_id);
    let emulator = builder
        .client(client.registration(&[helseid::cpapi::SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator");
    // No scopes in the configuration: the client's builder asks for its API's.
    let cpapi = Client::builder(client.config(emulator.issuer(), &[]))
        .build()
        .expect("client");
    (emulator, cpapi)
}

/// The HER-ids of the export (the active parties).
pub(crate) async fn exported(cpapi: &Client) -> Vec<i32> {
    cpapi
        .get_communication_party_export(None)
        .await
        .expect("export")
        .into_inner()
        .communication_parties
        .expect("HER-ids")
}
