//! `lifeline key new` and `lifeline init`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use lifeline_replicator::{DEFAULT_TENANT, KeyFile, Repository};

use crate::cli::InitArgs;

/// Writes a new key file.
pub fn new(out: &Path) -> Result<ExitCode> {
    let pass = super::passphrase();
    let key = KeyFile::create(out, pass.as_deref())?;
    println!(
        "wrote key {} to {} ({}mode 0600)",
        key.keys().fingerprint_hex(),
        out.display(),
        if pass.is_some() {
            "wrapped by LIFELINE_PASSPHRASE, "
        } else {
            ""
        }
    );
    eprintln!("keep a copy of this key away from the primary site: without it no point can be restored");
    Ok(ExitCode::SUCCESS)
}

/// Creates a repository.
pub fn init(a: &InitArgs) -> Result<ExitCode> {
    let key = super::load_key(&a.key_file)?;
    let repo = Repository::init(&a.repo.repo, &key.keys(), DEFAULT_TENANT)?;
    println!(
        "initialised repository {} (id {}) for key {}",
        repo.name().display(),
        repo.id(),
        key.keys().fingerprint_hex()
    );
    Ok(ExitCode::SUCCESS)
}
