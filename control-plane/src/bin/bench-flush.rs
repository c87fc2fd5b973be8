//! `bench-flush DATABASE_URL [--start UNIX]`: the database side of the usage flush at scale,
//! for `scripts/bench-billing.sh`. Every application in the database made calls in one
//! quarter hour: its hits, its `200` and its `2xx` series moved. They are written as the flush
//! writes them ([`usage::write`]: the rows and their applications' daily roll-ups,
//! [`usage::CHUNK`] values a transaction, then the service roll-ups they fall in), then
//! written again with higher values, as the next flush of that quarter does. Prints
//! `values first_seconds again_seconds`; `RUST_LOG=sqlx=debug` shows every statement's time.

use clap::Parser;
use std::time::Instant;
use tollgate_domain::counters::{Counter, SeriesKey, SeriesValue};
use tollgate_domain::ids::MetricId;
use tollgate_store::db::Db;
use tollgate_store::usage;

#[derive(Parser)]
#[command(about = "Times the usage flush's writes for every application in a database")]
struct Args {
    /// The database, migrated, with its applications (TOLLGATE_DATABASE_URL's form).
    database_url: String,
    /// The quarter's start (unix seconds; default 2026-10-20T10:00:00Z).
    #[arg(long, default_value_t = 1_792_490_400)]
    start: i64,
}

type Failure = Box<dyn std::error::Error>;

async fn flush(db: &Db, values: &[SeriesValue]) -> Result<f64, Failure> {
    let clock = Instant::now();
    usage::write(db, values).await?;
    Ok(clock.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let db = Db::connect(&args.database_url).await?;
    let apps: Vec<i64> = sqlx::query_scalar("SELECT id FROM applications ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    let hits: i64 = sqlx::query_scalar("SELECT MIN(id) FROM metrics")
        .fetch_one(&db.pool)
        .await?;
    let counters = [
        Counter::Metric(MetricId::new(hits)),
        Counter::ResponseCode(200),
        Counter::ResponseClass(2),
    ];
    let reading = |app: i64, counter: Counter, value: i64, observed_us: i64| SeriesValue {
        key: SeriesKey {
            app,
            counter: counter.raw(),
            start: args.start,
        },
        value,
        observed_us,
    };
    let values = |round: i64| -> Vec<SeriesValue> {
        apps.iter()
            .flat_map(|&app| counters.map(|c| reading(app, c, round * (1 + app % 50), round)))
            .collect()
    };
    let first = values(1);
    let first_s = flush(&db, &first).await?;
    let again_s = flush(&db, &values(2)).await?;
    println!("{} {first_s:.2} {again_s:.2}", first.len());
    Ok(())
}
