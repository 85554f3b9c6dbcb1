//! The receiver's `Admin` service: what an admin certificate may do on a
//! receiver that agents may not (the no-key scrub, prune, garbage collection).
//! The receiver owns its repository's catalog, so these run inside it.
//!
//! Handlers are thin: the caller is authorised first (agents are append-only
//! and refused), then the proto message is converted with `TryFrom` into a
//! typed request ([`PruneRequest`], [`GcRequest`], [`VerifyRequest`]) whose
//! fields are checked at this boundary, each error an `INVALID_ARGUMENT` that
//! names the field; the work runs on a blocking thread over typed values only.

use std::sync::Arc;
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_replicator::{RetentionPolicy, Tz, check_name};
use tonic::{Request, Response, Status};

use crate::identity::Peer;
use crate::receiver::{Receiver, blocking};
use crate::status::to_status;

/// A checked `Prune` request: which group, by which policy, in which zone.
#[derive(Debug)]
pub(crate) struct PruneRequest {
    pub tenant: String,
    pub group: String,
    pub policy: RetentionPolicy,
    pub zone: Tz,
    pub dry_run: bool,
}

impl TryFrom<pb::PruneRequest> for PruneRequest {
    type Error = Status;

    fn try_from(r: pb::PruneRequest) -> Result<Self, Status> {
        check_name("tenant", &r.tenant).map_err(to_status)?;
        check_name("group", &r.group).map_err(to_status)?;
        // The offset is checked even when a named zone replaces it: a client
        // that sends both sends a valid one.
        let fixed = chrono::FixedOffset::east_opt(r.tz_offset_secs)
            .ok_or_else(|| Status::invalid_argument("tz_offset_secs is out of range"))?;
        let zone = if r.tz_name.is_empty() {
            Tz::Fixed(fixed)
        } else {
            Tz::Named(r.tz_name.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "unknown time zone `{}`: write an IANA name such as Europe/Berlin",
                    r.tz_name
                ))
            })?)
        };
        // 0 turns a duration rule off.
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let policy = RetentionPolicy {
            journal: secs(r.journal_secs),
            keep_within: secs(r.keep_within_secs),
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        };
        if policy.is_empty() {
            return Err(Status::invalid_argument(
                "an empty retention policy would keep only the newest point: give at least one rule",
            ));
        }
        Ok(PruneRequest {
            tenant: r.tenant,
            group: r.group,
            policy,
            zone,
            dry_run: r.dry_run,
        })
    }
}

/// A checked `Gc` request.
#[derive(Debug)]
pub(crate) struct GcRequest {
    /// `None`: every tenant.
    pub tenant: Option<String>,
    /// Objects in packs younger than this are kept.
    pub grace: Duration,
    pub dry_run: bool,
}

impl TryFrom<pb::GcRequest> for GcRequest {
    type Error = Status;

    fn try_from(r: pb::GcRequest) -> Result<Self, Status> {
        Ok(GcRequest {
            tenant: optional_tenant(r.tenant)?,
            grace: Duration::from_secs(r.grace_secs),
            dry_run: r.dry_run,
        })
    }
}

/// A checked `Verify` request.
#[derive(Debug)]
pub(crate) struct VerifyRequest {
    /// `None`: every tenant.
    pub tenant: Option<String>,
}

impl TryFrom<pb::VerifyRequest> for VerifyRequest {
    type Error = Status;

    fn try_from(r: pb::VerifyRequest) -> Result<Self, Status> {
        Ok(VerifyRequest {
            tenant: optional_tenant(r.tenant)?,
        })
    }
}

/// A tenant field where empty means every tenant.
fn optional_tenant(tenant: String) -> Result<Option<String>, Status> {
    if tenant.is_empty() {
        return Ok(None);
    }
    check_name("tenant", &tenant).map_err(to_status)?;
    Ok(Some(tenant))
}

/// The admin identity behind `req`; agents are refused: they are append-only.
fn admin_of<T>(req: &Request<T>, what: &str) -> Result<String, Status> {
    match Peer::of(req)? {
        Peer::Admin { name } => Ok(name),
        Peer::Agent { name, .. } => Err(Status::permission_denied(format!(
            "agent `{name}` cannot {what}: agents are append-only; use an admin identity"
        ))),
    }
}

/// The tenants a request names: the one given, or every tenant of the catalog.
fn tenants_of(receiver: &Receiver, tenant: Option<String>) -> Result<Vec<String>, Status> {
    match tenant {
        Some(t) => Ok(vec![t]),
        None => receiver.repo()?.catalog().tenants().map_err(to_status),
    }
}

/// The admin face of a [`Receiver`].
#[derive(Clone)]
pub struct AdminService(Arc<Receiver>);

impl AdminService {
    pub fn new(receiver: Arc<Receiver>) -> AdminService {
        AdminService(receiver)
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn prune(&self, req: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let admin = admin_of(&req, "prune")?;
        let r = PruneRequest::try_from(req.into_inner())?;
        let me = self.0.clone();
        tracing::info!(%admin, tenant = %r.tenant, group = %r.group, dry_run = r.dry_run, "prune requested");
        let (decisions, removed) = blocking(move || {
            let ds = me
                .repo()?
                .prune(&r.tenant, &r.group, &r.policy, &r.zone, r.dry_run)
                .map_err(to_status)?;
            let remove: Vec<u64> = ds.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
            Ok((
                serde_json::to_string(&ds).expect("serialisable"),
                if r.dry_run { vec![] } else { remove },
            ))
        })
        .await?;
        Ok(Response::new(pb::PruneResponse { decisions, removed }))
    }

    async fn gc(&self, req: Request<pb::GcRequest>) -> Result<Response<pb::GcResponse>, Status> {
        let admin = admin_of(&req, "collect garbage")?;
        let r = GcRequest::try_from(req.into_inner())?;
        let me = self.0.clone();
        tracing::info!(%admin, tenant = %r.tenant.as_deref().unwrap_or(""), grace_secs = r.grace.as_secs(),
            dry_run = r.dry_run, "garbage collection requested");
        let reports = blocking(move || {
            let repo = me.repo()?;
            let mut reports = Vec::new();
            for t in &tenants_of(&me, r.tenant)? {
                let report = me.gc.collect(&repo, t, r.grace, r.dry_run).map_err(to_status)?;
                tracing::info!(
                    tenant = %t,
                    removed = report.collect.objects_removed,
                    reclaimed = report.collect.bytes_reclaimed,
                    touched = report.objects_touched,
                    "garbage collected"
                );
                reports.push(serde_json::to_string(&report).expect("serialisable"));
            }
            Ok(reports)
        })
        .await?;
        Ok(Response::new(pb::GcResponse { reports }))
    }

    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let admin = admin_of(&req, "run admin operations")?;
        let r = VerifyRequest::try_from(req.into_inner())?;
        let me = self.0.clone();
        tracing::info!(%admin, tenant = %r.tenant.as_deref().unwrap_or(""), "verify requested");
        let (tenants, reports) = blocking(move || {
            let tenants = tenants_of(&me, r.tenant)?;
            let mut reports = Vec::new();
            for t in &tenants {
                let r = me.verify(t).map_err(to_status)?;
                reports.push(serde_json::to_string(&r).expect("serialisable"));
            }
            Ok((tenants, reports))
        })
        .await?;
        Ok(Response::new(pb::VerifyResponse { reports, tenants }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prune(f: impl FnOnce(&mut pb::PruneRequest)) -> Result<PruneRequest, Status> {
        let mut r = pb::PruneRequest {
            tenant: "acme".into(),
            group: "db".into(),
            keep_last: 3,
            ..Default::default()
        };
        f(&mut r);
        PruneRequest::try_from(r)
    }

    fn refused(r: Result<impl std::fmt::Debug, Status>) -> String {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        e.message().to_string()
    }

    #[test]
    fn prune_request_is_typed() {
        let r = prune(|r| {
            r.journal_secs = 3600;
            r.tz_name = "Europe/Berlin".into();
            r.dry_run = true;
        })
        .unwrap();
        assert_eq!(r.policy.journal, Some(Duration::from_secs(3600)));
        assert_eq!(r.policy.keep_within, None);
        assert_eq!(r.policy.keep_last, 3);
        assert!(matches!(r.zone, Tz::Named(chrono_tz::Tz::Europe__Berlin)));
        assert!(r.dry_run);
        let r = prune(|r| r.tz_offset_secs = 3600).unwrap();
        assert!(matches!(r.zone, Tz::Fixed(z) if z.local_minus_utc() == 3600));
    }

    #[test]
    fn prune_request_names_the_bad_field() {
        assert!(refused(prune(|r| r.tenant = "../x".into())).contains("tenant"));
        assert!(refused(prune(|r| r.group = String::new())).contains("group"));
        assert!(refused(prune(|r| r.tz_offset_secs = 90_000)).contains("tz_offset_secs"));
        assert!(refused(prune(|r| r.tz_name = "Mars/Olympus".into())).contains("time zone `Mars/Olympus`"));
        assert!(refused(prune(|r| r.keep_last = 0)).contains("empty retention policy"));
    }

    #[test]
    fn empty_tenant_means_every_tenant() {
        let gc = GcRequest::try_from(pb::GcRequest {
            tenant: String::new(),
            grace_secs: 60,
            dry_run: true,
        })
        .unwrap();
        assert_eq!(gc.tenant, None);
        assert_eq!(gc.grace, Duration::from_secs(60));
        let v = VerifyRequest::try_from(pb::VerifyRequest { tenant: "acme".into() }).unwrap();
        assert_eq!(v.tenant.as_deref(), Some("acme"));
        assert!(refused(VerifyRequest::try_from(pb::VerifyRequest { tenant: "a/b".into() })).contains("tenant"));
        assert!(
            refused(GcRequest::try_from(pb::GcRequest {
                tenant: ".hidden".into(),
                ..Default::default()
            }))
            .contains("tenant")
        );
    }
}
