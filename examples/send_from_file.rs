//! Play files to a browser: the server sends a VP8 IVF file and an Ogg Opus file (by
//! default the ones `save_to_file` wrote in the current directory) in real time,
//! looping, to every page that connects.
//!
//! `cargo run --release --example send_from_file [-- --addr 127.0.0.1:8080
//! --runtime tokio|smol|std --video video.ivf --audio audio.ogg]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use sansrtc_examples::runtime::{Args, Runtime};
use sansrtc_examples::save_to_file::{AUDIO_FILE, VIDEO_FILE};
use sansrtc_examples::send_from_file::{self, Media};

const USAGE: &str = "usage: send_from_file [--addr HOST:PORT] [--runtime tokio|smol|std] \
                     [--video FILE.ivf] [--audio FILE.ogg]";

fn parse() -> Result<(Args, PathBuf, PathBuf), String> {
    let args = Args::parse()?;
    let (mut video, mut audio) = (PathBuf::from(VIDEO_FILE), PathBuf::from(AUDIO_FILE));
    let mut rest = args.rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--video" => video = value.into(),
            "--audio" => audio = value.into(),
            _ => return Err(USAGE.into()),
        }
    }
    Ok((args, video, audio))
}

fn main() -> ExitCode {
    let (args, video, audio) = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let media = match Media::load(&video, &audio) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "cannot use {} and {}: {e} (record them with the save_to_file example)",
                video.display(),
                audio.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match Runtime::new(args.runtime) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the {} runtime: {e}", args.runtime);
            return ExitCode::FAILURE;
        }
    };
    let (frames, packets) = media.counts();
    let options = args.media_options();
    match send_from_file::start(args.addr, runtime, options, media) {
        Ok(running) => {
            println!(
                "sansrtc send_from_file ({} runtime): open http://{}/ in a browser",
                args.runtime, running.addr
            );
            println!(
                "sending {} ({frames} frames) and {} ({packets} packets), looping",
                video.display(),
                audio.display()
            );
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("cannot serve on {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}
