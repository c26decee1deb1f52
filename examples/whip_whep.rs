//! A small broadcast server: publish with WHIP, watch with WHEP, all peers on one UDP
//! socket. Open `/publish` in one tab and `/watch` in another; OBS, GStreamer or ffmpeg
//! can publish to `/whip` as well.
//!
//! `cargo run --release --example whip_whep [-- --addr 127.0.0.1:8080 --runtime tokio|smol|std --token TOKEN]`
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sansrtc_examples::runtime::{init, park_forever};
use sansrtc_examples::whip_whep::{start_with, Settings};

fn main() -> ExitCode {
    let (args, runtime) = match init() {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut settings = Settings::default();
    let mut rest = args.rest.iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.next()) {
            ("--token", Some(token)) if !token.is_empty() => settings.token = Some(token.clone()),
            _ => {
                eprintln!("usage: whip_whep [--addr HOST:PORT] [--runtime tokio|smol|std] [--token TOKEN]");
                return ExitCode::from(2);
            }
        }
    }
    let token = settings.token.clone();
    match start_with(args.addr, &runtime, args.media_options(), settings) {
        Ok(running) => {
            let addr = running.addr;
            println!(
                "sansrtc WHIP/WHEP broadcast ({} runtime) on http://{addr}/",
                args.runtime
            );
            println!("  publish: http://{addr}/publish   (WHIP endpoint http://{addr}/whip)");
            println!("  watch:   http://{addr}/watch     (WHEP endpoint http://{addr}/whep)");
            if let Some(token) = token {
                println!(
                    "  requests need Authorization: Bearer {token}; pages: append #token={token}"
                );
            }
            park_forever()
        }
        Err(e) => {
            eprintln!("cannot serve on {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}
