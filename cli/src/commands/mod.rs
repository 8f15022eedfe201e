//! One module per command, or per family of commands.

pub(crate) mod codegen;
pub(crate) mod config;
pub(crate) mod emulator;
pub(crate) mod events;
pub(crate) mod gate;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod msh;
pub(crate) mod proxy;
pub(crate) mod register;
pub(crate) mod token;

/// An error a command returns: `main` prints it as one line.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a command returns.
pub(crate) type CliResult = Result<(), BoxError>;
