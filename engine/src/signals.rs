//! Ctrl-C / SIGTERM: the first one asks for a graceful stop (sources stop, items in flight
//! finish, sinks flush); a second one aborts the process at once with status 130.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Installs the handlers and returns the flag they set.
pub fn install() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit is checked before the flag is set, so it fires
        // only on the second signal.
        flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}
