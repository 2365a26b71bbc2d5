//! Termination signals: SIGTERM and SIGINT start the drain (SPEC §7). The
//! handlers are installed before the workers start, so a signal that
//! arrives during start-up is not lost.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Installs the handlers for SIGTERM and SIGINT.
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
}

/// Blocks until one of the installed signals arrives; returns its number.
pub fn wait(signals: &mut Signals) -> i32 {
    signals.forever().next().unwrap_or(SIGTERM)
}
