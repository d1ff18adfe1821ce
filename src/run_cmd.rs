//! `guardian run`: the daemon.

use std::path::PathBuf;

use clap::Args;
use eyre::{Result, WrapErr};
use tokio::sync::watch;
use tracing::info;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// guardian's config file (guardian.toml; config/guardian.toml is the commented template).
    #[arg(long, env = "GUARDIAN_CONFIG", default_value = "config/guardian.toml")]
    config: PathBuf,
}

pub(crate) async fn run(args: RunArgs) -> Result<()> {
    let config = guardian_config::Config::load(&args.config)?;
    guardian_daemon::metrics::set_build_info(
        crate::build_info::VERSION,
        crate::build_info::GIT_COMMIT,
    );
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .wrap_err("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupted; finishing the current step"),
            _ = term.recv() => info!("terminated; finishing the current step"),
        }
        stop.send_replace(true);
        eyre::Ok(())
    });
    guardian_daemon::daemon::run(&config, shutdown).await
}
