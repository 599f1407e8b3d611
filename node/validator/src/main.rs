//! `bastion`: the validator binary and its operator commands.

mod keys;
mod risk;
mod sig;
mod storage;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "bastion", version, about = "Bastion validator and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local development network.
    Devnet,
    /// Create a validator keys file (ed25519 identity, BLS consensus key), mode 0600.
    Keygen(keys::KeygenArgs),
    /// Create a local network: a genesis file and, per validator, a keys file and node config.
    Init(keys::InitArgs),
    /// Risk arithmetic of the exchange, as consensus computes it.
    #[command(subcommand)]
    Risk(risk::RiskCommand),
    /// Ed25519 signature checks with the validator's verification backends.
    #[command(subcommand)]
    Sig(sig::SigCommand),
    /// Inspect and check a node's data dir (block log, snapshots, recovery).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Devnet => {
            println!("devnet arrives with the validator pipeline");
            ExitCode::SUCCESS
        }
        Command::Keygen(args) => report(keys::keygen(&args)),
        Command::Init(args) => report(keys::init(&args)),
        Command::Storage(cmd) => report(storage::run(&cmd)),
        Command::Risk(cmd) => report(risk::run(&cmd)),
        Command::Sig(cmd) => {
            let out = sig::run(&cmd);
            print!("{}", out.stdout);
            match out.error {
                None => ExitCode::SUCCESS,
                Some((code, msg)) => {
                    eprintln!("error: {msg}");
                    ExitCode::from(code)
                }
            }
        }
    }
}

/// Prints a command's report, or its error with a failing exit status.
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
