//! A service's own clients of NHN's APIs, each generated in `build.rs` by
//! `helseid-codegen` from the API's OpenAPI document as published, and included with
//! `helseid::include_client!`. This crate depends on `helseid` alone (feature
//! `codegen`). `docs/any-api.md` walks through it; `tests/melde.rs` makes a call.

/// Melde.no API v2 (adverse-event reporting): DPoP-bound tokens.
pub mod melde {
    helseid::include_client!("melde.rs");
}

/// Persontjenesten API v2 (population-register data for the health sector).
pub mod persontjenesten {
    helseid::include_client!("persontjenesten.rs");
}

/// The Meldingstjener (MSH) REST API v2: health messages between HER-ids.
pub mod msh {
    helseid::include_client!("msh.rs");
}

/// The CommunicationParty Events API, as a service would generate it.
pub mod cpe {
    helseid::include_client!("cpe.rs");
}

/// The CommunicationParty API v2, as a service would generate it.
pub mod cpapi {
    helseid::include_client!("cpapi.rs");
}
