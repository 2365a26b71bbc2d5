//! Why the process could not start, and the exit status that says so
//! (SPEC §1: 2 for bad configuration, 1 for anything else).

/// Why the process could not start; mapped to an exit status in `main`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration: exit 2.
    #[error("{0}")]
    Config(String),
    /// Anything else (address in use, runtime failure): exit 1.
    #[error("{0}")]
    Fatal(String),
}

impl StartError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => 2,
            StartError::Fatal(_) => 1,
        }
    }
}
