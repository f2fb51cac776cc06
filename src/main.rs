//! The `herald` binary: parses the command line and runs a command.

use anyhow::Context as _;
use clap::Parser;
use herald::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("bad --log-level {:?}", cli.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config();
            let server = herald::http::start(config)
                .await
                .context("could not start the server")?;
            println!("herald listening on http://{}", server.addr);
            let stop = server.shutdown_token();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            server.wait().await.context("server failed")?;
        }
        Command::Pub(args) => {
            let answer = herald::client::publish(args).await?;
            println!("{answer}");
        }
        Command::Sub(args) => herald::client::subscribe::run(args).await?,
    }
    Ok(())
}
