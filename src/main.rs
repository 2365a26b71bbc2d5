//! The `ringcast` binary: CLI → Config → runtime::launch → wait for a signal
//! → drain → exit status (0 clean, 2 bad configuration, 1 anything else).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcast::config::{Config, LogFormat, Overrides};
use ringcast::error::StartError;

// The allocator. By default the system allocator: the design card names
// mimalloc, but measured here (commit 05dab30; 10,000 idle subscribers on
// one worker, `ringcast-load --subscribers 10000 --connect-only --hold-s 2`)
// mimalloc cost about 900 B more per idle connection (2,730 B against
// 1,835 B of server RSS) and bought no speed (a10k: 1.88 s of server CPU
// per million deliveries against 1.77-1.91 s). `--features mimalloc` builds
// with it, so the comparison can be re-run whenever the hot path changes.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Server-Sent Events fan-out engine. Configuration precedence: defaults <
/// TOML file < RINGCAST_<SECTION>_<KEY> environment < flags.
#[derive(Parser, Debug)]
#[command(name = "ringcast", about, disable_version_flag = true)]
struct Cli {
    /// Print the version, the git commit and whether io_uring is usable
    /// here, then exit.
    #[arg(short = 'V', long)]
    version: bool,
    /// Validate the whole configuration (file, environment, flags) and exit
    /// 0 when it is valid, 2 when it is not; binds nothing.
    #[arg(long)]
    check_config: bool,
    /// TOML configuration file (see tuning/ringcast.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Worker threads, default one per core (server.workers).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Run the built-in simulated quote feed (demo.enabled).
    #[arg(long)]
    demo: bool,
    /// Log line format (log.format).
    #[arg(long, value_name = "text|json")]
    log_format: Option<String>,
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&cfg.log.level);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cli: Cli) -> Result<(), StartError> {
    let overrides = Overrides {
        config: cli.config,
        listen: cli.listen,
        workers: cli.workers,
        demo: cli.demo,
        log_format: cli.log_format,
    };
    let mut cfg = Config::load(&overrides, std::env::vars())?;
    if cli.check_config {
        ringcast::runtime::check(&cfg)?;
        for w in cfg.warnings() {
            eprintln!("ringcast: warning: {w}");
        }
        println!(
            "ringcast: configuration ok (listen {}, {} workers, io_driver {:?})",
            cfg.server.listen,
            cfg.workers(),
            cfg.server.io_driver
        );
        return Ok(());
    }
    init_logs(&cfg);
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let nofile = ringcast::sys::raise_nofile_limit();
    match &nofile {
        // Left at its default, the limit follows what the process may
        // open: connections past it could only fail with EMFILE.
        Ok(n) if cfg.sources.of("limits.max_connections").is_none() => {
            let fit = (*n as usize).saturating_sub(DESCRIPTOR_RESERVE).max(1);
            if fit < cfg.limits.max_connections {
                cfg.limits.max_connections = fit;
            }
            tracing::debug!(
                nofile = n,
                max_connections = cfg.limits.max_connections,
                "open-files limit"
            );
        }
        Ok(n)
            if (*n as usize)
                < cfg
                    .limits
                    .max_connections
                    .saturating_add(DESCRIPTOR_RESERVE) =>
        {
            tracing::warn!(
                nofile = n,
                max_connections = cfg.limits.max_connections,
                "the open-files limit is below limits.max_connections: accepts will fail with \
                 EMFILE near {n} connections; raise LimitNOFILE (tuning/ringcast.service) or \
                 lower limits.max_connections"
            )
        }
        Ok(n) => tracing::debug!(nofile = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    if let Ok(n) = nofile {
        reserve_descriptors(n, cfg.limits.max_connections);
    }
    let mut signals = ringcast::ops::signals::install()
        .map_err(|e| StartError::Fatal(format!("cannot install signal handlers: {e}")))?;
    let timeout = Duration::from_millis(cfg.server.shutdown_timeout_ms);
    let workers = cfg.workers();
    let server = ringcast::runtime::launch(cfg)?;
    tracing::info!(
        workers,
        driver = server.driver(),
        "listening on http://{}",
        server.local_addr()
    );
    ringcast::ops::notify::notify_systemd("READY=1");
    let signal = loop {
        let signal = ringcast::ops::signals::wait(&mut signals);
        if signal != ringcast::ops::signals::RELOAD {
            break signal;
        }
        // SIGHUP: only the [auth] keys and secret are taken from the
        // reloaded configuration; everything else needs a restart, and
        // the log says which changed keys wait for one.
        match Config::load(&overrides, std::env::vars()) {
            Ok(fresh) => {
                let mut running = server.config().clone();
                // Left at its default, the running limit was derived at
                // start from the open-files limit: not a change.
                if fresh.sources.of("limits.max_connections").is_none() {
                    running.limits.max_connections = fresh.limits.max_connections;
                }
                let pending = running.changed_keys(&fresh);
                if !pending.is_empty() {
                    tracing::warn!(
                        keys = %pending.join(", "),
                        "SIGHUP: changed keys take effect only after a restart"
                    );
                }
                server.reload_auth(&fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP: the configuration does not load; keeping the old auth keys")
            }
        }
    };
    tracing::info!(signal, "shutdown: draining");
    server.shutdown(timeout);
    Ok(())
}

/// Descriptors kept for everything but client connections (listeners,
/// io_uring, the journal, NATS, log output).
const DESCRIPTOR_RESERVE: usize = 64;

/// Descriptors whose table is grown at start-up at most: 2 MiB of kernel
/// memory (8 bytes and two bits a slot). Past it, the table grows by
/// doubling as connections come, each growth once in the process's life.
const RESERVED_DESCRIPTORS_MAX: usize = 1 << 18;

/// Grows the descriptor table once, before the workers start, to what
/// `limits.max_connections` needs (within the open-files limit `nofile` and
/// [`RESERVED_DESCRIPTORS_MAX`]): otherwise the first connection storm after
/// a start stalls every worker for an RCU grace period (10-30 ms) at each
/// doubling of the table, at 256, 512, ... connections (`sys::reserve_descriptors`).
fn reserve_descriptors(nofile: u64, max_connections: usize) {
    let want = max_connections
        .saturating_add(1024)
        .min(RESERVED_DESCRIPTORS_MAX)
        .min(usize::try_from(nofile).unwrap_or(usize::MAX));
    match ringcast::sys::reserve_descriptors(want) {
        Ok(size) => tracing::debug!(size, "descriptor table reserved"),
        Err(e) => tracing::warn!(error = %e, want, "cannot reserve the descriptor table"),
    }
}

/// `ringcast --version`: what an operator needs to file a report.
fn version() -> String {
    let uring = if monoio::utils::detect_uring() {
        "usable"
    } else {
        "not usable (the legacy epoll driver would run)"
    };
    format!(
        "ringcast {} (commit {})\nio_uring: {uring} on this kernel",
        env!("CARGO_PKG_VERSION"),
        env!("BUILD_GIT_COMMIT")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", version());
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up yet: the reason goes to stderr directly.
            eprintln!("ringcast: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
