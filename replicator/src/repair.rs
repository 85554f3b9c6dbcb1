//! `lifeline repair`: rebuilds a repository's catalog from its objects alone.
//!
//! The objects are the truth (FORMAT.md, "Record objects"): the config object
//! and the marker, a record object per tenant, the pack footers (which list
//! every object of a pack) and a point object per point. Repair reads exactly
//! those (never the data), builds a new catalog beside the old one, and swaps
//! them at the end, keeping the old one as `catalog.old-<time>`:
//!
//! 1. the config from `meta/config`, else the marker, else the old catalog;
//! 2. each tenant from its record object;
//! 3. each pack's footer into the object index (both cores);
//! 4. each point object into the points.
//!
//! The old catalog, when it still opens, is a second source for single
//! faults in the objects: a record object that fails its BLAKE3 trailer is
//! rewritten from the old catalog's copy when that copy is provably the
//! original (it hashes to the damaged object's trailer, or equals its intact
//! body), and a pack whose footer fails keeps the old catalog's entries for
//! it once each entry's object passes its own trailer check. Anything else is
//! reported, never guessed. Pins (short leases, renewed by their holders) are
//! carried over from the old catalog when it opens.
//!
//! A crash during repair leaves the old catalog in place (or, between the two
//! renames, no `catalog` at all, which opening refuses): run repair again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::{Catalog, ObjectIndex, RepositoryConfig, SledCatalog, TenantRecord};
use crate::crypto::SealedObject;
use crate::error::{Error, Result};
use crate::file_formats::{RECORD_TRAILER_LEN, REPOSITORY_FORMAT, REPOSITORY_MARKER, REPOSITORY_MARKER_FILE};
use crate::fsutil;
use crate::object_id::ObjectId;
use crate::point::{PointRecord, check_name};
use crate::record_object::{self, RecordKind};
use crate::store::local_dir::{pack_files, pack_objects, read_footer, read_object_footer};
use crate::store::{LocalDirStorage, ObjectLocation, ObjectStorage, PackId, S3Location, S3Settings, S3Storage};

/// sled page cache of the catalog being rebuilt. At 1 M objects
/// (`lifeline bench --repair --points 1000`, same machine, one after the
/// other): 256 MiB took 10.0 s and peaked at 585 MiB RSS, the 16 MiB of a
/// normal open 12.4 s and 755 MiB (sled evicting and re-reading its tree).
const REBUILD_CACHE: u64 = 256 << 20;

/// A pack's footer entries, or why it cannot be read.
type Footer = std::result::Result<Vec<(ObjectId, ObjectLocation)>, String>;

/// Where a repair is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum RepairProgress {
    /// Pack footers read, of the tenant's total.
    Packs { done: u64, total: u64 },
    /// Point objects read, of the tenant's total.
    Points { done: u64, total: u64 },
}

/// What a repair found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub repository_id: String,
    pub tenants: Vec<String>,
    pub packs: u64,
    pub objects: u64,
    /// Points per `tenant/group`, with the newest seq.
    pub groups: BTreeMap<String, (u64, u64)>,
    pub points: u64,
    /// Record objects rewritten from a provably intact copy (marker, config
    /// object, old catalog).
    pub rewritten: Vec<String>,
    /// Index entries of packs whose footer failed, taken from the old catalog.
    pub entries_from_old_catalog: u64,
    /// What could not be recovered, each naming the object.
    pub damaged: Vec<String>,
    /// Points of the old catalog that have no point object (not restored).
    pub only_in_old_catalog: Vec<String>,
    /// Leases carried over from the old catalog.
    pub pins: u64,
    /// Where the old catalog was kept.
    pub old_catalog: Option<PathBuf>,
    pub elapsed_secs: f64,
}

/// What the old catalog still says, read before it is moved aside.
#[derive(Default)]
struct OldCatalog {
    config: Option<RepositoryConfig>,
    tenants: HashMap<String, TenantRecord>,
    points: HashMap<(String, String, u64), PointRecord>,
    pins: Vec<crate::catalog::PinRecord>,
    /// Groups with their own dedup scope, by tenant.
    scopes: HashMap<String, Vec<String>>,
    /// Entries of packs by store (`tenant`, or `tenant/group` for a group's
    /// own scope), read only for packs whose footer failed.
    index: HashMap<String, std::sync::Arc<dyn ObjectIndex>>,
    catalog: Option<SledCatalog>,
}

impl OldCatalog {
    /// Reads what it can; a catalog that fails to open is no source at all.
    fn read(path: &Path) -> Result<OldCatalog> {
        let dir = path.join("catalog");
        if !dir.join("db").exists() {
            return Ok(OldCatalog::default());
        }
        let opened = std::panic::catch_unwind(|| SledCatalog::open(&dir));
        let catalog = match opened {
            Ok(Ok(c)) => c,
            Ok(Err(e @ Error::CatalogLocked { .. })) => return Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the old catalog does not open: repairing from the objects alone");
                return Ok(OldCatalog::default());
            }
            Err(_) => {
                tracing::warn!("the old catalog made sled panic: repairing from the objects alone");
                return Ok(OldCatalog::default());
            }
        };
        let mut old = OldCatalog {
            config: catalog.config().ok().flatten(),
            ..Default::default()
        };
        for t in catalog.tenants().unwrap_or_default() {
            if let Ok(Some(rec)) = catalog.tenant(&t) {
                old.tenants.insert(t.clone(), rec);
            }
            for p in catalog.points(&t, None).unwrap_or_default() {
                old.points
                    .insert((p.header.tenant.clone(), p.header.group.clone(), p.header.seq), p);
            }
            old.pins.extend(catalog.all_pins(&t).unwrap_or_default());
            let scopes = catalog.scopes(&t).unwrap_or_default();
            for store in std::iter::once(None).chain(scopes.iter().map(Some)) {
                let name = crate::repository::store_name(&t, store.map(String::as_str));
                if let Ok(ix) = Catalog::object_index(&catalog, &name) {
                    old.index.insert(name, ix);
                }
            }
            old.scopes.insert(t, scopes);
        }
        old.catalog = Some(catalog);
        Ok(old)
    }

    /// The old index's entries for `packs` of store `store`.
    fn entries_of(&self, store: &str, packs: &BTreeSet<PackId>) -> BTreeMap<PackId, Vec<(ObjectId, ObjectLocation)>> {
        let mut out: BTreeMap<PackId, Vec<_>> = BTreeMap::new();
        if let Some(ix) = self.index.get(store) {
            let _ = ix.for_each(&mut |id, loc| {
                if packs.contains(&loc.pack) {
                    out.entry(loc.pack).or_default().push((id, loc));
                }
                Ok(())
            });
        }
        out
    }
}

/// True when `candidate` (a copy from the old catalog) is provably what the
/// damaged object held: a single fault hit either the body (then the
/// candidate's body hashes to the stored trailer) or the trailer (then the
/// bodies are equal).
fn is_original(candidate: &[u8], damaged: &[u8]) -> bool {
    if candidate.len() != damaged.len() || candidate.len() < RECORD_TRAILER_LEN {
        return false;
    }
    let cut = candidate.len() - RECORD_TRAILER_LEN;
    blake3::hash(&candidate[..cut]).as_bytes() == &damaged[cut..] || candidate[..cut] == damaged[..cut]
}

/// The marker's repository id and format, when the marker reads whole.
fn read_marker(path: &Path) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(path.join(REPOSITORY_MARKER_FILE)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == REPOSITORY_MARKER).then_some(())?;
    let format = lines.next()?.strip_prefix("format ")?.parse().ok()?;
    let id = lines.next()?.strip_prefix("id ")?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| (id.to_string(), format))
}

/// Where a pack is, for a repair.
enum PackSource {
    File(PathBuf),
    Object(String),
}

/// Rebuilds the catalog of the local repository at `path` from its objects.
pub fn repair(path: &Path, progress: &(dyn Fn(RepairProgress) + Sync)) -> Result<RepairReport> {
    if let Some(location) = path.to_str().and_then(S3Location::parse) {
        let location = location?;
        let ctx = crate::repository::s3_context();
        let state_dir = ctx.state_dir.ok_or_else(|| Error::Invalid {
            what: "S3 repository",
            value: location.url(),
            reason: "repair rebuilds the cache in a state directory: give --state-dir DIR".into(),
        })?;
        return repair_s3(&location, &ctx.settings, &state_dir, progress);
    }
    let storage = LocalDirStorage::new(path);
    if read_marker(path).is_none()
        && storage.get(record_object::CONFIG_KEY)?.is_none()
        && !path.join("tenants").is_dir()
    {
        return Err(Error::NotARepository { path: path.into() });
    }
    rebuild(&storage, path, None, progress)
}

/// Rebuilds the local cache of an `s3://` repository under `state_dir` from
/// the bucket alone (a recovery site that lost its disk, or a damaged
/// cache), and makes this cache the repository's owner.
pub fn repair_s3(
    location: &S3Location,
    settings: &S3Settings,
    state_dir: &Path,
    progress: &(dyn Fn(RepairProgress) + Sync),
) -> Result<RepairReport> {
    let storage = S3Storage::new(location, settings)?;
    if storage.get(record_object::CONFIG_KEY)?.is_none() && storage.list("tenants/")?.is_empty() {
        return Err(Error::NotARepository {
            path: location.url().into(),
        });
    }
    let cache = crate::repository::s3_cache_dir(state_dir, location);
    std::fs::create_dir_all(&cache).map_err(|e| Error::io(format!("create {}", cache.display()), e))?;
    let owner = crate::repository::cache_owner_id(&cache)?;
    let report = rebuild(&storage, &cache, Some(location), progress)?;
    crate::repository::take_lease(&storage, &owner, &cache)?;
    Ok(report)
}

/// The rebuild itself: `dir` holds the catalog (the repository's directory,
/// or an S3 repository's cache).
fn rebuild(
    storage: &dyn ObjectStorage,
    path: &Path,
    s3: Option<&S3Location>,
    progress: &(dyn Fn(RepairProgress) + Sync),
) -> Result<RepairReport> {
    let t0 = Instant::now();
    let mut report = RepairReport::default();
    let marker = if s3.is_none() { read_marker(path) } else { None };
    let config_bytes = storage.get(record_object::CONFIG_KEY)?;
    let config_object: Option<RepositoryConfig> = config_bytes
        .as_deref()
        .and_then(|b| record_object::decode(RecordKind::Config, b, "").ok());
    if let Some((_, f)) = &marker
        && *f > REPOSITORY_FORMAT
    {
        return Err(Error::UnsupportedFormat {
            path: path.into(),
            found: *f,
            supported: REPOSITORY_FORMAT,
        });
    }
    let old = OldCatalog::read(path)?;

    // 1. The config: the object, else the marker, else the old catalog.
    let mut config = match (&config_object, &marker, &old.config) {
        (Some(c), _, _) => c.clone(),
        (None, Some((id, _)), old_config) => RepositoryConfig {
            format: REPOSITORY_FORMAT,
            id: id.clone(),
            created: old_config
                .as_ref()
                .filter(|c| &c.id == id)
                .map(|c| c.created.clone())
                .unwrap_or_else(|| chrono::Utc::now().to_rfc3339()),
        },
        (None, None, Some(c)) => c.clone(),
        (None, None, None) => {
            return Err(Error::RepositoryObjectDamaged {
                what: "repository identity".into(),
                location: storage.describe(),
                reason: "the marker, the config object and the catalog are all unreadable".into(),
                remedy: "restore `lifeline-repo` or `meta/config` from a copy of this repository".into(),
            });
        }
    };
    config.format = REPOSITORY_FORMAT;
    report.repository_id = config.id.clone();
    if config_object.as_ref() != Some(&config) {
        storage.replace(record_object::CONFIG_KEY, &record_object::encode_config(&config))?;
        report.rewritten.push(storage.locate(record_object::CONFIG_KEY));
    }

    // The new catalog, beside the old one until the end.
    let building = path.join("catalog.rebuilding");
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(|e| Error::io(format!("remove {}", building.display()), e))?;
    }
    let catalog = SledCatalog::open_with_cache(&building, REBUILD_CACHE)?;
    catalog.set_config(&config)?;

    // 2. Tenants: every name a record object, a tenant directory or the old catalog knows.
    let mut names: BTreeSet<String> = storage
        .list(record_object::TENANTS_PREFIX)?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(record_object::TENANTS_PREFIX).map(str::to_string))
        .collect();
    if s3.is_none() {
        if let Ok(dirs) = std::fs::read_dir(path.join("tenants")) {
            names.extend(dirs.filter_map(|e| e.ok()?.file_name().into_string().ok()));
        }
    } else {
        names.extend(
            storage
                .list("tenants/")?
                .into_iter()
                .filter_map(|(k, _)| Some(k.strip_prefix("tenants/")?.split_once('/')?.0.to_string())),
        );
    }
    names.extend(old.tenants.keys().cloned());
    names.retain(|n| check_name("tenant", n).is_ok());
    for name in names {
        let key = record_object::tenant_key(&name);
        let loc = storage.locate(&key);
        let bytes = storage.get(&key)?;
        let decoded = bytes
            .as_deref()
            .map(|b| record_object::decode::<TenantRecord>(RecordKind::Tenant, b, &loc));
        let rec = match (decoded, old.tenants.get(&name)) {
            (Some(Ok(r)), _) => r,
            (Some(Err(e)), Some(o)) => {
                let copy = record_object::encode_tenant(o);
                if is_original(&copy, bytes.as_deref().unwrap_or_default()) {
                    storage.replace(&key, &copy)?;
                    report.rewritten.push(loc.clone());
                    o.clone()
                } else {
                    report.damaged.push(format!(
                        "{e} (the old catalog's copy differs: tenant `{name}` left out)"
                    ));
                    continue;
                }
            }
            (None, Some(o)) => {
                storage.put_if_absent(&key, &record_object::encode_tenant(o))?;
                report.rewritten.push(loc.clone());
                o.clone()
            }
            (Some(Err(e)), None) => {
                report
                    .damaged
                    .push(format!("{e} (no other copy: tenant `{name}` left out)"));
                continue;
            }
            (None, None) => {
                report.damaged.push(format!(
                    "tenant `{name}` has objects but no tenant record object ({loc}) and no catalog copy: left out"
                ));
                continue;
            }
        };
        catalog.create_tenant(&rec)?;
        report.tenants.push(name.clone());

        // 3. Dedup scopes, then the packs of each store: every footer, in
        // parallel; damaged footers from the old catalog.
        let scopes = rebuild_scopes(storage, s3.is_some(), path, &name, &old, &catalog, &mut report)?;
        for scope in std::iter::once(None).chain(scopes.iter().map(|g| Some(g.as_str()))) {
            index_packs(
                storage,
                s3.is_some(),
                path,
                &name,
                scope,
                &old,
                &catalog,
                &mut report,
                progress,
            )?;
        }

        // 4. Points, each checked against its group's store.
        let index_of = |g: &str| {
            let scope = scopes.iter().any(|s| s == g).then_some(g);
            catalog.object_index(&crate::repository::store_name(&name, scope))
        };
        let keys = storage.list(&record_object::tenant_points_prefix(&name))?;
        let total = keys.len() as u64;
        let mut seen = BTreeSet::new();
        for (n, (key, _)) in keys.into_iter().enumerate() {
            if n % 256 == 0 {
                progress(RepairProgress::Points { done: n as u64, total });
            }
            let loc = storage.locate(&key);
            let Some((t, g, seq)) = record_object::parse_point_key(&key) else {
                report
                    .damaged
                    .push(format!("{loc} is not a point object's name: left out"));
                continue;
            };
            let bytes = storage.get(&key)?.unwrap_or_default();
            let point = match record_object::decode_point(&key, &bytes, &loc) {
                Ok(p) => p,
                Err(e) => match old.points.get(&(t.clone(), g.clone(), seq)) {
                    Some(o) if is_original(&record_object::encode_point(o), &bytes) => {
                        storage.replace(&key, &record_object::encode_point(o))?;
                        report.rewritten.push(loc.clone());
                        o.clone()
                    }
                    _ => {
                        report.damaged.push(format!("{e}: point {seq} of group `{g}` is lost"));
                        continue;
                    }
                },
            };
            let missing: Vec<ObjectId> = point
                .header
                .roots
                .iter()
                .filter_map(|r| r.0)
                .filter(|id| index_of(&g).is_ok_and(|ix| ix.get(id).ok().flatten().is_none()))
                .collect();
            if let Some(id) = missing.first() {
                report.damaged.push(format!(
                    "point {seq} of group `{g}` references {id}, which no pack holds: kept, run `lifeline verify` to see what it affects"
                ));
            }
            catalog.adopt_point(&point)?;
            seen.insert((t, g.clone(), seq));
            let e = report.groups.entry(format!("{name}/{g}")).or_default();
            e.0 += 1;
            e.1 = e.1.max(seq);
            report.points += 1;
        }
        progress(RepairProgress::Points { done: total, total });
        for (t, g, seq) in old.points.keys().filter(|k| k.0 == name && !seen.contains(*k)) {
            report.only_in_old_catalog.push(format!(
                "point {seq} of group `{g}` (tenant `{t}`) is in the old catalog but has no point object (pruned, or its object was deleted): not restored"
            ));
        }
    }

    // Leases of points that still exist.
    let now = chrono::Utc::now();
    for pin in &old.pins {
        if pin.until > now && catalog.point_seqs(&pin.tenant)?.contains(&(pin.group.clone(), pin.seq)) {
            catalog.pin_owned(
                &pin.tenant,
                &pin.group,
                pin.seq,
                &pin.holder,
                pin.until,
                pin.owner.as_deref(),
            )?;
            report.pins += 1;
        }
    }
    drop(catalog);
    drop(old);

    // Swap: the old catalog is kept, the new one takes its place.
    let current = path.join("catalog");
    if current.exists() {
        let kept = path.join(format!(
            "catalog.old-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        std::fs::rename(&current, &kept).map_err(|e| Error::io(format!("move {} aside", current.display()), e))?;
        report.old_catalog = Some(kept);
    }
    std::fs::rename(&building, &current)
        .map_err(|e| Error::io(format!("put the rebuilt catalog in place at {}", current.display()), e))?;
    fsutil::fsync_dir(path)?;
    if s3.is_some() {
        report.elapsed_secs = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let marker_text = format!("{REPOSITORY_MARKER}\nformat {REPOSITORY_FORMAT}\nid {}\n", config.id);
    if std::fs::read_to_string(path.join(REPOSITORY_MARKER_FILE))
        .ok()
        .as_deref()
        != Some(&marker_text)
    {
        fsutil::write_atomic(&path.join(REPOSITORY_MARKER_FILE), marker_text.as_bytes())?;
        report
            .rewritten
            .push(path.join(REPOSITORY_MARKER_FILE).display().to_string());
    }
    report.elapsed_secs = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Indexes the packs of one store of `tenant` (its shared one, or `scope`'s
/// own) in the new catalog: every footer, read in parallel; the entries of a
/// pack whose footer fails from the old catalog, each object's trailer checked.
#[allow(clippy::too_many_arguments)]
fn index_packs(
    storage: &dyn ObjectStorage,
    s3: bool,
    path: &Path,
    tenant: &str,
    scope: Option<&str>,
    old: &OldCatalog,
    catalog: &SledCatalog,
    report: &mut RepairReport,
    progress: &(dyn Fn(RepairProgress) + Sync),
) -> Result<()> {
    let store = crate::repository::store_name(tenant, scope);
    let prefix = crate::repository::objects_prefix(tenant, scope);
    let packs: Vec<(PackId, PackSource)> = match s3 {
        false => pack_files(&path.join(&prefix))?
            .into_iter()
            .map(|(id, p)| (id, PackSource::File(p)))
            .collect(),
        true => pack_objects(storage, &prefix)?
            .into_iter()
            .map(|(id, k, _)| (id, PackSource::Object(k)))
            .collect(),
    };
    let total = packs.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let read_all = || -> Vec<(PackId, PackSource, Footer)> {
        packs
            .into_par_iter()
            .map(|(id, p)| {
                let f = match &p {
                    PackSource::File(path) => read_footer(path, id),
                    PackSource::Object(key) => read_object_footer(storage, key, id),
                };
                let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if d.is_multiple_of(64) || d == total {
                    progress(RepairProgress::Packs { done: d, total });
                }
                (id, p, f)
            })
            .collect()
    };
    // Footers of a bucket are network reads: many in flight at once.
    let footers = match s3 {
        false => read_all(),
        true => rayon::ThreadPoolBuilder::new()
            .num_threads(16)
            .build()
            .map_err(|e| Error::io("start the footer readers", std::io::Error::other(e)))?
            .install(read_all),
    };
    let index = catalog.object_index(&store)?;
    let damaged_packs: BTreeSet<PackId> = footers.iter().filter(|f| f.2.is_err()).map(|f| f.0).collect();
    let mut from_old = if damaged_packs.is_empty() {
        BTreeMap::new()
    } else {
        old.entries_of(&store, &damaged_packs)
    };
    let mut all = Vec::new();
    for (id, p, footer) in footers {
        let entries = match footer {
            Ok(e) => e,
            Err(reason) => {
                let checked = checked_entries(storage, &p, from_old.remove(&id).unwrap_or_default());
                let shown = match &p {
                    PackSource::File(f) => f.display().to_string(),
                    PackSource::Object(k) => storage.locate(k),
                };
                if checked.is_empty() {
                    report.damaged.push(format!(
                        "pack {shown}: its footer is unreadable ({reason}) and the old catalog has no intact entry for it: its objects are not indexed"
                    ));
                    continue;
                }
                report.entries_from_old_catalog += checked.len() as u64;
                report.rewritten.push(format!(
                    "{shown} (footer unreadable: {reason}; {} entries taken from the old catalog, each object's trailer checked)",
                    checked.len()
                ));
                checked
            }
        };
        report.packs += 1;
        report.objects += entries.len() as u64;
        all.extend(entries);
    }
    index.load(&mut all)?;
    index.flush()?;
    drop(all);
    Ok(())
}

/// The groups of `tenant` with their own dedup scope, recorded in the new
/// catalog: every group a scope record object, a store of its own, or the old
/// catalog names. The scope is what the key says (tenant and group), so a
/// missing or damaged record object is written anew, never left out: its
/// group's objects are in its own store, and without the scope its points
/// would look there in vain.
fn rebuild_scopes(
    storage: &dyn ObjectStorage,
    s3: bool,
    path: &Path,
    tenant: &str,
    old: &OldCatalog,
    catalog: &SledCatalog,
    report: &mut RepairReport,
) -> Result<Vec<String>> {
    let prefix = format!("{}{tenant}/", record_object::SCOPES_PREFIX);
    let mut groups: BTreeSet<String> = storage
        .list(&prefix)?
        .into_iter()
        .filter_map(|(k, _)| record_object::parse_scope_key(&k).map(|(_, g)| g))
        .collect();
    let stores = format!("tenants/{tenant}/groups/");
    if s3 {
        groups.extend(
            storage
                .list(&stores)?
                .into_iter()
                .filter_map(|(k, _)| Some(k.strip_prefix(&stores)?.split_once('/')?.0.to_string())),
        );
    } else if let Ok(dirs) = std::fs::read_dir(path.join(&stores)) {
        groups.extend(dirs.filter_map(|e| e.ok()?.file_name().into_string().ok()));
    }
    groups.extend(old.scopes.get(tenant).into_iter().flatten().cloned());
    groups.retain(|g| check_name("group", g).is_ok());
    for g in &groups {
        let key = record_object::scope_key(tenant, g);
        let loc = storage.locate(&key);
        let rec = match storage.get(&key)? {
            Some(b) => match record_object::decode_scope(&key, &b, &loc) {
                Ok(r) => r,
                Err(e) => {
                    let rec = fresh_scope(tenant, g);
                    storage.replace(&key, &record_object::encode_scope(&rec))?;
                    report.rewritten.push(format!("{loc} ({e}; written anew from its key)"));
                    rec
                }
            },
            None => {
                let rec = fresh_scope(tenant, g);
                storage.put_if_absent(&key, &record_object::encode_scope(&rec))?;
                report.rewritten.push(format!(
                    "{loc} (missing while group `{g}` has a store of its own; written anew)"
                ));
                rec
            }
        };
        catalog.create_scope(&rec)?;
    }
    Ok(groups.into_iter().collect())
}

fn fresh_scope(tenant: &str, group: &str) -> crate::catalog::ScopeRecord {
    crate::catalog::ScopeRecord {
        tenant: tenant.into(),
        group: group.into(),
        created: chrono::Utc::now().to_rfc3339(),
    }
}

/// The entries whose object, read at its location in `pack`, passes its own
/// trailer check.
fn checked_entries(
    storage: &dyn ObjectStorage,
    pack: &PackSource,
    entries: Vec<(ObjectId, ObjectLocation)>,
) -> Vec<(ObjectId, ObjectLocation)> {
    use std::os::unix::fs::FileExt;
    let file = match pack {
        PackSource::File(p) => match std::fs::File::open(p) {
            Ok(f) => Some(f),
            Err(_) => return Vec::new(),
        },
        PackSource::Object(_) => None,
    };
    entries
        .into_iter()
        .filter(|(_, loc)| {
            let buf = match (&file, pack) {
                (Some(f), _) => {
                    let mut buf = vec![0u8; loc.len as usize];
                    f.read_exact_at(&mut buf, loc.offset).is_ok().then_some(buf)
                }
                (None, PackSource::Object(k)) => storage
                    .get_range(k, loc.offset, loc.len as u64)
                    .ok()
                    .flatten()
                    .filter(|b| b.len() == loc.len as usize),
                (None, PackSource::File(_)) => None,
            };
            buf.is_some_and(|b| SealedObject::parse(&b).is_ok())
        })
        .collect()
}
