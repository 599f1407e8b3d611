//! `bastion risk ...`: operator commands that run the exchange's risk arithmetic on the command
//! line, printing exactly what the consensus code computes.

use bastion_math::{Fx, OptionGreeks, OptionInputs, PricingError, black_scholes_merton};
use clap::{Args, Subcommand};

/// Risk subcommands.
#[derive(Subcommand, Debug)]
pub enum RiskCommand {
    /// Black-Scholes-Merton prices and greeks of a European call and put, in the validator's
    /// Q64.64 fixed point (values printed as exact decimals).
    Option(OptionArgs),
}

/// Inputs of `bastion risk option`, parsed exactly from decimal strings.
#[derive(Args, Debug)]
pub struct OptionArgs {
    /// Spot price of the underlying (> 0).
    #[arg(long)]
    spot: String,
    /// Strike price (> 0).
    #[arg(long)]
    strike: String,
    /// Continuously compounded annual rate, as a decimal (0.05 for 5%).
    #[arg(long, allow_hyphen_values = true)]
    rate: String,
    /// Continuous annual dividend yield, as a decimal.
    #[arg(long, allow_hyphen_values = true, default_value = "0")]
    dividend_yield: String,
    /// Annual volatility, as a decimal (0.2 for 20%; > 0).
    #[arg(long, allow_hyphen_values = true)]
    volatility: String,
    /// Time to expiry in years (> 0).
    #[arg(long, allow_hyphen_values = true)]
    years: String,
    /// Print one JSON object instead of aligned lines.
    #[arg(long)]
    json: bool,
}

/// Runs a risk subcommand, returning the text to print or an error message.
pub fn run(cmd: &RiskCommand) -> Result<String, String> {
    match cmd {
        RiskCommand::Option(a) => option(a),
    }
}

fn parse(flag: &str, s: &str) -> Result<Fx, String> {
    Fx::from_decimal_str(s).map_err(|e| format!("--{flag}: cannot use {s:?}: {e}"))
}

fn option(a: &OptionArgs) -> Result<String, String> {
    let inputs = OptionInputs {
        spot: parse("spot", &a.spot)?,
        strike: parse("strike", &a.strike)?,
        rate: parse("rate", &a.rate)?,
        dividend_yield: parse("dividend-yield", &a.dividend_yield)?,
        volatility: parse("volatility", &a.volatility)?,
        years: parse("years", &a.years)?,
    };
    let g = black_scholes_merton(&inputs).map_err(|e| match e {
        PricingError::NotPositive { field, value } => {
            format!("--{} must be positive, got {value}", field.replace('_', "-"))
        }
        other => format!("cannot price this option: {other}"),
    })?;
    Ok(render(&g, a.json))
}

fn render(g: &OptionGreeks, json: bool) -> String {
    let fields = [
        ("call", g.call),
        ("put", g.put),
        ("call_delta", g.call_delta),
        ("put_delta", g.put_delta),
        ("gamma", g.gamma),
        ("vega", g.vega),
        ("d1", g.d1),
        ("d2", g.d2),
    ];
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
        serde_json::Value::Object(map).to_string()
    } else {
        fields.iter().map(|(k, v)| format!("{k:<10} {v}")).collect::<Vec<_>>().join("\n")
    }
}
