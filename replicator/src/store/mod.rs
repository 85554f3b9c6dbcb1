//! Where sealed objects live. [`ChunkStore`] is the narrow interface every
//! backend implements; [`LocalDirStore`] (pack files in a directory) is the
//! embedded default.

mod chunk_store;
pub(crate) mod local_dir;
mod object_index;
mod object_storage;
pub(crate) mod pack;
pub(crate) mod s3;

pub use chunk_store::{ChunkStore, StoredObject};
pub use local_dir::{CollectReport, LocalDirStore, SweepPlan};
pub use object_index::ObjectIndex;
pub use object_storage::{LocalDirStorage, ObjectStorage};
pub use pack::{ObjectLocation, PackId};
pub use s3::{S3Counts, S3Location, S3Settings, S3Stats, S3Storage};
