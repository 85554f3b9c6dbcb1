//! Ports for servers a test starts on 127.0.0.1 when the server cannot be told
//! to bind port 0 and report it (Garage, PostgreSQL, a runbook's ports).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out in this process: bind(0) gives a free port, but once the
/// probe socket is closed the kernel may hand the same port to the next
/// caller; never hand out one twice ourselves.
static USED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free TCP port on 127.0.0.1 not handed out before in this process.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if USED_PORTS.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_the_same_port_twice() {
        let ports: std::collections::BTreeSet<u16> = (0..50).map(|_| super::free_port()).collect();
        assert_eq!(ports.len(), 50);
    }
}
