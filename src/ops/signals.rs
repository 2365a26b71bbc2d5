//! Signals: SIGTERM and SIGINT start the drain (SPEC §7), SIGHUP reloads
//! the auth keys and secret. The handlers are installed before the workers
//! start, so a signal that arrives during start-up is not lost.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use signal_hook::consts::SIGHUP as RELOAD;

/// Installs the handlers for SIGTERM, SIGINT and SIGHUP.
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// Blocks until one of the installed signals arrives; returns its number.
pub fn wait(signals: &mut Signals) -> i32 {
    signals.forever().next().unwrap_or(SIGTERM)
}
