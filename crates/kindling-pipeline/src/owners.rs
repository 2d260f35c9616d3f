//! Which local process owns an address: listening sockets (so a client's
//! destination can be named by its server's workload) and client sockets (so
//! a server can tell that the caller is traced too, and the call is not
//! counted twice on the service map).

use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub struct Owners {
    listeners: FxHashMap<SocketAddr, u32>,
    clients: FxHashMap<SocketAddr, u32>,
    capacity: usize,
    overflow: u64,
}

impl Owners {
    pub fn new(capacity: usize) -> Owners {
        Owners { listeners: FxHashMap::default(), clients: FxHashMap::default(), capacity, overflow: 0 }
    }

    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    pub fn listener(&mut self, addr: SocketAddr, pid: u32) {
        if self.listeners.len() >= self.capacity && !self.listeners.contains_key(&addr) {
            self.overflow += 1;
            return;
        }
        self.listeners.insert(addr, pid);
    }

    pub fn client(&mut self, addr: SocketAddr, pid: u32) {
        if addr.port() == 0 {
            return;
        }
        if self.clients.len() >= self.capacity && !self.clients.contains_key(&addr) {
            // Client addresses are never removed (records and TCP events of a
            // connection often complete after its close): start over when full.
            self.overflow += 1;
            self.clients.clear();
        }
        self.clients.insert(addr, pid);
    }

    /// The process listening on `addr`, also through a wildcard bind.
    pub fn listener_of(&self, addr: &SocketAddr) -> Option<u32> {
        if let Some(p) = self.listeners.get(addr) {
            return Some(*p);
        }
        let any = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.listeners
            .get(&SocketAddr::new(any, addr.port()))
            .or_else(|| {
                // A dual-stack [::] listener also serves IPv4.
                self.listeners.get(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr.port()))
            })
            .copied()
    }

    pub fn client_of(&self, addr: &SocketAddr) -> Option<u32> {
        self.clients.get(addr).copied()
    }
}
