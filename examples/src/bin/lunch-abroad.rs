//! `lunch-abroad`: price payments made in foreign currencies in GBP, by joining the stream of
//! payments with the table of exchange rates (a stream–table left join, both topics keyed and
//! so co-partitioned by currency). Its topics are `rates`, `payments` and `priced-payments`,
//! after `--topic-prefix`.
//!
//! `--rates FILE` holds `TS_MS,CURRENCY,RATE_TO_GBP` lines and `--payments FILE` holds
//! `TS_MS,PAYMENT_ID,CURRENCY,AMOUNT` lines (AMOUNT in integer minor units). Both are loaded
//! into their topics (each in timestamp order) before processing starts. For each payment it
//! prints `PAYMENT_ID,CURRENCY,AMOUNT,RATE,AMOUNT_GBP`, where RATE is the latest rate of the
//! currency with a timestamp before the payment's and AMOUNT_GBP is `round(AMOUNT × RATE)`;
//! with no such rate, RATE and AMOUNT_GBP are empty.
//!
//! "Before" is strict: a task processes its buffered records smallest timestamp first, and on
//! a tie the topic whose name sorts first (`payments` before `rates`), so a rate stamped with
//! the payment's own millisecond is not yet in the table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use streams_core::{JsonSerde, StringSerde};
use streams_dsl::prelude::*;
use streams_examples::{expect_fields, field, input, load, read_csv, CommonArgs};

/// Join payments with exchange rates and print each payment's amount in GBP.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// File of `TS_MS,CURRENCY,RATE_TO_GBP` lines.
    #[arg(long, value_name = "FILE", required_unless_present = "describe")]
    rates: Option<PathBuf>,
    /// File of `TS_MS,PAYMENT_ID,CURRENCY,AMOUNT` lines (AMOUNT in minor units).
    #[arg(long, value_name = "FILE", required_unless_present = "describe")]
    payments: Option<PathBuf>,
    /// Partitions of both topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[command(flatten)]
    common: CommonArgs,
}

const APP: &str = "lunch-abroad";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    id: String,
    amount: i64,
}

/// The example's topics, after `--topic-prefix`.
struct Topics {
    rates: String,
    payments: String,
    priced: String,
}

fn topology(topics: &Topics) -> streams_core::Result<streams_core::Topology> {
    let builder = StreamsBuilder::new();
    let rates = builder.table::<String, String>(
        topics.rates.as_str(),
        Consumed::with(StringSerde, StringSerde),
        Materialized::named("rates-by-currency"),
    );
    builder
        .stream::<String, Payment>(
            topics.payments.as_str(),
            Consumed::with(StringSerde, JsonSerde::new()),
        )
        .left_join(&rates, |payment: &Payment, rate: Option<&String>| {
            // Rates were checked to parse when they were loaded.
            let priced = rate.and_then(|r| r.parse::<f64>().ok().map(|x| (r, x)));
            match priced {
                Some((text, r)) => format!(
                    "{},{},{text},{}",
                    payment.id,
                    payment.amount,
                    (payment.amount as f64 * r).round() as i64
                ),
                None => format!("{},{},,", payment.id, payment.amount),
            }
        })
        .to(
            topics.priced.as_str(),
            Produced::with(StringSerde, StringSerde),
        );
    builder.build()
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let topics = Topics {
        rates: args.common.topic("rates"),
        payments: args.common.topic("payments"),
        priced: args.common.topic("priced-payments"),
    };
    let topology = topology(&topics)?;
    if args.common.print_description(&topology) {
        return Ok(());
    }
    let run = args.common.batch_run(APP, &topology)?;
    run.create_input_topic(&topics.rates, args.partitions)?;
    run.create_input_topic(&topics.payments, args.partitions)?;

    let mut rates = Vec::new();
    read_csv(
        input(args.rates.as_deref())?,
        "rates",
        |f| {
            expect_fields(f, 3, "TS_MS,CURRENCY,RATE_TO_GBP")?;
            let ts: i64 = field(f, 0, "TS_MS")?;
            let rate: f64 = field(f, 2, "RATE_TO_GBP")?;
            if !rate.is_finite() || rate < 0.0 || f[1].is_empty() {
                return Err(format!("rate `{}` of `{}` is not valid", f[2], f[1]));
            }
            Ok((f[1].to_string(), f[2].as_bytes().to_vec(), ts))
        },
        |r| rates.push(r),
    )?;
    let mut payments = Vec::new();
    read_csv(
        input(args.payments.as_deref())?,
        "payments",
        |f| {
            expect_fields(f, 4, "TS_MS,PAYMENT_ID,CURRENCY,AMOUNT")?;
            let ts: i64 = field(f, 0, "TS_MS")?;
            let amount: i64 = field(f, 3, "AMOUNT")?;
            if f[1].is_empty() || f[2].is_empty() {
                return Err("empty payment id or currency".into());
            }
            let payment = Payment {
                id: f[1].to_string(),
                amount,
            };
            let value = serde_json::to_vec(&payment).map_err(|e| e.to_string())?;
            Ok((f[2].to_string(), value, ts))
        },
        |p| payments.push(p),
    )?;
    // In timestamp order (stable): "the latest rate before the payment" is by time.
    rates.sort_by_key(|r| r.2);
    payments.sort_by_key(|p| p.2);
    load(&*run.log, &topics.rates, args.partitions, rates)?;
    load(&*run.log, &topics.payments, args.partitions, payments)?;

    let streams = streams_examples::start(topology, run.config.clone(), run.log.clone())?;
    streams.wait_until_caught_up(Duration::from_secs(3600))?;
    streams.close()?;

    let lines = streams_examples::read_values(&*run.log, &topics.priced)?;
    // `ID,AMOUNT,RATE,GBP` → `ID,CURRENCY,AMOUNT,RATE,GBP`.
    streams_examples::print_lines(lines.iter().map(|(currency, line)| {
        let (id, rest) = line.split_once(',').unwrap_or((line, ""));
        format!("{id},{currency},{rest}")
    }))?;
    Ok(())
}

fn main() -> ExitCode {
    streams_examples::main("lunch-abroad", run)
}
