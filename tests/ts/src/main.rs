//! Serves the TypeScript client's test servers on free loopback ports, prints their URLs
//! as one JSON line on stdout, and stops when stdin closes (so the process that started
//! it never leaves it behind).
//!
//! ```text
//! cargo run -p gonet-ts-tests --bin ts-test-server
//! ```

use std::process::ExitCode;

use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> ExitCode {
    let servers = match gonet_ts_tests::Servers::start(None).await {
        Ok(servers) => servers,
        Err(err) => {
            eprintln!("ts-test-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", servers.json());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    servers.shutdown().await;
    ExitCode::SUCCESS
}
