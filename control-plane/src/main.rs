//! `tollgate`: the control plane's command line. All logic lives in the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tollgate::config::Config;
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
    /// Demo data: `seed demo` makes a service with a plan, an account with an application, and
    /// deploys and promotes the service (once: seeding again answers what is there). Prints
    /// what it made as JSON.
    Seed {
        #[command(subcommand)]
        command: SeedCommand,
    },
}

#[derive(Subcommand)]
enum SeedCommand {
    Demo(Box<DemoArgs>),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// The service's name.
    #[arg(long, default_value = "Demo API")]
    service: String,
    /// Its system name (what makes seeding again a no-op).
    #[arg(long, default_value = "demo")]
    system_name: String,
    #[arg(long, default_value = "Basic")]
    plan: String,
    /// A limit on hits, PERIOD=N (`minute=10`), or `none`.
    #[arg(long, default_value = "minute=10")]
    limit: String,
    #[arg(long, default_value = "Demo Developer")]
    org_name: String,
    #[arg(long, default_value = "demo")]
    username: String,
    #[arg(long, default_value = "demo@example.com")]
    email: String,
    #[arg(long, default_value = "Demo App")]
    application: String,
    /// The application's key (generated if not given).
    #[arg(long)]
    user_key: Option<String>,
    /// The product's API backend (`http://127.0.0.1:8000`): where its gateways route it.
    #[arg(long)]
    api_backend: Option<String>,
    /// Also make sure of a console admin `admin` with this password (read from the file), and
    /// give the demo developer the same password for the developer portal.
    #[arg(long)]
    console_password_file: Option<std::path::PathBuf>,
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
        print!("{}", tollgate::store::counters::redis::RedisStore::script_source());
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
        Command::Seed {
            command: SeedCommand::Demo(args),
        } => {
            let limit = match args.limit.as_str() {
                "none" => Ok(None),
                l => tollgate::seed::parse_limit(l).map(Some),
            };
            let limit = match limit {
                Ok(limit) => limit,
                Err(e) => {
                    eprintln!("tollgate: --limit {e}");
                    return ExitCode::from(2);
                }
            };
            let DemoArgs {
                service,
                system_name,
                plan,
                org_name,
                username,
                email,
                application,
                user_key,
                api_backend,
                console_password_file,
                ..
            } = *args;
            let demo = tollgate::seed::Demo {
                service,
                system_name: Some(system_name),
                plan,
                publish: true,
                limit,
                org_name,
                username,
                email: Some(email),
                application,
                user_key,
                api_backend,
            };
            seed(&config, &demo, console_password_file.as_deref()).await
        }
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

/// Runs billing for a date, after copying what the counters hold into the usage tables: the
/// embedded store's counters as stored (every answered call is), or Redis'.
async fn billing_run(config: &Config, date: Option<chrono::NaiveDate>) -> Result<(), Box<dyn std::error::Error>> {
    let db = tollgate::startup::database(config).await?;
    let counters = tollgate::startup::counters(config, &db).await?;
    let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let gateways = tollgate::startup::gateways(config);
    let report = tollgate::store::billing::run::run(&db, Some(&counters), &gateways, date).await?;
    println!("{}", report.to_json());
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = tollgate::startup::database(config).await?;
    tracing::info!(schema_version = db.schema_version().await?, "migrations applied");
    Ok(())
}

async fn seed(
    config: &Config,
    demo: &tollgate::seed::Demo,
    console_password_file: Option<&std::path::Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = tollgate::startup::database(config).await?;
    tollgate::store::catalog::provider::ensure(&db).await?;
    let password = match console_password_file {
        Some(file) => Some(std::fs::read_to_string(file)?.trim().to_string()),
        None => None,
    };
    if let Some(password) = &password {
        tollgate::seed::console_admin(&db, "admin", password).await?;
    }
    let seeded = tollgate::seed::demo(&db, demo).await?;
    // The demo developer signs in to the portal with the same password.
    if let Some(password) = &password {
        tollgate::seed::portal_developer(&db, seeded.account_id, &demo.username, password).await?;
    }
    println!("{}", serde_json::to_string(&seeded)?);
    Ok(())
}
