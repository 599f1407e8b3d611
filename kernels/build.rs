//! Builds the kernels' device math for the host (see `host/`).

fn main() {
    println!("cargo:rerun-if-changed=host");
    println!("cargo:rerun-if-changed=cuda");
    cc::Build::new()
        .cpp(true)
        .file("host/host.cpp")
        .include("cuda")
        .flag_if_supported("-std=c++17")
        .opt_level(2)
        .warnings(true)
        .compile("bastion_kernels_host");
}
