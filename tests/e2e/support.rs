//! Shared fixtures: the toolchain, the compiled contracts and a fresh stage per test.

use std::sync::OnceLock;

use guardian_chain::{Contracts, Testbed, TestbedOptions, Toolchain};

/// The toolchain and the compiled project, shared by every test in this binary.
pub(crate) fn contracts() -> &'static (Toolchain, Contracts) {
    static COMPILED: OnceLock<(Toolchain, Contracts)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let toolchain = Toolchain::discover().expect("toolchain installed (scripts/setup.sh)");
        let contracts = Contracts::compile(&toolchain).expect("contracts/ compiles");
        (toolchain, contracts)
    })
}

/// A fresh Anvil with a 2-of-3 Safe and the targets it owns.
pub(crate) async fn testbed() -> Testbed {
    testbed_with(TestbedOptions::default()).await
}

/// A fresh stage laid out as `options` says.
pub(crate) async fn testbed_with(options: TestbedOptions) -> Testbed {
    let (toolchain, contracts) = contracts();
    Testbed::start(toolchain, contracts, &options).await.expect("testbed starts")
}

/// A loopback TCP forwarder that can be switched off and on, standing in for an RPC endpoint
/// that dies and comes back with its chain intact.
pub(crate) struct TcpSwitch {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl TcpSwitch {
    /// Forward 127.0.0.1:<new port> to 127.0.0.1:`target`.
    pub(crate) async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound); // refused while down
                    continue;
                }
                let mut down = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {} // cut live connections too
                    }
                });
            }
        });
        Self { port, up }
    }

    /// The port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Switch forwarding on or off.
    pub(crate) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}
