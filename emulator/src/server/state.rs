//! The state behind the listener: each room's own, composed. The IdP's handlers take
//! [`crate::idp::state::State`], the APIs' [`crate::apis::state::State`] (which holds the
//! IdP's, to check its tokens); the fault middleware takes this whole.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::server::faults::Faults;

/// The router's state: the rooms' states and the faults injected in front of them.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) idp: Arc<crate::idp::state::State>,
    pub(crate) apis: Arc<crate::apis::state::State>,
    pub(crate) faults: Arc<Faults>,
    /// The Meldingstjener (MSH) v2: its messages, behind the APIs' register and IdP.
    pub(crate) msh: Arc<crate::apis::msh::Msh>,
}

impl FromRef<State> for Arc<crate::idp::state::State> {
    fn from_ref(state: &State) -> Self {
        Arc::clone(&state.idp)
    }
}

impl FromRef<State> for Arc<crate::apis::state::State> {
    fn from_ref(state: &State) -> Self {
        Arc::clone(&state.apis)
    }
}
