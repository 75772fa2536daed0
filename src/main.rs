//! The command line: parse, set up logging, hand over to the library. Exit status 0 on success, 1 for a
//! run-time failure, 2 for a usage mistake.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use tapstack::config::{Cli, Command};

fn init_logging(quiet: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Info);
    // smoltcp's own debug chatter stays out unless asked for.
    b.filter_module("smoltcp", log::LevelFilter::Warn);
    if quiet {
        b.filter_module("tapstack::packet", log::LevelFilter::Warn);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format(|f, r| {
        let target = r.target().strip_prefix("tapstack::").unwrap_or(r.target());
        writeln!(f, "{:<5} {:<7} {}", r.level(), target, r.args())
    });
    b.init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    let result = match cli.command {
        Some(Command::Serve(args)) => match args.validate() {
            Err(e) => return usage(&e.to_string()),
            Ok(mut cfg) => {
                cfg.trace.quiet = cli.quiet;
                cfg.trace.absolute_seq = cli.verbose;
                tapstack::reactor::serve(&cfg).map(|_| ())
            }
        },
        Some(Command::Explain { what }) => match tapstack::trace::explain(&what) {
            Ok(text) => {
                print!("{text}");
                Ok(())
            }
            Err(e) => return usage(&e.to_string()),
        },
        None => {
            eprintln!("the demo is not built yet; try `tapstack serve --tap tap0`");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}
