//! The `camhub` command.

use std::path::PathBuf;

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
    let addr = listen.unwrap_or_else(|| cfg.server.listen.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let hub = Hub::start(cfg.cameras);
        println!("camhub listening on http://{local}");
        tracing::info!(
            "listening on http://{local} with {} camera(s)",
            hub.list().len()
        );
        let app = camhub::api::router(hub.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!("shutting down");
        hub.shutdown().await;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
