//! Host-build proxies of the ed25519 kernel's speed (not GPU figures), run by hand:
//!
//! ```sh
//! cargo run -p bastion-kernels --release --example host_bench -- timing [N] [REPS]
//! valgrind --tool=callgrind --toggle-collect=bk_host_ed25519_verify_batch \
//!     target/release/examples/host_bench timing 16 1
//! BASTION_NVRTC=... cargo run -p bastion-kernels --release --example host_bench -- ptxas
//! ```
//!
//! `timing`: N valid signatures (default 256, messages of 0..130 bytes, seed 1) verified through
//! the batch entry point on one thread, REPS passes (default 5), the best pass reported.
//! `ptxas`: the sm_90 cubin's size, NVRTC's compile time and ptxas's register/spill report.

use bastion_kernels::host;
use ed25519_zebra::SigningKey;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::process::ExitCode;

fn timing(n: usize, reps: usize) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(1);
    let items: Vec<([u8; 32], [u8; 64], Vec<u8>)> = (0..n)
        .map(|i| {
            let mut s = [0u8; 32];
            rng.fill(&mut s[..]);
            let sk = SigningKey::from(s);
            let mut msg = vec![0u8; i % 130];
            rng.fill(&mut msg[..]);
            (<[u8; 32]>::from(sk.verification_key()), sk.sign(&msg).to_bytes(), msg)
        })
        .collect();
    let batch: Vec<(&[u8; 32], &[u8; 64], &[u8])> =
        items.iter().map(|(pk, sig, m)| (pk, sig, &m[..])).collect();
    let mut out = Vec::new();
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        host::verify_batch(&batch, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
        if !out.iter().all(|&v| v) {
            return Err("a valid signature was rejected".into());
        }
    }
    println!("{n} verifies, best of {reps}: {:.2} us/verify", best * 1e6 / n.max(1) as f64);
    Ok(())
}

fn ptxas() -> Result<(), String> {
    use bastion_kernels::nvrtc::{Nvrtc, Target};
    use bastion_kernels::source::{ED25519_VERIFY, HEADERS};
    let nvrtc = Nvrtc::load().map_err(|e| e.to_string())?;
    let t = std::time::Instant::now();
    let out = nvrtc
        .compile(
            ED25519_VERIFY,
            "ed25519_verify.cu",
            HEADERS,
            Target::Cubin { arch: 90 },
            &["--ptxas-options=-v"],
        )
        .map_err(|e| e.to_string())?;
    println!("sm_90 cubin: {} bytes in {:?}\n{}", out.code.len(), t.elapsed(), out.log);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let r = match args.first().map(String::as_str) {
        Some("timing") => timing(num(1, 256), num(2, 5)),
        Some("ptxas") => ptxas(),
        _ => Err("usage: host_bench timing [N] [REPS] | host_bench ptxas".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
