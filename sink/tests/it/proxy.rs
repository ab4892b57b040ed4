//! A TCP proxy in front of the shared ClickHouse that a test can take down
//! (existing connections cut, new ones refused) and bring back, so that an
//! outage is simulated without stopping the server other tests use.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// Starts forwarding to `target` (host:port).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (up, watch_up) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*watch_up.borrow() {
                    drop(client); // refused while down
                    continue;
                }
                let target = target.clone();
                let mut watch_up = watch_up.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch_up.wait_for(|up| !*up) => {} // cut on outage
                    }
                });
            }
        });
        Self { addr, up }
    }

    /// The URL to give the sink.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes ClickHouse down (`false`) or brings it back (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}
