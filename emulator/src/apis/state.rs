//! The APIs' state: the register both serve (with CPE's page size and request counter),
//! the CommunicationParty API v2's settings, counter and certificates, and the IdP whose
//! tokens they take (as an API trusts HelseID: its issuer, keys and DPoP checks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;

use crate::apis::cpapi::certificates::Certificates;
use crate::apis::register::Register;
use crate::server::lock;

/// What the API handlers share.
pub(crate) struct State {
    /// The IdP whose tokens the APIs take.
    pub(crate) idp: Arc<crate::idp::state::State>,
    pub(crate) cpe: Cpe,
    pub(crate) cpapi: Cpapi,
}

impl State {
    /// The APIs in front of `idp`'s tokens, CPE's register being `cpe`.
    pub(crate) fn new(idp: Arc<crate::idp::state::State>, cpe: Cpe) -> Self {
        State {
            idp,
            cpe,
            cpapi: Cpapi::default(),
        }
    }
}

/// The CPE API's state: the register, the page size and a request counter.
#[derive(Debug)]
pub(crate) struct Cpe {
    pub(crate) register: Mutex<Register>,
    pub(crate) page_size: usize,
    requests: AtomicU64,
}

impl Cpe {
    /// The seeded register, served `page_size` events at a time.
    pub(crate) fn new(page_size: usize) -> Self {
        Cpe {
            register: Mutex::new(Register::seed()),
            page_size,
            requests: AtomicU64::new(0),
        }
    }

    /// How many requests reached the CPE endpoints.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many events the feed holds.
    pub(crate) fn events(&self) -> usize {
        lock(&self.register).events()
    }

    /// How many parties the register holds.
    pub(crate) fn parties(&self) -> usize {
        lock(&self.register).parties()
    }

    /// Appends an update event for a party, now.
    pub(crate) fn publish_update(&self, her_id: i32) -> Option<String> {
        lock(&self.register).publish_update(her_id, Utc::now())
    }

    /// Counts a request to the CPE endpoints.
    pub(crate) fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The register, locked; the CommunicationParty API v2 serves it too.
    pub(crate) fn register(&self) -> MutexGuard<'_, Register> {
        lock(&self.register)
    }
}

/// The API's state: a request counter, and the parties' certificates.
#[derive(Debug, Default)]
pub(crate) struct Cpapi {
    pub(crate) requests: AtomicU64,
    /// The parties' certificates, made when first asked for.
    pub(crate) certificates: Certificates,
}

impl Cpapi {
    /// Counts a request to the API's endpoints.
    pub(crate) fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests reached the API's endpoints.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}
