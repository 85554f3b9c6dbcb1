//! Memory budgets of a receiver: semaphores counted in bytes, so that what
//! every call of one kind holds at once stays under a fixed bound however many
//! calls arrive.
//!
//! A read's answer is counted until it has been sent, not only until the
//! handler returns: tonic encodes the answer after the handler and hyper keeps
//! the encoded copy until the peer has taken it, so the handler puts the
//! permits it holds in the response's extensions ([`Held`]) and
//! [`HoldUntilSent`] moves them into the response body, which hyper drops once
//! the body is sent (or the call is cancelled).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};
use tonic::server::NamedService;

/// A number of bytes a receiver lets calls of one kind hold at once.
#[derive(Clone)]
pub(crate) struct Budget {
    sem: Arc<Semaphore>,
    what: &'static str,
}

impl Budget {
    pub(crate) fn new(bytes: usize, what: &'static str) -> Budget {
        Budget {
            sem: Arc::new(Semaphore::new(bytes)),
            what,
        }
    }

    /// Waits up to `wait` for `bytes`; RESOURCE_EXHAUSTED (the client retries)
    /// when other calls hold the budget that long.
    pub(crate) async fn acquire(&self, bytes: usize, wait: Duration) -> Result<OwnedSemaphorePermit, Status> {
        let n = u32::try_from(bytes).map_err(|_| Status::invalid_argument("request too large"))?;
        match tokio::time::timeout(wait, self.sem.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Status::unavailable("the receiver is shutting down")),
            Err(_) => Err(Status::resource_exhausted(format!(
                "the receiver is busy with other {} (its memory budget for them is in use): retry",
                self.what
            ))),
        }
    }

    /// `bytes` if they are free now.
    pub(crate) fn try_acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        self.sem.clone().try_acquire_many_owned(n).ok()
    }
}

/// Permits an answer holds until it is sent (see the module docs). Put in a
/// [`tonic::Response`]'s extensions.
#[derive(Clone)]
pub(crate) struct Held(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl Held {
    pub(crate) fn new(p: OwnedSemaphorePermit) -> Held {
        Held(Arc::new(p))
    }
}

/// A service whose answers keep their [`Held`] permits until sent.
#[derive(Clone)]
pub(crate) struct HoldUntilSent<S>(pub(crate) S);

impl<S: NamedService> NamedService for HoldUntilSent<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for HoldUntilSent<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let mut resp = answer.await?;
            Ok(match resp.extensions_mut().remove::<Held>() {
                Some(held) => resp.map(|inner| Body::new(HeldBody { inner, _held: held })),
                None => resp,
            })
        })
    }
}

/// One service, two message limits: `PutObjects` calls go to `uploads`, every
/// other call to `rest` (the same service built with a smaller decoding
/// limit), so that only uploads may send large messages.
#[derive(Clone)]
pub(crate) struct UploadsApart<S> {
    pub(crate) uploads: S,
    pub(crate) rest: S,
}

impl<S: NamedService> NamedService for UploadsApart<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for UploadsApart<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match (self.uploads.poll_ready(cx), self.rest.poll_ready(cx)) {
            (Poll::Ready(a), Poll::Ready(b)) => Poll::Ready(a.and(b)),
            _ => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path().ends_with("/PutObjects") {
            self.uploads.call(req)
        } else {
            self.rest.call(req)
        }
    }
}

/// A response body that releases its permits when dropped.
struct HeldBody {
    inner: Body,
    _held: Held,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
