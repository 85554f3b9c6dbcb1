//! Where sealed objects live. [`ChunkStore`] is the narrow interface every
//! backend implements; [`LocalDirStore`] (pack files in a directory) is the
//! embedded default.

mod chunk_store;
pub(crate) mod local_dir;
mod object_storage;
pub(crate) mod pack;

pub use chunk_store::{ChunkStore, StoredObject};
pub use local_dir::{CollectReport, LocalDirStore, SweepPlan};
pub use object_storage::{LocalDirStorage, ObjectStorage};
pub use pack::{ObjectLocation, PackId};
