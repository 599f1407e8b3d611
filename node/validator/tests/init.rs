//! `bastion init` and `bastion keygen` end to end through the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_consensus::{ChainSpec, ValidatorInfo, ValidatorKeys};
use std::path::Path;
use std::process::Command;

fn bastion(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bastion")).args(args).output().expect("run bastion");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_creates_a_loadable_network_and_refuses_to_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let args = [
        "init",
        "--validators",
        "4",
        "--out",
        path(&out),
        "--chain-id",
        "bastion-test",
        "--base-port",
        "9100",
    ];
    let (ok, stdout, stderr) = bastion(&args);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");

    let spec = ChainSpec::load(&out.join("genesis.json")).unwrap();
    assert_eq!(spec.chain_id, "bastion-test");
    assert_eq!(spec.validators.len(), 4);
    assert_eq!(spec.exchange.validator_stakes, vec![1; 4]);
    let digest: String = spec.digest().iter().map(|b| format!("{b:02x}")).collect();
    assert!(stdout.contains(&digest), "digest {digest} not printed:\n{stdout}");
    assert!(stdout.contains("bastion run --config"), "{stdout}");
    assert!(!stdout.contains("INSECURE"), "{stdout}");

    let mut identities = Vec::new();
    for i in 0..4 {
        let v = out.join(format!("v{i}"));
        let keys = ValidatorKeys::load(&v.join("keys.json")).unwrap();
        spec.scheme(&keys).unwrap();
        assert_eq!(spec.index_of(&keys.identity_public()), Some(i));
        assert_eq!(spec.validators[i].address.port(), 9100 + i as u16);
        identities.push(keys.identity_public());
        let toml = std::fs::read_to_string(v.join("node.toml")).unwrap();
        assert!(toml.contains("genesis = \"../genesis.json\""), "{toml}");
        assert!(toml.contains("keys = \"keys.json\""), "{toml}");
        assert!(toml.contains(&format!("0.0.0.0:{}", 9100 + i)), "{toml}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(v.join("keys.json")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), 4);

    let (ok, stdout, stderr) = bastion(&args);
    assert!(!ok, "second init succeeded: {stdout}");
    assert!(stderr.contains("genesis.json"), "{stderr}");
    // Nothing was changed.
    assert_eq!(ChainSpec::load(&out.join("genesis.json")).unwrap(), spec);
}

#[test]
fn seeded_init_is_deterministic_and_says_it_is_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        // Genesis time defaults to now: fix it to compare the two.
        let (ok, stdout, stderr) = bastion(&[
            "init",
            "--validators",
            "3",
            "--out",
            path(out),
            "--seed",
            "7",
            "--genesis-time-ms",
            "1767225600000",
            "--scenario",
            "flash-crash",
        ]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("INSECURE"), "{stdout}");
    }
    let sa = ChainSpec::load(&a.join("genesis.json")).unwrap();
    let sb = ChainSpec::load(&b.join("genesis.json")).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(sa.chain_id, "bastion-devnet");
    assert_eq!(sa.validators[2].address.to_string(), "127.0.0.1:7402");
    assert_eq!(sa.validators[2].ingress.unwrap().to_string(), "127.0.0.1:8402");
    assert_eq!(sa.exchange.timestamp_ms, 1_767_225_600_000);
    // The scenario is each validator's simulated sources, not chain data: v2's node.toml
    // quotes the flash crash with its own noise seed; the genesis carries no price path.
    let toml = std::fs::read_to_string(a.join("v2/node.toml")).unwrap();
    assert!(toml.contains("scenario = \"flash-crash\""), "{toml}");
    assert!(toml.contains("seed = 3 "), "{toml}");
    assert!(!std::fs::read_to_string(a.join("genesis.json")).unwrap().contains("crash_at_ms"));
    assert_eq!(sa.exchange.authority, Some(bastion_client::devnet_authority().account()));
    let keys = ValidatorKeys::load(&a.join("v1/keys.json")).unwrap();
    assert_eq!(keys.identity_public(), ValidatorKeys::from_seed(7001).identity_public());
}

#[test]
fn init_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let (ok, _, stderr) = bastion(&["init", "--validators", "0", "--out", path(&out)]);
    assert!(!ok && stderr.contains("--validators"), "{stderr}");
    let (ok, _, stderr) =
        bastion(&["init", "--validators", "2", "--out", path(&out), "--chain-id", "bad id"]);
    assert!(!ok && stderr.contains("chain_id"), "{stderr}");
    let (ok, _, stderr) =
        bastion(&["init", "--validators", "4", "--out", path(&out), "--ingress-port", "7402"]);
    assert!(!ok && stderr.contains("--ingress-port") && stderr.contains("overlaps"), "{stderr}");
    let (ok, _, stderr) = bastion(&["init", "--validators", "2", "--out", path(&out), "--authority", "abc"]);
    assert!(!ok && stderr.contains("--authority"), "{stderr}");
    let (ok, _, stderr) = bastion(&["init", "--validators", "2", "--out", path(&out), "--scenario", "boom"]);
    assert!(!ok && stderr.contains("calm") && stderr.contains("flash-crash"), "{stderr}");
    assert!(!out.join("genesis.json").exists());
}

#[test]
fn keygen_writes_keys_prints_an_entry_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let (ok, stdout, stderr) = bastion(&[
        "keygen",
        "--out",
        path(&file),
        "--name",
        "alice",
        "--address",
        "10.0.0.1:7400",
        "--chain-id",
        "bastion-test",
    ]);
    assert!(ok, "{stderr}");
    let keys = ValidatorKeys::load(&file).unwrap();
    let json = &stdout[stdout.find('{').unwrap()..];
    let info: ValidatorInfo = serde_json::from_str(json).unwrap();
    assert_eq!(info.name, "alice");
    assert_eq!(info, keys.info("alice", "10.0.0.1:7400".parse().unwrap(), "bastion-test"));
    assert!(stdout.contains(&info.identity) && stdout.contains(&info.bls_public), "{stdout}");

    let (ok, _, stderr) = bastion(&["keygen", "--out", path(&file)]);
    assert!(!ok, "keygen overwrote {}", file.display());
    assert!(stderr.contains("keys are never overwritten"), "{stderr}");
    assert_eq!(ValidatorKeys::load(&file).unwrap().identity_public(), keys.identity_public());

    let (ok, stdout, stderr) = bastion(&["keygen", "--out", path(&dir.path().join("plain.json"))]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("identity") && !stdout.contains('{'), "{stdout}");
}

#[test]
fn init_labels_devnets_and_a_production_chain_has_no_authority() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["init", "--validators", "4", "--seed", "3", "--base-port", "9300", "--ingress-port", "9350"];
    let run = |out: &Path, extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(&["--out", path(out)]);
        args.extend_from_slice(extra);
        bastion(&args)
    };
    // No --authority: a devnet, labelled in the file and on the terminal.
    let devnet = dir.path().join("devnet");
    let (ok, stdout, stderr) = run(&devnet, &[]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let spec = ChainSpec::load(&devnet.join("genesis.json")).unwrap();
    assert!(spec.is_devnet() && spec.exchange.devnet);
    assert!(stdout.contains("DEVNET"), "{stdout}");
    assert_eq!(spec.exchange.chain_id, spec.chain_id);
    assert_eq!(spec.exchange.validator_keys.len(), 4);

    // An authority on a production chain: refused, naming the fix.
    let own: String =
        bastion_client::Keypair::derive("init-test", 1).public().iter().map(|b| format!("{b:02x}")).collect();
    let (ok, _, stderr) = run(&dir.path().join("bad"), &["--production", "--authority", &own]);
    assert!(!ok);
    assert!(stderr.contains("production chain has no authority"), "{stderr}");
    // A devnet with its own authority key.
    let own_devnet = dir.path().join("own");
    let (ok, stdout, stderr) = run(&own_devnet, &["--authority", &own]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let spec = ChainSpec::load(&own_devnet.join("genesis.json")).unwrap();
    assert!(spec.is_devnet());
    assert_eq!(spec.exchange.authority, Some(bastion_client::Keypair::derive("init-test", 1).account()));

    // Production: no authority at all.
    let prod = dir.path().join("prod");
    let (ok, stdout, stderr) = run(&prod, &["--production"]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let spec = ChainSpec::load(&prod.join("genesis.json")).unwrap();
    assert!(!spec.is_devnet());
    assert_eq!(spec.exchange.authority, None);
    assert!(!std::fs::read_to_string(prod.join("genesis.json")).unwrap().contains("\"authority\""));
    assert!(stdout.contains("2/3 of stake's attestations"), "{stdout}");

    // Editing the production file to name an authority is refused at load (so `bastion run`
    // and every other command refuse it too).
    let text = std::fs::read_to_string(prod.join("genesis.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let devnet_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(devnet.join("genesis.json")).unwrap()).unwrap();
    json["exchange"]["authority"] = devnet_json["exchange"]["authority"].clone();
    std::fs::write(prod.join("genesis.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let err = ChainSpec::load(&prod.join("genesis.json")).unwrap_err().to_string();
    assert!(err.contains("a production chain has no single key that mints collateral"), "{err}");
    let (ok, _, stderr) = bastion(&["run", "--config", path(&prod.join("v0").join("node.toml"))]);
    assert!(!ok);
    assert!(stderr.contains("a production chain has no single key"), "{stderr}");
}

#[test]
fn governance_proposal_is_signed_by_two_thirds_checked_and_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let (ok, stdout, stderr) = bastion(&[
        "init",
        "--validators",
        "4",
        "--seed",
        "9",
        "--out",
        path(&net),
        "--base-port",
        "9500",
        "--ingress-port",
        "9550",
    ]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let genesis = net.join("genesis.json");
    let update = dir.path().join("halt.json");
    std::fs::write(&update, r#"{"Status":{"market":0,"status":"Halted"}}"#).unwrap();
    let p = dir.path().join("p.json");
    let (ok, stdout, stderr) = bastion(&[
        "governance",
        "propose",
        "--genesis",
        path(&genesis),
        "--update",
        path(&update),
        "--nonce",
        "1",
        "--valid-from",
        "1",
        "--valid-until",
        "1000",
        "--out",
        path(&p),
    ]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    // A change the exchange refuses is refused here, naming why.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"Haircut":{"asset":1,"haircut_ppm":2000000}}"#).unwrap();
    let (ok, _, stderr) = bastion(&[
        "governance",
        "propose",
        "--genesis",
        path(&genesis),
        "--update",
        path(&bad),
        "--nonce",
        "1",
        "--valid-from",
        "1",
        "--valid-until",
        "10",
        "--out",
        path(&dir.path().join("bad-p.json")),
    ]);
    assert!(!ok && stderr.contains("haircut_ppm"), "{stderr}");

    let cfg = |i: usize| net.join(format!("v{i}")).join("node.toml");
    let check = || bastion(&["governance", "check", "--genesis", path(&genesis), "--proposal", path(&p)]);
    for i in 0..2 {
        let (ok, stdout, stderr) =
            bastion(&["governance", "approve", "--config", path(&cfg(i)), "--proposal", path(&p)]);
        assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    }
    // Two of four: not enough, and submit refuses it.
    let (ok, _, stderr) = check();
    assert!(!ok && stderr.contains("signed stake 2 of 4") && stderr.contains("DOES NOT PASS"), "{stderr}");
    let (ok, _, stderr) =
        bastion(&["governance", "submit", "--config", path(&cfg(0)), "--proposal", path(&p)]);
    assert!(!ok && stderr.contains("not submitted"), "{stderr}");
    // A tampered change invalidates every signature.
    let text = std::fs::read_to_string(&p).unwrap();
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, text.replace("Halted", "ReduceOnly")).unwrap();
    let (ok, _, stderr) =
        bastion(&["governance", "check", "--genesis", path(&genesis), "--proposal", path(&tampered)]);
    assert!(!ok && stderr.contains("INVALID"), "{stderr}");
    // The third approval passes it; submit queues it in the data dir.
    let (ok, stdout, stderr) =
        bastion(&["governance", "approve", "--config", path(&cfg(3)), "--proposal", path(&p)]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let (ok, stdout, stderr) = check();
    assert!(ok && stdout.contains("signed stake 3 of 4") && stdout.contains("PASSES"), "{stdout}\n{stderr}");
    let (ok, stdout, stderr) =
        bastion(&["governance", "submit", "--config", path(&cfg(0)), "--proposal", path(&p)]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let queued: Vec<_> = std::fs::read_dir(net.join("v0").join("data").join("governance"))
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert_eq!(queued.len(), 1, "{stdout}");
}

/// `--hosts` gives each node its own address (one machine or network namespace each): the
/// genesis file's p2p and ingress addresses, and every node's public listen and bootstrap
/// list, use it; a count that does not match the nodes is refused.
#[test]
fn init_with_one_host_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let hosts = "10.9.0.10,10.9.0.11,10.9.0.12,10.9.0.13,10.9.0.20";
    let (ok, stdout, stderr) = bastion(&[
        "init",
        "--validators",
        "4",
        "--full-nodes",
        "1",
        "--seed",
        "3",
        "--hosts",
        hosts,
        "--out",
        path(&out),
    ]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let spec = ChainSpec::load(&out.join("genesis.json")).unwrap();
    for (i, v) in spec.validators.iter().enumerate() {
        assert_eq!(v.address.to_string(), format!("10.9.0.1{i}:{}", 7400 + i), "{v:?}");
        assert_eq!(v.ingress.unwrap().to_string(), format!("10.9.0.1{i}:{}", 8400 + i), "{v:?}");
    }
    let v2 = std::fs::read_to_string(out.join("v2/node.toml")).unwrap();
    assert!(v2.contains("listen = \"10.9.0.12:7602\""), "{v2}");
    assert!(v2.contains("\"/ip4/10.9.0.20/tcp/7604\"") && v2.contains("\"/ip4/10.9.0.10/tcp/7600\""), "{v2}");
    let f0 = std::fs::read_to_string(out.join("f0/node.toml")).unwrap();
    assert!(f0.contains("listen = \"10.9.0.20:7604\""), "{f0}");

    let (ok, _, stderr) = bastion(&[
        "init",
        "--validators",
        "4",
        "--hosts",
        "10.9.0.10,10.9.0.11",
        "--out",
        path(&dir.path().join("b")),
    ]);
    assert!(!ok && stderr.contains("--hosts lists 2 addresses for 4 validators"), "{stderr}");
}

#[test]
fn storage_check_reads_the_genesis_file_init_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let (ok, stdout, stderr) = bastion(&["init", "--validators", "4", "--out", path(&net), "--seed", "5"]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let genesis = net.join("genesis.json");
    // A data dir of this chain, as `bastion run` creates it.
    let spec = ChainSpec::load(&genesis).unwrap();
    let data = dir.path().join("data");
    drop(bastion_store::Store::open(&data, &spec.exchange, bastion_store::StoreConfig::default()).unwrap());

    let (ok, stdout, stderr) =
        bastion(&["storage", "check", "--data-dir", path(&data), "--genesis", path(&genesis)]);
    assert!(ok, "storage check refused init's genesis file:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("state: height 0"), "{stdout}");

    // Another chain's genesis is refused, naming the mismatch rather than a missing field.
    let other = dir.path().join("other");
    let (ok, ..) = bastion(&["init", "--validators", "4", "--out", path(&other), "--seed", "6"]);
    assert!(ok);
    let (ok, stdout, stderr) = bastion(&[
        "storage",
        "check",
        "--data-dir",
        path(&data),
        "--genesis",
        path(&other.join("genesis.json")),
    ]);
    assert!(!ok, "another chain's genesis was accepted: {stdout}");
    assert!(!stderr.contains("missing field"), "{stderr}");
}
