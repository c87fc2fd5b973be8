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
    /// Billing: `billing run --date YYYY-MM-DD` runs the daily billing run for that date.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Run billing for a date (default today, UTC); running a date twice changes nothing.
    Run {
        #[arg(long, value_parser = parse_date)]
        date: Option<chrono::NaiveDate>,
    },
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("`{s}` is not a date like 2026-12-01"))
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
        Command::Billing {
            command: BillingCommand::Run { date },
        } => billing_run(&config, date).await,
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

async fn billing_run(config: &Config, date: Option<chrono::NaiveDate>) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let gateways = tollgate::payments::Gateways::from_config(config);
    let report = tollgate::billing_run::run(&db, &gateways, date).await?;
    println!("{}", report.to_json());
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    tracing::info!(schema_version = db.schema_version().await?, "migrations applied");
    Ok(())
}
