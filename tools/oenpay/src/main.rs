//! `oenpay`: operate an oen-pay stack from the command line. See `oenpay --help`.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use oenpay::{new_idempotency_key, render, Answer, Api, CliError};
use serde_json::{json, Value};

/// Operate an oen-pay stack: look customers up, cancel or resume subscriptions, refund, charge a
/// saved card once, mint start links.
#[derive(Debug, Parser)]
#[command(name = "oenpay", version)]
struct Cli {
    /// The merchant API: the stack's `MerchantApiUrl` output (https; requests are signed with
    /// your AWS credentials), or the local dev stack (`http://127.0.0.1:8080`, unsigned). Or
    /// --stack instead.
    #[arg(long, env = "OENPAY_ENDPOINT", global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// The deployed CloudFormation stack (its name or id): its `MerchantApiUrl` output is the
    /// endpoint, read with DescribeStacks in the stack's region with your AWS credentials.
    /// AWS_ENDPOINT_URL_CLOUDFORMATION or AWS_ENDPOINT_URL, if set, is where CloudFormation is
    /// asked.
    #[arg(long, env = "OENPAY_STACK", global = true, value_name = "NAME")]
    stack: Option<String>,
    /// With --stack, the stack's region (else AWS_REGION, AWS_DEFAULT_REGION or your profile's
    /// region). With --endpoint, the API's region when the endpoint is a custom domain (else it
    /// is read from the endpoint's host name, or AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a signed start link for a customer to bind a card and subscribe to a plan.
    Link {
        #[arg(long)]
        customer: String,
        #[arg(long)]
        plan: String,
        /// How long the link stays usable, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// A customer's subscriptions, cards (last four digits) and recent periods.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// Show, cancel or resume a subscription.
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// Refund a paid period or one-off charge, whole or in part (Oen allows one refund per
    /// transaction).
    Refund {
        /// A period's order id (`oenpay customers show` lists them), or a one-off charge's id or
        /// order id (`C…`).
        order_id: String,
        /// NT$ to refund; the whole charge without it.
        #[arg(long)]
        amount: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Charge a customer's saved card once (an add-on, a late fee).
    Charge {
        #[arg(long)]
        customer: String,
        /// NT$, a whole number.
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        description: String,
        /// Your own reference for this charge (an invoice number).
        #[arg(long)]
        reference: Option<String>,
        /// Makes the charge safe to repeat: the same key never charges twice. Without it a
        /// key is made and printed; repeat the command with it after a lost answer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The daily reconciliation report of a Taipei day: Oen's transactions matched to ours.
    Reconcile {
        /// The Taipei day, yyyy-MM-dd.
        #[arg(long)]
        date: String,
    },
    /// What the next scheduled run would charge, retry, reconcile or end, shard by shard,
    /// without doing any of it.
    ChargeDue {
        /// Required: this command only looks (the scheduled charger does the charging).
        #[arg(long)]
        dry_run: bool,
    },
    /// Look at one-off charges.
    Charges {
        #[command(subcommand)]
        command: ChargesCommand,
    },
    /// The dead-letter queues: work the charger failed on five times (`charge`), and scheduled
    /// runs Scheduler could not deliver (`schedule`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// How many messages wait in each queue, and up to ten of them with what a redrive would
    /// do with each. Nothing is moved.
    List {
        #[arg(long, value_enum)]
        queue: Option<DlqQueue>,
        /// How many messages to show per queue (0 to 10).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=10))]
        limit: u8,
    },
    /// Send the messages' work back to the charge queue: a charge message as it was (the
    /// charger never charges a period twice), a missed scheduled run as its planning, a missed
    /// reconciliation as that day's reconciliation. Messages that are none of these are kept.
    Redrive {
        #[arg(long, value_enum)]
        queue: Option<DlqQueue>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DlqQueue {
    Charge,
    Schedule,
}

impl DlqQueue {
    fn name(self) -> &'static str {
        match self {
            DlqQueue::Charge => "charge",
            DlqQueue::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Subcommand)]
enum CustomersCommand {
    Show { customer: String },
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCommand {
    Show {
        id: String,
    },
    /// Cancel now (nothing is charged again) or at the end of the paid period.
    Cancel {
        id: String,
        #[arg(long, value_enum)]
        at: CancelAt,
    },
    /// Undo a cancel at period end, before the period ends.
    Resume {
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CancelAt {
    Now,
    PeriodEnd,
}

#[derive(Debug, Subcommand)]
enum ChargesCommand {
    Show { id: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oenpay: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("oenpay: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

const NO_ENDPOINT: &str = "no endpoint: pass --stack NAME (or set OENPAY_STACK) to use a \
     deployed stack's MerchantApiUrl output, or --endpoint URL (or set OENPAY_ENDPOINT) with \
     that URL, or http://127.0.0.1:8080 for the dev stack";

/// The command line, refused as a usage error when `--stack` and `--endpoint` both name the
/// API, on the command line or in the environment (an `OENPAY_ENDPOINT` left over from the dev
/// stack must not quietly win, or lose, against `--stack`).
fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `export OENPAY_STACK=` clears it.
    cli.endpoint = cli.endpoint.filter(|e| !e.trim().is_empty());
    cli.stack = cli.stack.filter(|s| !s.trim().is_empty());
    if cli.endpoint.is_some() && cli.stack.is_some() {
        let named = |id: &str, var: &str| match matches.value_source(id) {
            Some(ValueSource::EnvVariable) => format!("{var} (set in the environment)"),
            _ => format!("--{id}"),
        };
        Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                format!(
                    "{} and {} both name the merchant API: give only one",
                    named("stack", "OENPAY_STACK"),
                    named("endpoint", "OENPAY_ENDPOINT")
                ),
            )
            .exit();
    }
    cli
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let api = match (&cli.endpoint, &cli.stack) {
        (Some(endpoint), None) => Api::connect(endpoint, cli.region.clone()).await?,
        (None, Some(stack)) => {
            let found = oenpay::stack::find(stack, cli.region.clone()).await?;
            let origin = format!("stack {stack:?}'s {} output", oenpay::stack::OUTPUT);
            Api::connect_from(&origin, &found.endpoint, Some(found.region)).await?
        }
        (None, None) => return Err(CliError::Usage(NO_ENDPOINT.into())),
        (Some(_), Some(_)) => unreachable!("`parse` refuses --endpoint with --stack"),
    };
    if let Command::ChargeDue { dry_run } = cli.command {
        if !dry_run {
            return Err(CliError::Usage(
                "charge-due only looks: pass --dry-run (the scheduled charger does the charging)"
                    .into(),
            ));
        }
        let due = oenpay::due::all(&api, &mut oenpay::due::Progress::on_stderr()).await?;
        let out = if cli.json {
            format!(
                "{}\n",
                serde_json::to_string_pretty(&due.to_json()).unwrap_or_default()
            )
        } else {
            due.render()
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        return Ok(());
    }
    if let Command::Dlq { command } = &cli.command {
        let out = match *command {
            DlqCommand::List { queue, limit } => {
                let listed = oenpay::dlq::list(&api, queue.map(DlqQueue::name), limit).await?;
                if cli.json {
                    json_lines(&Value::Array(listed))
                } else {
                    oenpay::dlq::render_list(&listed)
                }
            }
            DlqCommand::Redrive { queue } => {
                let done = oenpay::dlq::redrive(&api, queue.map(DlqQueue::name)).await?;
                if cli.json {
                    json_lines(&Value::Array(done))
                } else {
                    oenpay::dlq::render_redrive(&done)
                }
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        return Ok(());
    }
    let (answer, human): (Answer, fn(&Value) -> String) = match cli.command {
        Command::Link {
            customer,
            plan,
            ttl,
            email,
            name,
        } => {
            let mut body = json!({"customer": customer, "plan": plan, "ttlSeconds": ttl});
            if let Some(email) = email {
                body["email"] = email.into();
            }
            if let Some(name) = name {
                body["name"] = name.into();
            }
            (
                api.send("POST", &["v1", "links"], Some(&body), &[]).await?,
                render::link,
            )
        }
        Command::Customers {
            command: CustomersCommand::Show { customer },
        } => (
            api.send("GET", &["v1", "customers", &customer], None, &[])
                .await?,
            render::customer,
        ),
        Command::Subscriptions { command } => match command {
            SubscriptionsCommand::Show { id } => (
                api.send("GET", &["v1", "subscriptions", &id], None, &[])
                    .await?,
                render::subscription,
            ),
            SubscriptionsCommand::Cancel { id, at } => {
                let at = match at {
                    CancelAt::Now => "now",
                    CancelAt::PeriodEnd => "period_end",
                };
                (
                    api.send(
                        "POST",
                        &["v1", "subscriptions", &id, "cancel"],
                        Some(&json!({ "at": at })),
                        &[],
                    )
                    .await?,
                    render::subscription,
                )
            }
            SubscriptionsCommand::Resume { id } => (
                api.send("POST", &["v1", "subscriptions", &id, "resume"], None, &[])
                    .await?,
                render::subscription,
            ),
        },
        Command::Refund {
            order_id,
            amount,
            reason,
        } => {
            let mut body = json!({});
            if let Some(amount) = amount {
                body["amount"] = amount.into();
            }
            if let Some(reason) = reason {
                body["reason"] = reason.into();
            }
            let collection = if is_one_off(&order_id) {
                "charges"
            } else {
                "periods"
            };
            (
                api.send(
                    "POST",
                    &["v1", collection, &order_id, "refund"],
                    Some(&body),
                    &[],
                )
                .await?,
                render::refund,
            )
        }
        Command::Charge {
            customer,
            amount,
            description,
            reference,
            idempotency_key,
        } => {
            let key = match idempotency_key {
                Some(key) => key,
                None => {
                    let key = new_idempotency_key();
                    eprintln!(
                        "oenpay: Idempotency-Key {key}: after a lost answer, repeat this \
                         command with --idempotency-key {key}; it never charges twice"
                    );
                    key
                }
            };
            let mut body =
                json!({"customer": customer, "amount": amount, "description": description});
            if let Some(reference) = reference {
                body["reference"] = reference.into();
            }
            (
                api.send(
                    "POST",
                    &["v1", "charges"],
                    Some(&body),
                    &[("idempotency-key", &key)],
                )
                .await?,
                render::charge,
            )
        }
        Command::Reconcile { date } => (
            api.send("GET", &["v1", "reconciliation", &date], None, &[])
                .await?,
            render::reconciliation,
        ),
        Command::ChargeDue { .. } | Command::Dlq { .. } => unreachable!("answered above"),
        Command::Charges {
            command: ChargesCommand::Show { id },
        } => (
            api.send("GET", &["v1", "charges", &id], None, &[]).await?,
            render::charge,
        ),
    };
    let out = if cli.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&answer.body).unwrap_or_default()
        )
    } else {
        human(&answer.body)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

fn json_lines(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Whether `id` names a one-off charge (its id, 20 letters and digits, or its order id `C` and
/// the id) rather than a period (`{subscription id}P{period:06}`, 23 characters): the lengths
/// tell them apart. Anything else goes to the periods' route, which says what it expects.
fn is_one_off(id: &str) -> bool {
    let plain = id.bytes().all(|b| b.is_ascii_alphanumeric());
    plain && (id.len() == 20 || (id.len() == 21 && id.starts_with('C')))
}

#[cfg(test)]
mod tests {
    use super::is_one_off;

    #[test]
    fn a_refund_goes_to_a_charge_only_for_a_charges_id_or_order_id() {
        assert!(is_one_off("AbCdEfGhIjKlMnOpQrSt"));
        assert!(is_one_off("CAbCdEfGhIjKlMnOpQrSt"));
        // A period of a subscription whose id begins with C.
        assert!(!is_one_off("CbCdEfGhIjKlMnOpP000001"));
        assert!(!is_one_off("AbCdEfGhIjKlMnOpP000001"));
        assert!(!is_one_off("nope"));
    }
}
