//! What the rooms share: the state, answers and problem bodies, errors, forms, faults,
//! the Swagger UI.

pub(crate) mod error;
pub(crate) mod faults;
pub(crate) mod form;
pub(crate) mod response;
pub(crate) mod state;
pub(crate) mod swagger;
