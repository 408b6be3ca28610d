//! Pull registry models into the cache without the CLI:
//! `cargo run -p quiver-embed --example pull -- all-MiniLM-L6-v2 potion-base-8M`.

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let opts = quiver_embed::fetch::PullOptions {
        progress: true,
        ..Default::default()
    };
    let mut failed = false;
    for name in &names {
        match quiver_embed::fetch::pull(name, &opts) {
            Ok(dir) => println!("{name}: {}", dir.display()),
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
