//! What `lifeline mount` shows: a read-only tree of directories and volume
//! images, by inode number. One point: `<volume>.img` at the top. Every point:
//! a directory per point, named by [`point_dir_name`], holding its images.
//! Built once when the mount starts (the point records are opened then; no
//! volume data is read) and never changed, so lookups need no locks.

use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::export::Export;

/// Inode number of the top directory (FUSE's root).
pub const ROOT_INODE: u64 = 1;

/// One entry of the tree.
pub struct FileNode {
    pub name: String,
    pub parent: u64,
    /// The point's `taken_at`, the mount's start for the top directory.
    pub mtime: SystemTime,
    pub kind: NodeKind,
}

pub enum NodeKind {
    /// Children's inode numbers, in listing order.
    Dir(Vec<u64>),
    /// A volume of a point (read-only: no overlay).
    Image(Arc<Export>),
}

/// The tree; inode `n` is `nodes[n - 1]`.
pub struct PointFiles {
    nodes: Vec<FileNode>,
}

/// The directory of a point in an every-point mount: `<seq>-<taken_at>`, the
/// time in UTC to the second with `-` for `:` (which some tools and file
/// systems refuse), e.g. `12-2026-12-05T10-30-00Z`. The seq alone makes it
/// unique.
pub fn point_dir_name(seq: u64, taken_at: DateTime<Utc>) -> String {
    format!("{seq}-{}", taken_at.format("%Y-%m-%dT%H-%M-%SZ"))
}

/// The file of a volume: `<volume>.img` (volume names are 1 to 64 of
/// `A-Za-z0-9._-`, never `.` or `..`, so always a valid file name).
pub fn image_name(volume: &str) -> String {
    format!("{volume}.img")
}

impl PointFiles {
    /// A tree with an empty top directory.
    pub fn new(mtime: SystemTime) -> Self {
        PointFiles {
            nodes: vec![FileNode {
                name: String::new(),
                parent: ROOT_INODE,
                mtime,
                kind: NodeKind::Dir(Vec::new()),
            }],
        }
    }

    fn add(&mut self, parent: u64, name: String, mtime: SystemTime, kind: NodeKind) -> u64 {
        let ino = self.nodes.len() as u64 + 1;
        self.nodes.push(FileNode {
            name,
            parent,
            mtime,
            kind,
        });
        match self.nodes.get_mut(parent as usize - 1).map(|n| &mut n.kind) {
            Some(NodeKind::Dir(children)) => children.push(ino),
            _ => panic!("inode {parent} is not a directory"),
        }
        ino
    }

    /// Adds a directory under `parent`; returns its inode.
    pub fn add_dir(&mut self, parent: u64, name: String, mtime: SystemTime) -> u64 {
        self.add(parent, name, mtime, NodeKind::Dir(Vec::new()))
    }

    /// Adds the image of a volume under `parent`; returns its inode.
    pub fn add_image(&mut self, parent: u64, export: Arc<Export>, mtime: SystemTime) -> u64 {
        let name = image_name(export.name());
        self.add(parent, name, mtime, NodeKind::Image(export))
    }

    pub fn get(&self, ino: u64) -> Option<&FileNode> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The child of directory `parent` called `name`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<u64> {
        match &self.get(parent)?.kind {
            NodeKind::Dir(children) => children
                .iter()
                .copied()
                .find(|c| self.nodes[*c as usize - 1].name == name),
            NodeKind::Image(_) => None,
        }
    }

    /// Every inode with its node, in inode order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &FileNode)> {
        self.nodes.iter().enumerate().map(|(i, n)| (i as u64 + 1, n))
    }

    /// The path of an inode below the top directory (`3-…/db.img`), for logs.
    pub fn path(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INODE {
            let Some(n) = self.get(at) else { break };
            parts.push(n.name.as_str());
            at = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_directories_are_file_system_safe_and_name_seq_and_time() {
        let t = DateTime::parse_from_rfc3339("2026-12-05T10:30:00.123Z")
            .unwrap()
            .to_utc();
        assert_eq!(point_dir_name(12, t), "12-2026-12-05T10-30-00Z");
        assert!(!point_dir_name(1, t).contains([':', '/']));
        assert_eq!(image_name("db"), "db.img");
    }

    #[test]
    fn lookup_and_paths_follow_the_tree() {
        let t = SystemTime::UNIX_EPOCH;
        let mut f = PointFiles::new(t);
        let d1 = f.add_dir(ROOT_INODE, "1-a".into(), t);
        let d2 = f.add_dir(ROOT_INODE, "2-b".into(), t);
        assert_eq!(f.lookup(ROOT_INODE, "1-a"), Some(d1));
        assert_eq!(f.lookup(ROOT_INODE, "2-b"), Some(d2));
        assert_eq!(f.lookup(ROOT_INODE, "3-c"), None);
        assert_eq!(f.lookup(d1, "x"), None);
        assert_eq!(f.lookup(99, "x"), None);
        assert!(f.get(0).is_none() && f.get(99).is_none());
        assert_eq!(f.path(d2), "2-b");
        assert_eq!(f.get(d1).unwrap().parent, ROOT_INODE);
        match &f.get(ROOT_INODE).unwrap().kind {
            NodeKind::Dir(c) => assert_eq!(c, &vec![d1, d2]),
            NodeKind::Image(_) => panic!("the top is a directory"),
        }
    }
}
