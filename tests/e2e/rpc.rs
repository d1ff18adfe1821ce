//! The endpoint pool against a real Anvil: what its users get back over one shared WebSocket.

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ext::AnvilApi},
    rpc::json_rpc::{Id, Request, RequestPacket, ResponsePacket},
};
use guardian_chain::{Toolchain, devnet::Devnet, devnet::DevnetOptions};
use guardian_rpc::{PoolTransport, RpcPool};
use tower::Service;

/// The follower (`RpcPool::call`) and the pause flow (`PoolTransport`, the provider the Safe
/// client uses) send through the same cached WebSocket. Flooded from both sides at once, every
/// answer must be the one asked for: a header of the requested number, the balance of the
/// requested account, and on raw packets the caller's own id back. Each side used to number
/// its requests from its own counter, so answers crossed (a block header answering an
/// `eth_call`) or got lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_on_one_websocket_never_cross_between_its_users() {
    let toolchain = Toolchain::discover().expect("toolchain (scripts/setup.sh)");
    let devnet = Devnet::spawn(&toolchain, &DevnetOptions::default()).expect("anvil");
    let admin = devnet.reader();
    admin.anvil_mine(Some(40), None).await.expect("mine 40 blocks");
    // Accounts whose balances say who they are: account i holds i * 1 000 003 wei.
    let accounts: Vec<(Address, U256)> = (1..=20u64)
        .map(|i| (Address::with_last_byte(i as u8 + 0x40), U256::from(i * 1_000_003)))
        .collect();
    for (account, balance) in &accounts {
        admin.anvil_set_balance(*account, *balance).await.expect("set balance");
    }

    let pool =
        Arc::new(RpcPool::new(vec![devnet.ws_url()], 138, Duration::from_secs(10)).expect("pool"));
    let pause_flow = pool.failover_provider(Duration::from_millis(100));
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..8u64 {
        // The follower's side: headers by number.
        let rpc = pool.clone();
        tasks.spawn(async move {
            for n in 0..40u64 {
                let number = (n * 7 + round) % 40 + 1;
                let block = rpc
                    .call("eth_getBlockByNumber", |p| async move {
                        p.get_block_by_number(number.into()).await
                    })
                    .await
                    .map_err(|e| format!("header {number}: {e}"))?
                    .ok_or_else(|| format!("header {number}: none"))?;
                if block.header.number != number {
                    return Err(format!("asked for block {number}, got {}", block.header.number));
                }
            }
            Ok::<_, String>(())
        });
        // The pause flow's side: balances through the failover provider.
        let provider = pause_flow.clone();
        let theirs = accounts.clone();
        tasks.spawn(async move {
            for n in 0..40usize {
                let (account, expected) = theirs[(n + round as usize) % theirs.len()];
                let balance = provider
                    .get_balance(account)
                    .await
                    .map_err(|e| format!("balance of {account}: {e}"))?;
                if balance != expected {
                    return Err(format!(
                        "balance of {account}: expected {expected}, got {balance}"
                    ));
                }
            }
            Ok(())
        });
        // Raw packets through the transport, with ids of the caller's choosing.
        let mut transport = PoolTransport::new(pool.clone());
        let theirs = accounts.clone();
        tasks.spawn(async move {
            for n in 0..40u64 {
                let (account, expected) = theirs[(n as usize * 3 + round as usize) % 20];
                let id = round * 1_000 + n;
                let request = Request::new("eth_getBalance", Id::Number(id), (account, "latest"))
                    .serialize()
                    .map_err(|e| e.to_string())?;
                let answer = transport
                    .call(RequestPacket::Single(request))
                    .await
                    .map_err(|e| format!("raw eth_getBalance #{id}: {e}"))?;
                let ResponsePacket::Single(response) = answer else {
                    return Err(format!("#{id}: a batch answered a single request"));
                };
                if response.id != Id::Number(id) {
                    return Err(format!("sent id {id}, the answer carries {}", response.id));
                }
                let balance: U256 = response
                    .payload
                    .try_success_as()
                    .ok_or_else(|| format!("#{id}: an error answered"))?
                    .map_err(|e| format!("#{id}: not a balance: {e}"))?;
                if balance != expected {
                    return Err(format!("#{id}: expected {expected}, got {balance}"));
                }
            }
            Ok(())
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(failure) = done.expect("task") {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 24 users got a wrong answer: {failures:#?}",
        failures.len()
    );
}
