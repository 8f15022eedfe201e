//! The argument group the API commands share: `--config`, `--env` and `--base-url`.

use std::path::PathBuf;

use helseid::config::{ClientConfig, Environment};

use crate::commands::BoxError;
use crate::demo::{Demo, config_or_demo};

/// Where a command's client comes from, and which API it calls.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// A client configuration file downloaded from HelseID's self-service portal.
    /// Without it, the command runs against the embedded emulator.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Use this HelseID environment, and the API in it, instead of the file's authority.
    #[arg(long, value_enum, requires = "config")]
    pub(crate) env: Option<EnvArg>,
    /// The API's base URL. Default: the API in the authority's environment (or the
    /// emulator).
    #[arg(long, value_name = "URL", requires = "config")]
    pub(crate) base_url: Option<String>,
}

impl Target {
    /// The configuration from `--config` with `--env`'s authority, or the embedded
    /// emulator's demo client (which `demo` then keeps running).
    pub(crate) async fn client_config(
        &self,
        demo: &mut Option<Demo>,
    ) -> Result<ClientConfig, BoxError> {
        let mut config = config_or_demo(self.config.as_deref(), demo).await?;
        if let Some(env) = self.env {
            // The default base URL follows the authority: the API in that environment.
            config = config.with_authority(env.environment().authority());
        }
        Ok(config)
    }
}

/// A HelseID environment, as `--env` names it.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum EnvArg {
    Test,
    Prod,
}

impl EnvArg {
    pub(crate) fn environment(self) -> Environment {
        match self {
            EnvArg::Test => Environment::Test,
            EnvArg::Prod => Environment::Prod,
        }
    }
}
