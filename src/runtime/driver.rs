//! Which monoio driver the workers run: io_uring where the kernel allows it,
//! else the legacy epoll driver with a warning (seccomp, old kernels, a
//! memlock limit too small for the rings).

use crate::config::IoDriver;
use crate::error::StartError;

/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;

/// The driver a worker's runtime is built on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Driver {
    Uring,
    Legacy,
}

impl Driver {
    /// "io_uring" or "legacy", for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }

    /// Resolves `server.io_driver` against what this kernel offers.
    pub(crate) fn choose(want: IoDriver) -> Result<Driver, StartError> {
        let have = monoio::utils::detect_uring();
        match want {
            IoDriver::Legacy => Ok(Driver::Legacy),
            IoDriver::IoUring if have => Ok(Driver::Uring),
            IoDriver::IoUring => Err(StartError::Fatal(
                "server.io_driver = \"io_uring\" but io_uring is not available on this kernel"
                    .into(),
            )),
            IoDriver::Auto if have => Ok(Driver::Uring),
            IoDriver::Auto => {
                tracing::warn!("io_uring is not available (kernel, seccomp or memlock limit); using the legacy epoll driver");
                Ok(Driver::Legacy)
            }
        }
    }

    /// Runs `fut` to completion on a fresh runtime of this driver, on the
    /// calling thread.
    pub(crate) fn block_on<F: std::future::Future<Output = Result<(), String>>>(
        self,
        idx: usize,
        fut: F,
    ) -> Result<(), String> {
        match self {
            Driver::Uring => {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(URING_ENTRIES)
                    .enable_timer()
                    .build()
                    .map_err(|e| format!("worker {idx}: cannot start io_uring runtime: {e}"))?;
                rt.block_on(fut)
            }
            Driver::Legacy => {
                let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .map_err(|e| format!("worker {idx}: cannot start legacy runtime: {e}"))?;
                rt.block_on(fut)
            }
        }
    }
}
