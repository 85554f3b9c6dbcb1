//! The comparison of a repository's catalog with its record objects, which
//! open, verify and GC consult before they trust the catalog.

use std::collections::BTreeMap;
/// How the catalog and the record objects differ (keys only).
#[derive(Debug, Default)]
pub struct Comparison {
    pub tenants_without_object: Vec<String>,
    pub tenants_not_in_catalog: Vec<String>,
    /// `(tenant, group, seq)` of point objects the catalog does not list.
    pub objects_not_in_catalog: Vec<(String, String, u64)>,
    /// Catalog points whose point object is missing.
    pub points_without_object: Vec<(String, String, u64)>,
    /// `(tenant, group)` of dedup scopes the catalog lists without a record object.
    pub scopes_without_object: Vec<(String, String)>,
    /// `(tenant, group)` of scope record objects the catalog does not list.
    pub scopes_not_in_catalog: Vec<(String, String)>,
    /// Objects under the points prefix whose key is not a point's.
    pub stray_objects: Vec<String>,
    /// The catalog's last seq of each `(tenant, group)`.
    pub(super) catalog_last: BTreeMap<(String, String), u64>,
}

impl Comparison {
    /// True when the catalog lists exactly the objects' tenants and points.
    pub fn agrees(&self) -> bool {
        self.problems().is_empty()
    }

    /// One line per disagreement, naming the record.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tenants_without_object {
            out.push(format!("tenant `{t}` has no tenant record object"));
        }
        for t in &self.tenants_not_in_catalog {
            out.push(format!(
                "tenant `{t}` has a record object but is missing from the catalog"
            ));
        }
        for (t, g, s) in &self.objects_not_in_catalog {
            out.push(format!(
                "point {s} of group `{g}` (tenant `{t}`) has a point object but is missing from the catalog"
            ));
        }
        for (t, g, s) in &self.points_without_object {
            out.push(format!(
                "point {s} of group `{g}` (tenant `{t}`) is in the catalog but its point object is missing"
            ));
        }
        for (t, g) in &self.scopes_without_object {
            out.push(format!(
                "group `{g}` (tenant `{t}`) has its own dedup scope in the catalog but no scope record object"
            ));
        }
        for (t, g) in &self.scopes_not_in_catalog {
            out.push(format!(
                "group `{g}` (tenant `{t}`) has a scope record object but its dedup scope is missing from the catalog"
            ));
        }
        for k in &self.stray_objects {
            out.push(format!("{k} is not a point object's name"));
        }
        out
    }

    /// The disagreements in one line (the first few, and how many more).
    pub fn summary(&self) -> String {
        let p = self.problems();
        let shown = p.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        if p.len() > 3 {
            format!("disagrees with its objects: {shown}; and {} more", p.len() - 3)
        } else {
            format!("disagrees with its objects: {shown}")
        }
    }

    /// Point objects that are exactly their group's next seq in the catalog
    /// and the group's only point object missing from it: a commit a crash
    /// interrupted between its point object and the catalog.
    pub(super) fn crashed_commits(&self) -> Vec<(String, String, u64)> {
        let mut per_group: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for (t, g, s) in &self.objects_not_in_catalog {
            per_group.entry((t.clone(), g.clone())).or_default().push(*s);
        }
        per_group
            .into_iter()
            .filter_map(|((t, g), seqs)| {
                let last = self.catalog_last.get(&(t.clone(), g.clone())).copied().unwrap_or(0);
                (seqs == [last + 1]).then(|| (t, g, last + 1))
            })
            .collect()
    }
}
