//! A TCP proxy that delays every byte by a fixed one-way latency in each
//! direction, without limiting throughput: a delay line, not a rate limit (use
//! `tc … tbf` for bandwidth). Bytes keep their order; each direction is a reader
//! that stamps chunks with their due time and a writer that sends them when due.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction: enough for 200 Mbit/s x 50 ms in 64 KiB chunks.
const IN_FLIGHT: usize = 4096;

async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// Accepts on `listener`, connects each client to `upstream`, and delays both
/// directions by `one_way` until `shutdown` resolves.
pub async fn run_delay_proxy(
    listener: TcpListener,
    upstream: String,
    one_way: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (client, _) = accepted?;
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(delay_line(cr, sw, one_way), delay_line(sr, cw, one_way));
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_arrive_in_order_and_late() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_delay_proxy(proxy, echo_addr, Duration::from_millis(20), async {
            let _ = stopped.await;
        }));
        let mut c = TcpStream::connect(proxy_addr).await.unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        c.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
        // Two one-way delays at least (the round trip through the echo server).
        assert!(started.elapsed() >= Duration::from_millis(40));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
