//! The `camhub` command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use camhub::config::Config;
use camhub::hub::Hub;

#[derive(Parser)]
#[command(
    name = "camhub",
    version,
    about = "A camera hub: instant fresh snapshots from a fleet of IP cameras"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve cameras over HTTP. With no --config, serves the built-in demo cameras.
    Serve {
        /// YAML config file (see README: Configuration).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Listen address, overriding the config's server.listen (e.g. 127.0.0.1:0).
        #[arg(short, long)]
        listen: Option<String>,
    },
    /// Check a config file and exit: prints each camera, or the error with its line.
    Check { config: PathBuf },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAMHUB_LOG")
                .unwrap_or_else(|_| "camhub=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::Check { config } => {
            let cfg = Config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            for c in &cfg.cameras {
                println!("{}: {}", c.name, c.display_url());
            }
            Ok(())
        }
    }
}

/// How long the first SIGINT/SIGTERM waits for requests and cameras to finish.
const DRAIN: Duration = Duration::from_secs(5);

fn serve(config: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<()> {
    let (cfg, _demo) = match &config {
        Some(path) => (
            Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
            None,
        ),
        None => {
            let (cameras, file) = camhub::demo::cameras().context("cannot write the demo clip")?;
            tracing::info!("no --config: serving the built-in demo cameras");
            (
                Config {
                    server: Default::default(),
                    cameras,
                },
                Some(file),
            )
        }
    };
    let base_dir = match &config {
        Some(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let addr = listen.unwrap_or_else(|| cfg.server.listen.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let hub = Hub::start(cfg.cameras, base_dir);
        let (first_signal, drained) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signals(hub.clone(), config.clone(), first_signal));
        println!("camhub listening on http://{local}");
        tracing::info!(
            "listening on http://{local} with {} camera(s)",
            hub.list().len()
        );
        let app = camhub::api::router(hub.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let _ = drained.await;
        let _ = stop_tx.send(());
        if tokio::time::timeout(DRAIN, server).await.is_err() {
            tracing::warn!(
                "requests still open after {} s; closing them",
                DRAIN.as_secs()
            );
        }
        if tokio::time::timeout(DRAIN, hub.shutdown()).await.is_err() {
            tracing::warn!(
                "cameras still stopping after {} s; exiting anyway",
                DRAIN.as_secs()
            );
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// SIGINT/SIGTERM: the first drains, a second exits at once. SIGHUP re-reads
/// the config file and applies only what changed.
async fn signals(hub: Arc<Hub>, config: Option<PathBuf>, first: tokio::sync::oneshot::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut first = Some(first);
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {
                reload(&hub, config.as_deref()).await;
                continue;
            }
        }
        match first.take() {
            Some(tx) => {
                tracing::info!("shutting down (a second signal exits at once)");
                let _ = tx.send(());
            }
            None => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    }
}

async fn reload(hub: &Hub, config: Option<&std::path::Path>) {
    let Some(path) = config else {
        tracing::warn!("SIGHUP: no config file to reload (serving the demo cameras)");
        return;
    };
    match Config::load(path) {
        Err(e) => tracing::error!("config reload rejected, cameras unchanged: {e}"),
        Ok(cfg) => {
            let a = hub.apply_file(cfg.cameras).await;
            tracing::info!(
                "config reloaded: added {:?}, changed {:?}, removed {:?}, {} unchanged",
                a.added,
                a.changed,
                a.removed,
                a.unchanged.len()
            );
        }
    }
}
