//! `stemma audit …`: the auditor's commands. Read-only: they never take the writer lock,
//! so they run on a data directory while `stemma serve` writes to it.
//!
//! Exit codes: 0 clean, 1 findings, 2 the audit could not run (unreadable directory, bad
//! arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::audit::{self, Checkpoint, VerifyOptions};
use ledger::store::Hash32;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole history: framing, positions, stream versions, every hash link,
    /// decoding, and (unless --chain-only) every pool, amount and payout by the rules.
    Verify(VerifyArgs),
    /// Print the head position and hash: the checkpoint an auditor writes down.
    Head {
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Why a payout exists and why it is this amount: the distribution, its pool and the
    /// money behind it, the line and its rounding, amendments, comments, credited ancestors.
    Explain {
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        /// The payout id (`po-…`).
        #[arg(long)]
        payout: String,
        #[arg(long)]
        json: bool,
    },
    /// Every payout issued to a member, with its state, and totals per currency.
    Statement {
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        #[arg(long)]
        member: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[arg(long, default_value = "./stemma-data")]
    pub data: PathBuf,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Check the chain only, without the semantic replay.
    #[arg(long)]
    pub chain_only: bool,
    /// Verify up to this position only (a checkpoint written down earlier).
    #[arg(long, requires = "expect_head")]
    pub until: Option<u64>,
    /// The hash recorded for `--until`.
    #[arg(long, requires = "until")]
    pub expect_head: Option<String>,
    /// Threads that decode and hash (0, the default: one per core). Since the checks in
    /// log order take chunks themselves when the workers lag, more threads no longer cost
    /// more than they save: ~1.5x the single-thread rate on 2 cores (benches/benches/audit.rs).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

const EXIT_FINDINGS: u8 = 1;
const EXIT_CANNOT_RUN: u8 = 2;

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Head { data, json } => head(data, json),
        AuditCommand::Explain { data, payout, json } => explain(data, &payout, json),
        AuditCommand::Statement { data, member, json } => statement(data, &member, json),
    }
}

fn cannot_run(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CANNOT_RUN)
}

fn verify(args: VerifyArgs) -> ExitCode {
    let checkpoint = match (args.until, &args.expect_head) {
        (Some(position), Some(hash)) => match Hash32::from_hex(hash) {
            Ok(hash) => Some(Checkpoint { position, hash }),
            Err(error) => return cannot_run(format!("--expect-head: {error}")),
        },
        _ => None,
    };
    let options = VerifyOptions {
        semantic: !args.chain_only,
        checkpoint,
        workers: args.workers,
    };
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} {msg} ({eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let report = audit::verify(&args.data, options, &mut |progress| {
        bar.set_length(progress.bytes_total);
        bar.set_position(progress.bytes_read);
        bar.set_message(format!(
            "{} events, {} findings",
            progress.events, progress.findings
        ));
    });
    bar.finish_and_clear();
    let report = match report {
        Ok(report) => report,
        Err(error) => return cannot_run(error),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        for finding in &report.findings {
            println!("{finding}");
        }
        if report.findings_dropped > 0 {
            println!("… and {} more findings", report.findings_dropped);
        }
        let kind = if report.semantic {
            "chain and rules"
        } else {
            "chain"
        };
        println!(
            "{}: {} events checked ({kind}), head {} {}",
            if report.is_clean() {
                "clean"
            } else {
                "FINDINGS"
            },
            report.events,
            report.head_position,
            report.head_hash
        );
        if let Some(verified) = report.checkpoint_verified {
            println!(
                "checkpoint {}: {}",
                args.until.unwrap_or(0),
                if verified {
                    "history unchanged"
                } else {
                    "NOT verified"
                }
            );
        }
        if let Some(tail) = &report.tail_ignored {
            println!(
                "left out: {} bytes of an incomplete commit at {} offset {} (a torn tail or a commit in progress)",
                tail.bytes, tail.segment, tail.offset
            );
        }
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    }
}

fn head(data: PathBuf, json: bool) -> ExitCode {
    match audit::verify::head(&data) {
        Ok(head) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"position": head.position, "hash": head.hash.to_hex()})
                );
            } else {
                println!("{} {}", head.position, head.hash);
            }
            ExitCode::SUCCESS
        }
        Err(error) => cannot_run(error),
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The data directory (read-only; works while `stemma serve` runs on it).
    #[arg(long, default_value = "./stemma-data")]
    pub data: PathBuf,
    /// The output format; JSON lines, the schema in `ledger::audit::export`.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A new data directory (refused if it already holds a log).
    #[arg(long)]
    pub data: PathBuf,
    /// The export to read; `-` for standard input.
    pub file: PathBuf,
    /// Size of each segment file written.
    #[arg(long, default_value_t = ledger::store::EmbeddedOptions::default().segment_size_bytes)]
    pub segment_size_bytes: u64,
}

pub fn export(args: ExportArgs) -> ExitCode {
    let ExportFormat::Jsonl = args.format;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match audit::export::export_jsonl(&args.data, &mut out) {
        Ok(summary) => {
            eprintln!(
                "exported {} events, head {} {}",
                summary.events, summary.head_position, summary.head_hash
            );
            ExitCode::SUCCESS
        }
        Err(error) => cannot_run(error),
    }
}

pub fn import(args: ImportArgs) -> ExitCode {
    let result = if args.file.as_os_str() == "-" {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        audit::export::import_jsonl(&mut input, &args.data, args.segment_size_bytes)
    } else {
        match std::fs::File::open(&args.file) {
            Ok(file) => {
                let mut input = std::io::BufReader::new(file);
                audit::export::import_jsonl(&mut input, &args.data, args.segment_size_bytes)
            }
            Err(error) => return cannot_run(format!("{}: {error}", args.file.display())),
        }
    };
    match result {
        Ok(summary) => {
            eprintln!(
                "imported {} events into {}, head {} {}",
                summary.events,
                args.data.display(),
                summary.head_position,
                summary.head_hash
            );
            ExitCode::SUCCESS
        }
        Err(error) => cannot_run(error),
    }
}

fn explain(data: PathBuf, payout: &str, json: bool) -> ExitCode {
    let payout_id = match ledger::domain::ids::PayoutId::new(payout) {
        Ok(id) => id,
        Err(error) => return cannot_run(format!("--payout: {error}")),
    };
    let explanation = match audit::explain::explain_payout(&data, &payout_id) {
        Ok(Some(explanation)) => explanation,
        Ok(None) => return cannot_run(format!("no payout {payout_id} in the log")),
        Err(error) => return cannot_run(error),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).expect("an explanation serializes")
        );
        return ExitCode::SUCCESS;
    }
    let e = &explanation;
    let at = |event: &audit::explain::EventRef| {
        format!(
            "position {} ({}, hash {})",
            event.position, event.recorded_at, event.hash
        )
    };
    println!("payout      {}", e.payout_id);
    println!("member      {}", e.member);
    println!("amount      {}", e.amount);
    println!("state       {}", e.state);
    println!("issued      {}", at(&e.issued));
    for attempt in &e.attempts {
        println!(
            "attempt {}   {} {} at {}",
            attempt.attempt,
            attempt.outcome,
            attempt.detail,
            at(&attempt.event)
        );
    }
    if let Some(fee) = &e.lead_fee {
        println!(
            "pays        the lead fee {} on project {}",
            fee.fee, fee.project_id
        );
        if let Some(agreed) = &fee.agreed {
            println!("agreed      {}", at(agreed));
        }
    }
    if let Some(d) = &e.distribution {
        println!(
            "pays        a line of distribution {} of production {}",
            d.distribution_id, d.production_id
        );
        println!("proposed    {}", at(&d.proposed));
        if let Some(finalized) = &d.finalized {
            println!("finalized   {}", at(finalized));
        }
        println!("money before the cut-off:");
        for fact in &d.money {
            println!(
                "  {:<8} {:>16}  {}  {}",
                fact.kind,
                fact.amount,
                fact.description,
                at(&fact.event)
            );
        }
        println!(
            "pool        {} = {} x max({} - {}, 0) - earlier pools {} (entitlement {})",
            d.pool,
            d.artist_share,
            d.revenue_total,
            d.expense_total,
            d.earlier_pools,
            d.entitlement
        );
        if let Some(line) = &d.line {
            println!(
                "line        {} of {}: weight {} of {}, records {}",
                line.line_number,
                line.line_count,
                line.weight,
                line.weight_total,
                line.records.join(", ")
            );
            println!("rationale   {}", line.rationale);
            println!(
                "amount      pool x {} / {} = {} -> rounded down {}{} = {}",
                line.weight,
                line.weight_total,
                line.exact_amount,
                line.rounded_down,
                if line.leftover_unit {
                    " + 1 leftover minor unit (largest remainders)"
                } else {
                    ""
                },
                line.amount
            );
        }
        for amendment in &d.amendments {
            println!(
                "amended     {} (weight {}) because {:?}, answering {} at {}",
                amendment.change,
                amendment.weight.as_deref().unwrap_or("-"),
                amendment.reason,
                amendment.answers.join(", "),
                at(&amendment.event)
            );
        }
        for comment in &d.comments {
            println!(
                "comment     {} by {}{}{}: {:?} at {}",
                comment.comment_id,
                comment.author,
                if comment.staff { " (staff)" } else { "" },
                comment
                    .reply_to
                    .as_ref()
                    .map(|parent| format!(" replying to {parent}"))
                    .unwrap_or_default(),
                comment.body,
                at(&comment.event)
            );
        }
        for ancestor in &d.credited_ancestors {
            println!(
                "credited    {} by {} (depth {})",
                ancestor.record_id, ancestor.contributor, ancestor.depth
            );
        }
    }
    ExitCode::SUCCESS
}

fn statement(data: PathBuf, member: &str, json: bool) -> ExitCode {
    let member = match ledger::domain::ids::MemberId::new(member) {
        Ok(member) => member,
        Err(error) => return cannot_run(format!("--member: {error}")),
    };
    let statement = match audit::explain::statement(&data, &member) {
        Ok(statement) => statement,
        Err(error) => return cannot_run(error),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&statement).expect("a statement serializes")
        );
        return ExitCode::SUCCESS;
    }
    println!("member {}", statement.member);
    for payout in &statement.payouts {
        println!(
            "{}  {:>16}  {:<8}  {}  issued at position {}",
            payout.payout_id, payout.amount, payout.state, payout.paying, payout.issued.position
        );
    }
    for total in &statement.totals {
        println!(
            "total {}: issued {}, settled {}",
            total.currency, total.issued, total.settled
        );
    }
    ExitCode::SUCCESS
}
