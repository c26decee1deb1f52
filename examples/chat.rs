//! A chat room over data channels: open the page in two tabs and type; every message
//! goes through the server, which relays it to every other tab.
//!
//! `cargo run --release --example chat [-- --addr 127.0.0.1:8080 --runtime tokio|smol|std]`
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sansrtc_examples::runtime::{init, park_forever};

fn main() -> ExitCode {
    let (args, runtime) = match init() {
        Ok(started) => started,
        Err(code) => return code,
    };
    let options = args.media_options();
    match sansrtc_examples::chat::start(args.addr, runtime, options) {
        Ok(running) => {
            println!(
                "sansrtc chat ({} runtime): open http://{}/ in two or more tabs",
                args.runtime, running.addr
            );
            park_forever()
        }
        Err(e) => {
            eprintln!("cannot serve on {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}
