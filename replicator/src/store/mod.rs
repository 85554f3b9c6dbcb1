//! Where sealed objects live. [`ChunkStore`] is the narrow interface every
//! backend implements; [`LocalDirStore`] is the embedded default.

mod chunk_store;
mod local_dir;

pub use chunk_store::{ChunkStore, StoredObject};
pub use local_dir::LocalDirStore;
