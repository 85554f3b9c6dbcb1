//! Where sealed objects live. [`ChunkStore`] is the narrow interface every
//! backend implements; [`LocalDirStore`] (pack files in a directory) is the
//! embedded default.

mod chunk_store;
mod local_dir;
pub(crate) mod pack;

pub use chunk_store::{ChunkStore, StoredObject};
pub use local_dir::{CollectReport, LocalDirStore, SweepPlan};
pub use pack::{ObjectLocation, PackId};
