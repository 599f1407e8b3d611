//! `bastion net check`: which ingress backends can run on this host for a node's configuration
//! (or for flags), why the others cannot, and the host facts an operator tunes for kernel
//! bypass (hugepages, NIC queues, IRQ affinity). Exit 0 when the configured backend can run, 1
//! when it cannot, 2 for bad input.

use crate::node::{IngressSection, NodeConfig};
use bastion_net::check::{BackendCheck, HostFacts};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Network subcommands.
#[derive(Subcommand, Debug)]
pub enum NetCommand {
    /// Report which ingress backends can run here (sockets, io_uring, af_xdp, dpdk) and why not,
    /// with hugepages, the interface's queues, driver, MTU and IRQ affinity.
    Check(CheckArgs),
}

/// Inputs of `bastion net check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A node config: its `[ingress]` table is checked (backend, listen, iface, queues, ...).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Backend to judge the exit code by (default: the config's, else sockets).
    #[arg(long)]
    backend: Option<String>,
    /// Network interface for the kernel-bypass backends (overrides the config's).
    #[arg(long)]
    iface: Option<String>,
    /// UDP address the ingress would listen on (default: the config's `listen`, else
    /// 0.0.0.0:8400).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs a network subcommand: `Ok((stdout, exit code))`, or a usage error (exit 2).
pub fn run(cmd: &NetCommand) -> Result<(String, u8), String> {
    match cmd {
        NetCommand::Check(a) => check(a),
    }
}

fn check(a: &CheckArgs) -> Result<(String, u8), String> {
    let mut section = match &a.config {
        Some(path) => NodeConfig::load(path)?.ingress,
        None => IngressSection::default(),
    };
    if let Some(b) = &a.backend {
        section.backend = b.clone();
    }
    if a.iface.is_some() {
        section.iface = a.iface.clone();
    }
    let listen = a.listen.or(section.listen).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8400)));
    let (cfg, fallback) = section.to_config(listen)?;
    let checks = bastion_net::check::check(&cfg);
    let facts = bastion_net::check::host_facts(cfg.bypass.iface.as_deref());
    let chosen_ok = checks.iter().any(|c| c.backend == cfg.backend.name() && c.ok);
    let code = u8::from(!chosen_ok);
    if a.json {
        let v = serde_json::json!({
            "backend": cfg.backend.name(),
            "fallback": fallback.map(|f| f.name()),
            "listen": listen.to_string(),
            "ok": chosen_ok,
            "backends": checks,
            "host": facts,
        });
        return Ok((format!("{v:#}\n"), code));
    }
    Ok((render(&cfg, fallback, &checks, &facts, chosen_ok), code))
}

fn render(
    cfg: &bastion_net::IngressConfig,
    fallback: Option<bastion_net::Backend>,
    checks: &[BackendCheck],
    facts: &HostFacts,
    chosen_ok: bool,
) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok { "ok " } else { "no " };
        let chosen = if c.backend == cfg.backend.name() { " (configured)" } else { "" };
        let _ = writeln!(out, "{mark} {:<9}{chosen} {}", c.backend, c.detail.replace('\n', " "));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "root        {}",
        if facts.root { "yes" } else { "no (AF_XDP and DPDK need root or CAP_NET_ADMIN + CAP_BPF)" }
    );
    if facts.hugepages.is_empty() {
        let _ = writeln!(
            out,
            "hugepages   none configured (DPDK runs with --no-huge; `bastion configure apply` sets them)"
        );
    } else {
        for (kb, total, free) in &facts.hugepages {
            let _ = writeln!(out, "hugepages   {kb} kB: {total} total, {free} free");
        }
    }
    if let Some(iface) = &facts.iface {
        match facts.mtu {
            None => {
                let _ = writeln!(out, "interface   {iface}: not found");
            }
            Some(mtu) => {
                let _ = writeln!(
                    out,
                    "interface   {iface}: driver {}, {} RX queues, MTU {mtu}",
                    facts.driver.as_deref().unwrap_or("none (virtual)"),
                    facts.rx_queues.map_or_else(|| "?".to_owned(), |q| q.to_string()),
                );
                for (irq, cpus) in &facts.irqs {
                    let _ = writeln!(out, "            IRQ {irq} on CPUs {cpus}");
                }
                if usize::from(cfg.bypass.queues) > facts.rx_queues.unwrap_or(usize::MAX) {
                    let _ = writeln!(
                        out,
                        "warning     ingress.queues = {} but {iface} has {} RX queues (`bastion configure apply` sets them)",
                        cfg.bypass.queues,
                        facts.rx_queues.unwrap_or(0)
                    );
                }
            }
        }
    }
    let verdict = if chosen_ok {
        format!("the configured backend {} can run here", cfg.backend)
    } else {
        match fallback {
            Some(f) => format!(
                "the configured backend {} cannot run here; the node would fall back to {f}",
                cfg.backend
            ),
            None => format!(
                "the configured backend {} cannot run here (set ingress.fallback to fall back)",
                cfg.backend
            ),
        }
    };
    let _ = writeln!(out, "\n{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_on_loopback_pass_and_bypass_backends_explain() {
        let args = CheckArgs {
            config: None,
            backend: Some("sockets".into()),
            iface: Some("lo".into()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            json: false,
        };
        let (text, code) = check(&args).unwrap();
        assert_eq!(code, 0, "{text}");
        for b in ["sockets", "io_uring", "af_xdp", "dpdk"] {
            assert!(text.lines().any(|l| l.contains(b)), "{b} missing:\n{text}");
        }
        assert!(text.contains("interface   lo"), "{text}");
        let (json, _) = check(&CheckArgs { json: true, ..args }).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["backends"].as_array().unwrap().len(), 4);
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn an_unavailable_backend_exits_1_and_bad_input_is_an_error() {
        if !bastion_net::Backend::Dpdk.compiled_in() {
            let args = CheckArgs {
                config: None,
                backend: Some("dpdk".into()),
                iface: None,
                listen: Some("127.0.0.1:0".parse().unwrap()),
                json: false,
            };
            let (text, code) = check(&args).unwrap();
            assert_eq!(code, 1, "{text}");
            assert!(text.contains("--features dpdk"), "{text}");
        }
        let bad =
            CheckArgs { config: None, backend: Some("xdp".into()), iface: None, listen: None, json: false };
        let e = check(&bad).unwrap_err();
        assert!(e.contains("ingress.backend") && e.contains("af_xdp"), "{e}");
    }
}
