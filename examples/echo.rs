//! The seed's flow end to end: open the page, the browser sends camera and microphone,
//! sansrtc sends them straight back, and the page shows both. Signaling over a WebSocket
//! with trickle ICE both ways; scripts can `POST /api/offer` a JSON offer instead.
//!
//! `cargo run --release --example echo [-- --addr 127.0.0.1:8080 --runtime tokio|smol|std]`
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sansrtc_examples::runtime::{init, park_forever};

fn main() -> ExitCode {
    let (args, runtime) = match init() {
        Ok(started) => started,
        Err(code) => return code,
    };
    let options = args.media_options();
    match sansrtc_examples::echo::start(args.addr, runtime, options) {
        Ok(addr) => {
            println!(
                "sansrtc echo ({} runtime): open http://{addr}/ in a browser",
                args.runtime
            );
            println!("scripts: POST a JSON offer to http://{addr}/api/offer");
            park_forever()
        }
        Err(e) => {
            eprintln!("cannot serve on {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}
