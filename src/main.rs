//! The `camhub` command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use camhub::config::{CameraConfig, CameraOptions, Config, Keep, LogConfig, LogFormat, Transport};
use camhub::hub::Hub;
use camhub::secret::scrub;
use camhub::snapshot::SnapshotRequest;

#[derive(Parser)]
#[command(
    name = "camhub",
    version = camhub::cli::version::short(),
    long_version = camhub::cli::version::long(),
    about = "A camera hub: instant fresh snapshots from a fleet of IP cameras"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per
    /// line). Default: the config's server.log.format, else text.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// `error`, `warn`, `info`, `debug` or `trace` for camhub's own lines, or a
    /// full filter (`camhub=debug,retina=info`). Default: CAMHUB_LOG, then the
    /// config's server.log.level, then info (warn for one-off commands).
    #[arg(long, global = true)]
    log_level: Option<String>,
}

/// Where the log settings come from, strongest first: the flags, `CAMHUB_LOG`,
/// the config file's `server.log`, the default.
fn init_logging(cli_format: Option<&str>, cli_level: Option<&str>, file: &LogConfig, default: &str) {
    use tracing_subscriber::EnvFilter;
    // A plain level is for camhub's own lines; anything else is a full filter.
    let directive = |l: &str| match l {
        "error" | "warn" | "info" | "debug" | "trace" => format!("camhub={l}"),
        other => other.to_owned(),
    };
    let level = match (cli_level, std::env::var("CAMHUB_LOG").ok(), &file.level) {
        (Some(l), ..) => directive(l),
        (None, Some(env), _) => env,
        (None, None, Some(l)) => directive(l),
        (None, None, None) => default.to_owned(),
    };
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|e| {
        eprintln!("camhub: bad log level {level:?} ({e}); using {default}");
        EnvFilter::new(default)
    });
    let json = match cli_format {
        Some(f) => f == "json",
        None => file.format == LogFormat::Json,
    };
    // Colour only for a person at a terminal (and never with NO_COLOR set).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        fmt.json().flatten_event(true).with_current_span(false).with_span_list(true).init();
    } else {
        fmt.with_ansi(ansi).init();
    }
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
    /// Connect to a camera and print what it sends: codec, profile, resolution,
    /// fps, keyframe interval, bitrate (or why it cannot be read).
    Probe {
        /// rtsp://[user:pass@]host[:port]/path, or a file.
        url: String,
        /// Watch at most this many seconds (stops early after a second keyframe).
        #[arg(long, default_value_t = 12.0)]
        seconds: f64,
        /// RTP over UDP instead of TCP.
        #[arg(long)]
        udp: bool,
    },
    /// Take one picture of a camera without a server.
    Snapshot {
        url: String,
        /// Where to write the JPEG.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        quality: Option<u8>,
        #[arg(long)]
        width: Option<u32>,
        #[arg(long)]
        height: Option<u32>,
        #[arg(long)]
        udp: bool,
    },
    /// Print shell completions to stdout, e.g. `camhub completions bash > /etc/bash_completion.d/camhub`.
    Completions { shell: clap_complete::Shell },
}

/// A one-off camera for the CLI commands.
fn cli_camera(url: &str, udp: bool) -> anyhow::Result<CameraConfig> {
    let mut o = CameraOptions::from_url(url);
    o.keep = Keep::OnDemand;
    if udp {
        o.transport = Transport::Udp;
    }
    CameraConfig::resolve("cli", o, &std::env::current_dir()?).map_err(|e| anyhow::anyhow!("{e}"))
}

fn probe(url: &str, seconds: f64, udp: bool) -> anyhow::Result<()> {
    let cfg = cli_camera(url, udp)?;
    let window = Duration::from_secs_f64(seconds.clamp(0.5, 600.0));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt
        .block_on(camhub::cli::probe::probe(&cfg, window))
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", cfg.display_url(), scrub(&e.to_string(), &cfg.secrets())))?;
    println!("{report}");
    Ok(())
}

fn snapshot(url: &str, out: &std::path::Path, req: SnapshotRequest, udp: bool) -> anyhow::Result<()> {
    let cfg = cli_camera(url, udp)?;
    let (shown, secrets) = (cfg.display_url(), cfg.secrets());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let shot = rt.block_on(async {
        let clock = camhub::clock::Clock::real();
        let metrics = std::sync::Arc::new(camhub::telemetry::metrics::Metrics::new(clock.wall(), &[]));
        let ctx = camhub::camera::Context::standalone(clock, metrics);
        let cam = camhub::camera::Camera::spawn(cfg, ctx, Default::default());
        let shot = camhub::snapshot::take(&cam, &req).await;
        cam.stop().await;
        shot
    });
    let shot = shot.map_err(|e| anyhow::anyhow!("no picture from {shown}: {}", scrub(&e.to_string(), &secrets)))?;
    std::fs::write(out, &shot.jpeg).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} ({}x{}, frame {})", out.display(), shot.width, shot.height, shot.frame_id);
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // The server logs what it does (from its config's settings: `serve` starts
    // logging once the file is read); one-off commands only warnings.
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(cli.log_format.as_deref(), cli.log_level.as_deref(), &LogConfig::default(), "camhub=warn");
    }
    if let Err(e) = run(cli) {
        // One clear line, whatever RUST_BACKTRACE says.
        eprintln!("camhub: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen } => {
            let log = (cli.log_format.as_deref(), cli.log_level.as_deref());
            serve(config, listen, log)
        }
        Command::Probe { url, seconds, udp } => probe(&url, seconds, udp),
        Command::Snapshot { url, output, quality, width, height, udp } => {
            let req = SnapshotRequest { quality, width, height, ..Default::default() };
            snapshot(&url, &output, req, udp)
        }
        Command::Check { config } => {
            let cfg = Config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            for c in &cfg.cameras {
                match c.display_sub_url() {
                    Some(sub) => println!("{}: {} (sub: {sub})", c.name, c.display_url()),
                    None => println!("{}: {}", c.name, c.display_url()),
                }
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "camhub", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The documented bound (README, Lifecycle) from the first SIGINT/SIGTERM to the
/// exit: requests, streams and cameras that are not done by then are cut.
const DRAIN: Duration = Duration::from_secs(5);
/// Of it, how long requests in flight (a snapshot, an API call) get to finish
/// before the cameras stop, which ends the answers that never end by themselves
/// (MJPEG streams) and the WebRTC sessions.
const GRACE: Duration = Duration::from_secs(1);
/// What the runtime's leftover blocking work (a decoder thread being joined, a
/// file read) may add after the drain before the process exits anyway.
const LEFTOVER: Duration = Duration::from_millis(250);

fn serve(config: Option<PathBuf>, listen: Option<String>, log: (Option<&str>, Option<&str>)) -> anyhow::Result<()> {
    camhub::telemetry::memory::return_freed_memory_promptly();
    let loaded = config.as_deref().map(Config::load).transpose();
    let file_log = match &loaded {
        Ok(Some(c)) => c.server.log.clone(),
        _ => LogConfig::default(),
    };
    init_logging(log.0, log.1, &file_log, "camhub=info");
    let (cfg, _demo) = match loaded.map_err(|e| anyhow::anyhow!("{e}"))? {
        Some(cfg) => (cfg, None),
        None => {
            let (cameras, file) = camhub::cli::demo::cameras().context("cannot write the demo clip")?;
            tracing::info!("no --config: serving the built-in demo cameras");
            (Config { server: Default::default(), cameras, mqtt: None, cluster: None }, Some(file))
        }
    };
    let base_dir = match &config {
        Some(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let addr = listen.unwrap_or_else(|| cfg.server.listen.clone());
    raise_fd_limit(cfg.server.max_connections);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        // Signal handlers first: a signal during start-up (cameras, GStreamer's
        // init for the restream) is taken, not missed.
        let handlers = SignalStreams::install();
        // In a cluster, cameras start as this node takes their leases.
        let (local_cameras, fleet) = match &cfg.cluster {
            Some(_) => (Vec::new(), cfg.cameras),
            None => (cfg.cameras, Vec::new()),
        };
        let hub = Hub::start(&cfg.server, local_cameras, base_dir);
        if let Some(cluster) = cfg.cluster {
            let required = cluster.required;
            match hub.join_cluster(cluster, fleet.clone(), local).await {
                Ok(()) => {}
                Err(e) if required => anyhow::bail!("{e}"),
                Err(e) => {
                    tracing::warn!("{e}; cluster.required is false: this node serves every camera alone");
                    hub.apply_file(fleet).await;
                }
            }
        }
        hub.start_mqtt(cfg.mqtt);
        hub.set_bound(local);
        if let Some(path) = &config {
            hub.set_config_file(path);
        }
        for w in hub.warnings() {
            tracing::warn!("{w}");
        }
        let (first_signal, drained) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signals(handlers, hub.clone(), config.clone(), first_signal));
        println!("camhub listening on http://{local}");
        tracing::info!("listening on http://{local} with {} camera(s)", hub.list().len());
        let app = camhub::api::router(hub.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let limits = camhub::api::ConnLimits {
            max_connections: cfg.server.max_connections,
            header_timeout: cfg.server.header_timeout.0,
        };
        let server = tokio::spawn(camhub::api::serve(listener, app, limits, async {
            let _ = stop_rx.await;
        }));
        let _ = drained.await;
        // One deadline for the whole drain, from the first signal (on the one clock).
        let clock = camhub::clock::Clock::real();
        let signalled = clock.now();
        let _ = stop_tx.send(());
        let mut server = server;
        let served = tokio::time::timeout(GRACE, &mut server).await.is_ok();
        if !served {
            tracing::info!("closing the streams still open");
        }
        // Stopping the cameras ends their streams and sessions; the server then
        // finishes the connections that carried them.
        let rest = async {
            hub.shutdown().await;
            if !served {
                let _ = server.await;
            }
        };
        if tokio::time::timeout(DRAIN.saturating_sub(clock.since(signalled)), rest).await.is_err() {
            tracing::warn!("requests or cameras still open after {} s; exiting anyway", DRAIN.as_secs());
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    rt.shutdown_timeout(LEFTOVER);
    served
}

/// Raises the soft limit on open files to the hard one (every connection, camera
/// and ring holds files) and logs it once; warns when `max_connections` does not
/// fit under it.
fn raise_fd_limit(max_connections: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let mut soft = lim.current;
    if let (Some(cur), Some(hard)) = (lim.current, lim.maximum)
        && cur < hard
    {
        match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) }) {
            Ok(()) => soft = Some(hard),
            Err(e) => tracing::warn!("cannot raise the open files limit from {cur} to {hard}: {e}"),
        }
    }
    match soft {
        Some(n) => {
            tracing::info!("open files limit: {n} (hard {:?})", lim.maximum);
            if u64::from(max_connections) + 64 > n {
                tracing::warn!(
                    "server.max_connections {max_connections} leaves under 64 of {n} open files for cameras"
                );
            }
        }
        None => tracing::info!("open files limit: unlimited"),
    }
}

/// SIGINT/SIGTERM: the first drains, a second exits at once. SIGHUP re-reads
/// the config file and applies only what changed.
/// SIGINT, SIGTERM and SIGHUP, caught from the moment this is made.
struct SignalStreams(Option<[tokio::signal::unix::Signal; 3]>);

impl SignalStreams {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(int), Ok(term), Ok(hup)) => SignalStreams(Some([int, term, hup])),
            _ => SignalStreams(None),
        }
    }
}

async fn signals(
    handlers: SignalStreams,
    hub: Arc<Hub>,
    config: Option<PathBuf>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let Some([mut int, mut term, mut hup]) = handlers.0 else {
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
        Err(e) => tracing::error!("config reload rejected, cameras and server settings unchanged: {e}"),
        Ok(cfg) => {
            let s = &cfg.server;
            let counts = (s.auth.tokens.len(), s.auth.users.len(), s.cors_origins.len(), s.media_dirs.len());
            let mut restart = hub.apply_server(cfg.server);
            if hub.mqtt_changed(cfg.mqtt.as_ref()) {
                restart.push("mqtt");
            }
            for name in restart {
                tracing::warn!(
                    "{name} changed in the config file but applies only at start: restart camhub to apply it"
                );
            }
            for w in hub.warnings() {
                tracing::warn!("{w}");
            }
            tracing::info!(
                "server settings reloaded: {} token(s), {} user(s), {} CORS origin(s), {} media dir(s)",
                counts.0,
                counts.1,
                counts.2,
                counts.3
            );
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
