//! `bastion`: the validator binary and its operator commands.

fn main() {
    println!("devnet arrives with the validator pipeline");
}
