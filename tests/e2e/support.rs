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
