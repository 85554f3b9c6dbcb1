//! Serving a [`Receiver`]: its two gRPC services (the agents' `Replication`,
//! the admins' `Admin`) on one TLS listener with the message limits of the
//! receiver module, and the watcher that reopens the catalog after an I/O
//! error, until the caller's shutdown future resolves.

use std::future::Future;
use std::sync::Arc;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_server::ReplicationServer;
use tokio::net::TcpListener;
use tonic::transport::{Server, ServerTlsConfig};

use crate::admin::AdminService;
use crate::budget::{HoldUntilSent, UploadsApart};
use crate::receiver::{MAX_MESSAGE, MAX_REQUEST, MAX_UPLOAD_MESSAGE, Receiver};
use crate::replication::ReceiverService;

/// Serves the receiver on `listener` until `shutdown` resolves; in-flight calls
/// finish first. An upload that does not finish commits no point; objects it
/// stored stay unreferenced (garbage collection's to remove) and are never lost
/// for other uploads that rely on them.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTlsConfig,
    receiver: Arc<Receiver>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let admin = pb::admin_server::AdminServer::new(AdminService::new(receiver.clone()));
    // Every second: reopen the catalog if an I/O error left it refusing work.
    let watcher = {
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let r2 = r.clone();
                let _ = tokio::task::spawn_blocking(move || r2.recover()).await;
            }
        })
    };
    let service = ReceiverService::new(receiver);
    let svc = HoldUntilSent(UploadsApart {
        uploads: ReplicationServer::new(service.clone())
            .max_decoding_message_size(MAX_UPLOAD_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        rest: ReplicationServer::new(service)
            .max_decoding_message_size(MAX_REQUEST)
            .max_encoding_message_size(MAX_MESSAGE),
    });
    let mut server = Server::builder()
        .tls_config(tls)?
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20));
    let r = server
        .add_service(svc)
        .add_service(admin)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await;
    watcher.abort();
    r
}
