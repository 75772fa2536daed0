//! The command line: parse, set up logging, hand over to the library. Exit status 0 on success, 1 for a
//! run-time failure, 2 for a usage mistake.

use std::io::Write;
use std::process::ExitCode;
use tapstack::internals::{run, Cli, CliError};

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
    b.write_style(env_logger::WriteStyle::Never);
    b.target(env_logger::Target::Pipe(Box::new(
        tapstack::internals::BufferedLog,
    )));
    b.format(|f, r| {
        let target = r.target().strip_prefix("tapstack::").unwrap_or(r.target());
        writeln!(f, "{:<5} {:<7} {}", r.level(), target, r.args())
    });
    b.init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_checked(std::env::args_os()) {
        Ok(cli) => cli,
        Err(CliError::Help(text)) => {
            let _ = text.print();
            return ExitCode::from(text.exit_code() as u8);
        }
        Err(e) => return fail(&e, 2),
    };
    init_logging(cli.log.quiet);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tapstack::internals::flush_log();
        default_hook(info);
    }));
    let code = match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, e.exit_code()),
    };
    tapstack::internals::flush_log();
    code
}

/// The one line a failure gets, after whatever the log still holds.
fn fail(e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    tapstack::internals::flush_log();
    eprintln!("error: {e}");
    ExitCode::from(code)
}
