//! Error types shared by plugins and the core.

use thiserror::Error;

/// An error raised while configuring, binding or starting a plugin instance.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An option has a value the plugin cannot use.
    #[error("option `{option}`: {msg}")]
    Option {
        /// Option name.
        option: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A mandatory input key has no provider upstream.
    #[error("cannot find key `{0}` in stack")]
    MissingKey(String),
    /// A resource (socket, file, connection) could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What was being opened.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, already worded for the operator.
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    /// Shorthand for an option error.
    pub fn option(option: &str, msg: impl Into<String>) -> Self {
        BuildError::Option {
            option: option.to_string(),
            msg: msg.into(),
        }
    }

    /// The message without the `option `x`:` prefix, for a caller that
    /// names the option itself (an option check reusing a parser).
    pub fn detail(&self) -> String {
        match self {
            BuildError::Option { msg, .. } => msg.clone(),
            e => e.to_string(),
        }
    }

    /// Shorthand for an I/O error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error raised by an output while writing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The write failed; the record was counted as lost by the output.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The output's queue is full and its policy is to drop.
    #[error("queue full, record dropped")]
    QueueFull,
    /// The output has been closed.
    #[error("output closed")]
    Closed,
}
