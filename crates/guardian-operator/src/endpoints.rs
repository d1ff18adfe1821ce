//! The endpoint pool of a config: what the daemon, the operators' commands and the API use.

use std::{sync::Arc, time::Duration};

use eyre::{Result, eyre};
use guardian_config::Config;
use guardian_rpc::{EndpointSpec, RpcPool};

/// Per-request RPC timeout: a node slower than this counts as stalled and the next endpoint is
/// tried.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint pool of `config`'s `[[rpc]]` list (bearer tokens included), bound to its chain id.
pub fn rpc_pool(config: &Config) -> Result<Arc<RpcPool>> {
    let place = config.source.display();
    let endpoints = config
        .rpc
        .iter()
        .map(|e| {
            let url = e
                .url
                .expose()
                .parse()
                .map_err(|_| eyre!("{place}: RPC endpoint {} is not a valid URL", e.display))?;
            Ok(EndpointSpec { url, bearer: e.bearer.as_ref().map(|b| b.expose().to_owned()) })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(
        RpcPool::new(endpoints, config.chain.id, RPC_TIMEOUT).map_err(|e| eyre!("{place}: {e}"))?,
    ))
}
