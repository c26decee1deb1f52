//! A small broadcast server: publish with WHIP, watch with WHEP, all peers on one UDP
//! socket. Open `/publish` in one tab and `/watch` in another; OBS, GStreamer or ffmpeg
//! can publish to `/whip` as well.
//!
//! `cargo run --release --example whip_whep [-- --addr 127.0.0.1:8080 --runtime tokio|smol|std]`
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sansrtc_examples::runtime::{init, park_forever};

fn main() -> ExitCode {
    let (args, runtime) = match init() {
        Ok(started) => started,
        Err(code) => return code,
    };
    match sansrtc_examples::whip_whep::start(args.addr, &runtime, args.media_options()) {
        Ok(running) => {
            let addr = running.addr;
            println!(
                "sansrtc WHIP/WHEP broadcast ({} runtime) on http://{addr}/",
                args.runtime
            );
            println!("  publish: http://{addr}/publish   (WHIP endpoint http://{addr}/whip)");
            println!("  watch:   http://{addr}/watch     (WHEP endpoint http://{addr}/whep)");
            park_forever()
        }
        Err(e) => {
            eprintln!("cannot serve on {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}
