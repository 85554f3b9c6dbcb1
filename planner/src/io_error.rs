//! An I/O error with what was being done (`read FILE`, `bind SOCKET`): the
//! one every module's typed error carries, written `{context}: {source}`.

/// An I/O error and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    pub context: String,
    #[source]
    pub source: std::io::Error,
}

/// For `map_err`: the I/O error of doing `context`.
pub fn doing(context: String) -> impl FnOnce(std::io::Error) -> IoError {
    move |source| IoError { context, source }
}
