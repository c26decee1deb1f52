//! Record a browser's camera and microphone: open the page, and the server writes the
//! VP8 video to `video.ivf` and the Opus audio to `audio.ogg` (finished when the page
//! stops or leaves). Signaling over a WebSocket with trickle ICE both ways.
//!
//! `cargo run --release --example save_to_file [-- --addr 127.0.0.1:8080
//! --runtime tokio|smol|std --out DIR]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use sansrtc_examples::runtime::{Args, Runtime};
use sansrtc_examples::save_to_file::{self, AUDIO_FILE, VIDEO_FILE};

fn main() -> ExitCode {
    let (args, out) = match Args::parse().and_then(|a| {
        let out =
            match a.rest.as_slice() {
                [] => PathBuf::from("."),
                [flag, dir] if flag == "--out" => PathBuf::from(dir),
                _ => return Err(
                    "usage: save_to_file [--addr HOST:PORT] [--runtime tokio|smol|std] [--out DIR]"
                        .into(),
                ),
            };
        Ok((a, out))
    }) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match Runtime::new(args.runtime) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the {} runtime: {e}", args.runtime);
            return ExitCode::FAILURE;
        }
    };
    let options = args.media_options();
    match save_to_file::start(args.addr, runtime, options, &out) {
        Ok(running) => {
            println!(
                "sansrtc save_to_file ({} runtime): open http://{}/ in a browser",
                args.runtime, running.addr
            );
            println!(
                "recording to {} and {}",
                out.join(VIDEO_FILE).display(),
                out.join(AUDIO_FILE).display()
            );
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!(
                "cannot serve on {} (writing to {}): {e}",
                args.addr,
                out.display()
            );
            ExitCode::FAILURE
        }
    }
}
