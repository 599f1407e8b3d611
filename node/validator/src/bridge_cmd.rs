//! `bastion bridge`: the simulated source chain from the outside, as a user of the bridge sees
//! it: its state, a deposit to the bridge, and presenting a signed withdrawal voucher (fetched
//! from any node's API) for payment. Everything goes through the chain's files (`bridge.json`,
//! `ledger.jsonl`, the inbox), so it works while the devnet runs the chain.

use bastion_bridge::{Submission, load_config, read_ledger, submit_to_inbox, verify_approvals};
use bastion_types::{AccountId, Approval, AssetId, INSURANCE_FUND_ACCOUNT, ValidatorIndex, Voucher};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

/// `bastion bridge ...`.
#[derive(Subcommand, Debug)]
pub enum BridgeCommand {
    /// The source chain: height, deposits, payouts, the bridge's balance, waiting submissions.
    Status(SourceArgs),
    /// Deposit to the bridge on the source chain (credited on Bastion once 2/3 of stake attest it).
    Deposit(DepositArgs),
    /// Fetch a voucher with its validators' signatures from a node's API and present it to the
    /// source chain for payment.
    Redeem(RedeemArgs),
}

/// Where the simulated source chain lives.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The source chain's directory (`<devnet data dir>/source`).
    #[arg(long)]
    pub source: PathBuf,
}

/// `bastion bridge deposit`.
#[derive(Args, Debug)]
pub struct DepositArgs {
    /// The source chain's directory.
    #[arg(long)]
    pub source: PathBuf,
    /// The Bastion account to credit (decimal id), or `insurance` for the insurance fund.
    #[arg(long)]
    pub to: String,
    /// Amount in whole units of the asset (e.g. 1000 USDC).
    #[arg(long)]
    pub amount: f64,
    /// Collateral asset id (0: the quote asset).
    #[arg(long, default_value_t = 0)]
    pub asset: u16,
}

/// `bastion bridge redeem`.
#[derive(Args, Debug)]
pub struct RedeemArgs {
    /// The source chain's directory.
    #[arg(long)]
    pub source: PathBuf,
    /// A node's API (e.g. `http://127.0.0.1:8080`).
    #[arg(long)]
    pub api: String,
    /// The voucher id (`Withdrew` event, or `GET /v1/accounts/{id}/vouchers`).
    #[arg(long)]
    pub voucher: u64,
}

/// Runs the command; the text to print.
pub fn run(cmd: &BridgeCommand) -> Result<String, String> {
    match cmd {
        BridgeCommand::Status(a) => status(&a.source),
        BridgeCommand::Deposit(a) => deposit(a),
        BridgeCommand::Redeem(a) => redeem(a),
    }
}

fn status(dir: &std::path::Path) -> Result<String, String> {
    let cfg = load_config(dir).map_err(|e| e.to_string())?;
    let ledger = read_ledger(&dir.join("ledger.jsonl")).map_err(|e| e.to_string())?;
    let state = bastion_bridge::LedgerState::replay(&ledger).map_err(|e| e.to_string())?;
    let t = state.totals();
    let waiting = std::fs::read_dir(dir.join("inbox"))
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()
        })
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "source chain {}  height {}  block every {} ms  deposits attested after {} confirmations",
        dir.display(),
        state.height(),
        cfg.block_ms,
        cfg.confirmations
    );
    let _ = writeln!(
        out,
        "bridge of chain {:?}: trusts {} validators, total stake {} (a voucher pays with signatures of 2/3 of it)",
        cfg.chain_id,
        cfg.validators.len(),
        cfg.total_stake()
    );
    let _ = writeln!(
        out,
        "deposits {} ({:.6} units)  payouts {} ({:.6} units)  waiting in the inbox {waiting}",
        t.deposits,
        t.deposited as f64 / 1e6,
        t.payouts,
        t.paid as f64 / 1e6
    );
    for (asset, balance) in state.bridge_balances() {
        let _ = writeln!(out, "bridge balance of asset {}: {:.6}", asset.0, balance as f64 / 1e6);
    }
    Ok(out.trim_end().to_string())
}

fn deposit(a: &DepositArgs) -> Result<String, String> {
    let to = if a.to == "insurance" {
        INSURANCE_FUND_ACCOUNT
    } else {
        AccountId(a.to.parse().map_err(|_| format!("--to {:?}: a decimal account id or `insurance`", a.to))?)
    };
    if !(a.amount.is_finite() && a.amount > 0.0) {
        return Err(format!("--amount {}: must be a positive number of units", a.amount));
    }
    let amount = (a.amount * 1e6).round() as i128;
    load_config(&a.source).map_err(|e| e.to_string())?;
    let file = submit_to_inbox(&a.source, &Submission::Deposit { to, asset: AssetId(a.asset), amount })
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "deposit of {:.6} units of asset {} to {} submitted ({}); the source chain includes it in its next block \
         (ledger.jsonl names its source id) and Bastion credits it once 2/3 of stake attested it",
        amount as f64 / 1e6,
        a.asset,
        if to == INSURANCE_FUND_ACCOUNT { "the insurance fund".to_string() } else { to.0.to_string() },
        file.display()
    ))
}

fn redeem(a: &RedeemArgs) -> Result<String, String> {
    let cfg = load_config(&a.source).map_err(|e| e.to_string())?;
    let url = format!("{}/v1/vouchers/{}", a.api.trim_end_matches('/'), a.voucher);
    let body = ureq::get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let (voucher, approvals) = voucher_from_api(&v)?;
    if approvals.is_empty() {
        return Err(format!(
            "voucher {} is not signed by 2/3 of stake yet (no signatures on chain); try again after a few blocks",
            voucher.id
        ));
    }
    // The source chain checks again; checking here tells the user now.
    let signed = quorum(&cfg, &voucher, &approvals)?;
    let file = submit_to_inbox(&a.source, &Submission::Voucher { voucher: voucher.clone(), approvals })
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "voucher {} ({:.6} units of asset {} to account {}) with signatures of stake {signed} of {} submitted ({}); \
         the source chain pays it in its next block, once",
        voucher.id,
        voucher.amount as f64 / 1e6,
        voucher.asset.0,
        voucher.account.0,
        cfg.total_stake(),
        file.display()
    ))
}

/// The stake of `approvals` if they are valid and weigh 2/3 of the bridge's stake; otherwise
/// what is wrong.
fn quorum(
    cfg: &bastion_bridge::BridgeConfig,
    voucher: &Voucher,
    approvals: &[Approval],
) -> Result<u128, String> {
    let signed =
        verify_approvals(cfg, voucher, approvals).map_err(|e| format!("voucher {}: {e}", voucher.id))?;
    if !cfg.is_quorum(signed) {
        return Err(format!(
            "voucher {}: signatures of stake {signed} of {}; the source chain pays only with 2/3",
            voucher.id,
            cfg.total_stake()
        ));
    }
    Ok(signed)
}

/// The voucher and its signatures from `GET /v1/vouchers/{id}`'s JSON.
fn voucher_from_api(v: &serde_json::Value) -> Result<(Voucher, Vec<Approval>), String> {
    let field = |k: &str| v.get(k).ok_or_else(|| format!("the API's voucher has no {k:?}: {v}"));
    let int = |k: &str| -> Result<i128, String> {
        let f = field(k)?;
        f.as_i64()
            .map(i128::from)
            .or_else(|| f.as_u64().map(i128::from))
            .or_else(|| f.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("the API's voucher {k:?} is not an integer: {f}"))
    };
    let u = |k: &str| int(k).and_then(|x| u64::try_from(x).map_err(|_| format!("{k:?} out of range")));
    let voucher = Voucher {
        id: u("id")?,
        account: AccountId(u("account")?),
        asset: AssetId(u16::try_from(u("asset")?).map_err(|_| "asset out of range")?),
        amount: int("amount")?,
        height: u("height")?,
    };
    let sigs = field("signatures")?.as_array().ok_or("the API's signatures are not a list")?;
    let approvals = sigs
        .iter()
        .map(|s| {
            let validator =
                s["validator"].as_u64().and_then(|x| u16::try_from(x).ok()).ok_or("bad validator index")?;
            let hex = s["signature"].as_str().ok_or("a signature is not a string")?;
            let bytes = bastion_consensus::spec::from_hex(hex).ok_or("a signature is not hex")?;
            let signature: [u8; 64] = bytes.try_into().map_err(|_| "a signature is not 64 bytes")?;
            Ok(Approval { validator: ValidatorIndex(validator), signature })
        })
        .collect::<Result<Vec<_>, &str>>()
        .map_err(|e| format!("the API's voucher: {e}"))?;
    Ok((voucher, approvals))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_bridge::{BridgeConfig, BridgeValidator, SimChain};
    use bastion_exchange::{DEVNET_VALIDATOR_SEEDS, sign_voucher};

    fn chain(dir: &std::path::Path) -> SimChain {
        let cfg = BridgeConfig {
            chain_id: "bastion-devnet".into(),
            validators: DEVNET_VALIDATOR_SEEDS.iter().map(|s| BridgeValidator::from_seed(*s, 1)).collect(),
            block_ms: 100,
            confirmations: 2,
        };
        SimChain::create(dir, cfg).unwrap()
    }

    #[test]
    fn a_deposit_by_file_and_a_voucher_from_the_api_json_are_paid_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = chain(dir.path());
        let msg =
            deposit(&DepositArgs { source: dir.path().into(), to: "7".into(), amount: 100.0, asset: 0 })
                .unwrap();
        assert!(msg.contains("100.000000 units"), "{msg}");
        let b = c.produce_block(1).unwrap();
        assert_eq!(b.deposits.len(), 1);
        assert_eq!((b.deposits[0].to, b.deposits[0].amount), (AccountId(7), 100_000_000));
        // What `GET /v1/vouchers/1` returns (node/api), signed by three of four.
        let voucher =
            Voucher { id: 1, account: AccountId(7), asset: AssetId(0), amount: 40_000_000, height: 9 };
        let sigs: Vec<serde_json::Value> = (0..3u16)
            .map(|i| {
                let a = sign_voucher(DEVNET_VALIDATOR_SEEDS[usize::from(i)], i, "bastion-devnet", &voucher);
                serde_json::json!({"validator": i, "signature": a.signature.iter().map(|b| format!("{b:02x}")).collect::<String>()})
            })
            .collect();
        let json = serde_json::json!({"id": 1, "account": 7, "asset": 0, "amount": 40_000_000, "height": 9,
            "signed": true, "signatures": sigs});
        let (v, approvals) = voucher_from_api(&json).unwrap();
        assert_eq!(v, voucher);
        quorum(c.config(), &v, &approvals).unwrap();
        c.submit_voucher(&v, &approvals).unwrap();
        c.produce_block(2).unwrap();
        assert_eq!(c.payee_balance(AccountId(7), AssetId(0)), 40_000_000);
        assert!(c.submit_voucher(&v, &approvals).is_err(), "paid once");
        // Two signatures are not 2/3 of stake: the user is told before anything is submitted.
        let e = quorum(c.config(), &v, &approvals[..2]).unwrap_err();
        assert!(e.contains("only with 2/3"), "{e}");
        let text = status(dir.path()).unwrap();
        assert!(text.contains("deposits 1") && text.contains("payouts 1"), "{text}");
        assert!(text.contains("bridge balance of asset 0: 60.000000"), "{text}");
    }

    #[test]
    fn bad_arguments_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        chain(dir.path());
        let e = deposit(&DepositArgs { source: dir.path().into(), to: "bob".into(), amount: 1.0, asset: 0 })
            .unwrap_err();
        assert!(e.contains("--to"), "{e}");
        let e = deposit(&DepositArgs { source: dir.path().into(), to: "1".into(), amount: -1.0, asset: 0 })
            .unwrap_err();
        assert!(e.contains("--amount"), "{e}");
        assert!(voucher_from_api(&serde_json::json!({"id": 1})).unwrap_err().contains("account"));
    }
}
