//! `tollgate`: the control plane's command line. All logic lives in the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tollgate::config::Config;
use tollgate::db::Db;
use tollgate::startup::{shutdown_signal, Application};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Tollgate control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (configuration from TOLLGATE_* variables and TOLLGATE_CONFIG).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the Lua script the Redis counter store runs (for redis-benchmark).
    CountersScript,
}

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CountersScript = cli.command {
        print!("{}", tollgate::counters::redis::RedisStore::script_source());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    tollgate::telemetry::init(config.log_format);
    let result = match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => migrate(&config).await,
        Command::CountersScript => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal();
    let app = Application::build(config).await?;
    app.run_until(shutdown).await?;
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    tracing::info!(schema_version = db.schema_version().await?, "migrations applied");
    Ok(())
}
